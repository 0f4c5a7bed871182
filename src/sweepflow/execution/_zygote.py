"""A warm interpreter that forks ``python script.py`` trials (the zygote of ``preload:``).

:mod:`sweepflow.execution.warm` runs it as ``INTERPRETER [FLAGS] _zygote.py CONTROL_FD MODULE...``.
It uses the standard library only (the job's interpreter may lack sweepflow), imports
the modules once and answers ``{"ready": true}`` (or ``{"error": ...}``) on the control
socket. Then, per trial, one byte on the control socket carries four descriptors: a
reply socket, stdin, stdout and stderr. The request (JSON) follows on the reply socket,
which the requester then shuts for writing. The zygote forks; the child starts its own
session, answers ``{"pid": N}`` and runs the program as ``python`` would; the zygote
reaps it and answers ``{"exit": CODE}`` (negative: the signal that killed it).

Lifetimes, without polling: when the control socket closes (its requester exited or
died: the kernel closes the descriptors of every thread at once), the zygote kills the
process groups of its children and exits. Each child asks the kernel for SIGKILL when
the zygote dies (``PR_SET_PDEATHSIG``, :mod:`sweepflow.execution.lifetime`). The zygote
does not ask that for itself: the kernel would tie it to the requester's *thread* that
started it, while it serves the whole process. It stays single-threaded, because it forks.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
from typing import Any

_HERE = os.path.dirname(os.path.realpath(__file__))
_REQUEST_TIMEOUT = 10.0  # seconds a requester has to send its request after the byte
_RUNPY_FILES = {runpy.__file__, "<frozen runpy>"}


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one JSON line; a requester that has gone away is no error."""
    with contextlib.suppress(OSError):
        sock.sendall(json.dumps(message).encode() + b"\n")


def _site_path() -> list[str]:
    """``sys.path`` without what Python put there for this process only: the zygote's
    folder and the ``PYTHONPATH`` entries (each child gets those of its request)."""
    path = list(sys.path)
    added = [] if getattr(sys.flags, "safe_path", False) else [_HERE]
    pythonpath = os.environ.get("PYTHONPATH", "")
    if pythonpath and not sys.flags.ignore_environment:
        added += [os.path.abspath(entry) for entry in pythonpath.split(os.pathsep)]
    for entry in added:
        if entry in path:
            path.remove(entry)
    return path


def _lifetime() -> Any:
    """sweepflow's ``lifetime`` module, loaded by path (this interpreter may lack
    sweepflow), with libc's ``prctl`` looked up before any fork; None if it fails."""
    try:
        spec = importlib.util.spec_from_file_location(
            "_sweepflow_lifetime", os.path.join(_HERE, "lifetime.py")
        )
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module._prctl()
    except Exception:  # children then stop only through _kill_children
        return None
    return module


def _preload(modules: list[str]) -> str:
    """Import ``modules``; return why one failed, or ``""``."""
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # the requester reports any failure, then gives up
            return f"cannot import {name!r}: {type(exc).__name__}: {exc}"
    return ""


def _read_request(reply: socket.socket) -> dict[str, Any]:
    """The JSON request the requester writes on its reply socket before shutting it."""
    reply.settimeout(_REQUEST_TIMEOUT)
    chunks = []
    while chunk := reply.recv(65536):
        chunks.append(chunk)
    return json.loads(b"".join(chunks))


class _Zygote:
    """The serving loop: fork a child per request, reap children, report their exits."""

    def __init__(self, control: socket.socket, lifetime: Any) -> None:
        self.control = control
        self.lifetime = lifetime
        self.pid = os.getpid()
        self.children: dict[int, socket.socket] = {}  # pid -> its reply socket
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        # SIGCHLD interrupts the poll below through the wakeup pipe (it needs a handler).
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def serve(self) -> dict[str, Any] | None:
        """Serve until the control socket closes (None); in a forked child, return its
        request, with the child set up to run it."""
        poller = select.poll()
        poller.register(self.control, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self.wake_r in ready:
                self._reap()
            if self.control.fileno() in ready:
                message, fds, _, _ = socket.recv_fds(self.control, 1, 4)
                if not message:
                    self._kill_children()
                    return None
                request = self._fork(fds)
                if request is not None:
                    return request

    def _fork(self, fds: list[int]) -> dict[str, Any] | None:
        """Fork a child for the request behind ``fds``; the request in the child, else None."""
        if len(fds) != 4:
            for fd in fds:
                os.close(fd)
            return None
        reply, stdio = socket.socket(fileno=fds[0]), fds[1:]
        try:
            request = _read_request(reply)
            pid = os.fork()
        except (OSError, ValueError) as exc:
            _send(reply, {"error": f"the warm interpreter could not start the program: {exc}"})
            reply.close()
            pid = -1
        if pid == 0:
            self._become_child(reply, stdio)
            return request
        for fd in stdio:
            os.close(fd)
        if pid > 0:
            self.children[pid] = reply
        return None

    def _become_child(self, reply: socket.socket, stdio: list[int]) -> None:
        """In the child: its own session, default signals, only its own descriptors."""
        os.setsid()  # a process group of its own: timeouts and Ctrl-C kill it with killpg
        if self.lifetime is not None:  # a zygote killed outright takes its children along
            self.lifetime.die_with_parent(signal.SIGKILL, parent=self.pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for sock in (self.control, *self.children.values()):
            sock.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        _send(reply, {"pid": os.getpid()})  # only now can its group be signalled
        reply.close()

    def _reap(self) -> None:
        """Report the exit of every child that has ended."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.wake_r, 4096):
                pass
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            reply = self.children.pop(pid)
            _send(reply, {"exit": os.waitstatus_to_exitcode(status)})
            reply.close()

    def _kill_children(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _prepare(request: dict[str, Any], site_path: list[str]) -> None:
    """Make this (forked) process look like ``python`` started for the request."""
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    target = request["target"]
    head = []
    if not getattr(sys.flags, "safe_path", False):  # -P and -I (Python 3.11+)
        head = [os.getcwd() if request["module"] else os.path.dirname(os.path.realpath(target))]
    pythonpath = request["env"].get("PYTHONPATH", "")
    if pythonpath and not sys.flags.ignore_environment:
        head += [os.path.abspath(entry) for entry in pythonpath.split(os.pathsep)]
    sys.path[:] = [*head, *site_path]
    sys.argv[:] = ["-m" if request["module"] else target, *request["args"]]
    importlib.invalidate_caches()  # files created since the zygote imported its modules
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # numpy does not reseed after fork (random does)
        numpy_random.seed()


def _run(request: dict[str, Any]) -> int:
    """Run the program as ``python`` would; its exit code (SystemExit propagates)."""
    target = request["target"]
    try:
        if request["module"]:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        elif not os.path.exists(target):
            print(f"{sys.executable}: can't open file {target!r}: no such file", file=sys.stderr)
            return 2
        else:
            runpy.run_path(target, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        raise  # Python's own exit handling: the code, or death by SIGINT
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in {__file__, *_RUNPY_FILES}:
            tb = tb.tb_next  # the traceback starts in the program, as with python script.py
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def main(argv: list[str]) -> None:
    """Preload ``argv[1:]``, then serve the control socket whose descriptor is ``argv[0]``."""
    control = socket.socket(fileno=int(argv[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends when its control socket closes
    site_path = _site_path()
    lifetime = _lifetime()
    error = _preload(argv[1:])
    _send(control, {"error": error} if error else {"ready": True})
    if error:
        return
    request = _Zygote(control, lifetime).serve()
    if request is not None:
        _prepare(request, site_path)
        sys.exit(_run(request))


if __name__ == "__main__":
    main(sys.argv[1:])
