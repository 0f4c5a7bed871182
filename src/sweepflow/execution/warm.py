"""Warm starts (``preload:``): ``python script.py`` trials forked from a warm interpreter.

A zygote (``_zygote.py``) imports a job's ``preload`` modules once and forks one child
per trial, so a trial skips interpreter start-up and those imports. This process keeps
one zygote per interpreter, flags, module list and base environment, started on first
use, replaced if it died, and stopped at exit (a zygote whose requester dies stops by
itself). Per trial: a socket pair; one byte on the zygote's control socket carries the
far end and the trial's stdin/stdout/stderr; the JSON request follows on the pair; the
answers, ``{"pid": N}`` then ``{"exit": CODE}``, come back on it. Threads run trials at
once: each has its own pair, and a lock orders their bytes on the control socket.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from sweepflow.errors import SweepflowError
from sweepflow.spec.interpreter import PythonCommand, python_command

__all__ = ["PythonCommand", "WarmProcess", "WarmStartError", "python_command", "spawn"]

_ZYGOTE = Path(__file__).with_name("_zygote.py")


class WarmStartError(SweepflowError, RuntimeError):
    """A warm interpreter could not run a program: a preload import failed, or it died."""


class _Lines:
    """JSON messages, one per line, read from a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def next(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next message, or None at the end of the stream.

        Raises:
            TimeoutError: None came within ``timeout`` seconds (read it again later).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)


class WarmProcess:
    """A program forked by a zygote, with the part of ``subprocess.Popen`` the executor
    uses: ``pid`` (its process group too), ``stdout``/``stderr`` pipes, ``wait``."""

    def __init__(self, args: Sequence[str], pid: int, replies: _Lines, zygote: int) -> None:
        self.args = list(args)
        self.pid = pid
        self.returncode: int | None = None
        self.stdout: IO[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self._replies = replies
        self._zygote = zygote

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit code (negative: the signal that killed it), as Popen does.

        Raises:
            subprocess.TimeoutExpired: Still running after ``timeout`` seconds.
            WarmStartError: The zygote died, so the exit code is lost (the program's
                process group is killed).
        """
        if self.returncode is not None:
            return self.returncode
        try:
            reply = self._replies.next(timeout)
        except TimeoutError:
            raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        except OSError:  # reset by a zygote that died
            reply = None
        self._replies.sock.close()
        if reply is None or "exit" not in reply:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            raise WarmStartError(
                f"the warm interpreter (pid {self._zygote}) died while the program "
                f"(pid {self.pid}) ran; its process group was killed"
            )
        self.returncode = int(reply["exit"])
        return self.returncode


class _Zygote:
    """One running zygote: its process and the control socket that keeps it alive."""

    def __init__(self, process: subprocess.Popen, control: socket.socket) -> None:
        self.process = process
        self.control = control
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls, command: PythonCommand, preload: Sequence[str], env: Mapping[str, str]
    ) -> _Zygote:
        """Start a zygote and wait until it has imported ``preload``."""
        control, theirs = socket.socketpair()
        argv = [command.interpreter, *command.flags, str(_ZYGOTE), str(theirs.fileno())]
        try:
            process = subprocess.Popen(
                [*argv, *preload],
                env=dict(env),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # no terminal signals: it lives as long as we do
            )
        except OSError as exc:
            control.close()
            raise WarmStartError(f"cannot start {command.interpreter}: {exc}") from exc
        finally:
            theirs.close()
        reply = _Lines(control).next()
        if reply is None or "ready" not in reply:
            control.close()
            code = process.wait()
            why = (reply or {}).get("error") or f"it exited with code {code} before it was ready"
            raise WarmStartError(f"preload: {why}")
        return cls(process, control)

    def fork(
        self, argv: Sequence[str], request: dict[str, Any], stdio: Sequence[int]
    ) -> WarmProcess | None:
        """Have the zygote fork the request's program; None if the zygote is gone."""
        mine, theirs = socket.socketpair()
        replies = _Lines(mine)
        try:
            with self._lock:
                socket.send_fds(self.control, [b"f"], [theirs.fileno(), *stdio])
            theirs.close()
            mine.sendall(json.dumps(request).encode())
            mine.shutdown(socket.SHUT_WR)
            reply = replies.next()
        except OSError:  # broken or reset: the zygote is gone
            reply = None
        finally:
            theirs.close()
        if reply is None:
            mine.close()
            return None
        if "pid" not in reply:
            mine.close()
            raise WarmStartError(reply.get("error") or f"unexpected answer {reply}")
        return WarmProcess(argv, reply["pid"], replies, self.process.pid)

    def stop(self) -> None:
        """Close the control socket (the zygote kills what still runs and exits)."""
        self.control.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_LOCK = threading.Lock()
_ZYGOTES: dict[tuple, _Zygote] = {}
_HOOKED = False  # whether _stop_all and _in_forked_child are registered (first zygote)


def _zygote(command: PythonCommand, preload: tuple[str, ...], env: dict[str, str]) -> _Zygote:
    """The live zygote for this interpreter, flags, modules and environment (started
    now if there is none, or it died)."""
    key = (command.interpreter, command.flags, preload, frozenset(env.items()))
    with _LOCK:
        _hook_once()
        zygote = _ZYGOTES.get(key)
        if zygote is None or zygote.process.poll() is not None:
            if zygote is not None:
                zygote.control.close()
            zygote = _ZYGOTES[key] = _Zygote.start(command, preload, env)
        return zygote


def _forget(zygote: _Zygote) -> None:
    """Drop a zygote that stopped answering (the next trial starts a new one)."""
    with _LOCK:
        for key, known in list(_ZYGOTES.items()):
            if known is zygote:
                del _ZYGOTES[key]
    zygote.control.close()
    with contextlib.suppress(OSError):
        zygote.process.kill()
    zygote.process.wait()


def _hook_once() -> None:
    """Register the exit and fork handlers, once, as the first zygote starts: importing
    sweepflow registers nothing in a user's program (call with ``_LOCK`` held)."""
    global _HOOKED
    if not _HOOKED:
        atexit.register(_stop_all)
        os.register_at_fork(after_in_child=_in_forked_child)
        _HOOKED = True


def _stop_all() -> None:
    """Stop every zygote of this process."""
    with _LOCK:
        zygotes = list(_ZYGOTES.values())
        _ZYGOTES.clear()
    for zygote in zygotes:
        zygote.stop()


def _in_forked_child() -> None:
    """A fork of this process must not keep our zygotes alive (nor talk to them)."""
    global _LOCK
    _LOCK = threading.Lock()
    for zygote in _ZYGOTES.values():
        zygote.control.close()
    _ZYGOTES.clear()


def _pipe_or_fd(stream: int | IO[Any]) -> tuple[int | None, int]:
    """(read end or None, descriptor for the program) of a Popen-style ``stream``."""
    if stream == subprocess.PIPE:
        return os.pipe()
    return None, stream if isinstance(stream, int) else stream.fileno()


def spawn(
    argv: Sequence[str],
    preload: Sequence[str],
    *,
    cwd: str | Path,
    env: Mapping[str, str],
    stdout: int | IO[Any],
    stderr: int | IO[Any],
) -> WarmProcess:
    """Start ``argv`` (a :func:`python_command`) forked from a zygote that has imported
    ``preload``: like ``subprocess.Popen`` with ``stdin=DEVNULL`` and
    ``start_new_session=True``.

    The zygote runs with this process's environment (and the ``PYTHONPATH`` of ``env``,
    so project modules can be preloaded); the program gets ``env`` wholesale.

    Args:
        stdout: ``subprocess.PIPE`` (read ``.stdout``), or a file the program writes to.
        stderr: The same for standard error.

    Raises:
        WarmStartError: ``argv`` is no python command, a preload import failed, or the
            zygote died twice in a row.
    """
    try:
        command = python_command(argv)
    except ValueError as exc:
        raise WarmStartError(f"preload needs a python command: {exc}") from None
    request = {
        "target": command.target,
        "module": command.module,
        "args": list(command.args),
        "cwd": str(cwd),
        "env": dict(env),
    }
    out_r, out_w = _pipe_or_fd(stdout)
    err_r, err_w = _pipe_or_fd(stderr)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        process = _fork(argv, command, tuple(preload), request, (devnull, out_w, err_w))
    except BaseException:
        for fd in (out_r, err_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        os.close(devnull)
        for read, write in ((out_r, out_w), (err_r, err_w)):
            if read is not None:
                os.close(write)  # the program holds it now: EOF comes when it exits
    process.stdout = open(out_r, "rb") if out_r is not None else None  # noqa: SIM115
    process.stderr = open(err_r, "rb") if err_r is not None else None  # noqa: SIM115
    return process


def _fork(
    argv: Sequence[str],
    command: PythonCommand,
    preload: tuple[str, ...],
    request: dict[str, Any],
    stdio: tuple[int, int, int],
) -> WarmProcess:
    """Fork the program from the zygote; once more from a new one if that one is gone."""
    env = dict(os.environ)
    if "PYTHONPATH" in request["env"]:  # so that project modules can be preloaded
        env["PYTHONPATH"] = request["env"]["PYTHONPATH"]
    for _ in range(2):
        zygote = _zygote(command, preload, env)
        process = zygote.fork(argv, request, stdio)
        if process is not None:
            return process
        _forget(zygote)
    raise WarmStartError(f"the warm interpreter ({command.interpreter}) died twice in a row")
