"""Child processes that die with their parent: Linux's ``PR_SET_PDEATHSIG``, else nothing.

The kernel sends the child a signal when its parent exits, so nobody polls ``getppid``.
Three ways in: :func:`die_with_parent` for a Python process to call on itself (the
zygote's forked trials do, right after the fork), :func:`with_parent_death` for a
program started with ``subprocess.Popen`` (it prefixes ``setpriv --pdeathsig``, which
sets it between fork and exec: ``preexec_fn`` is not safe in a threaded parent), and
:func:`popen_for_life` for a program that must live as long as the process (a server).

The kernel watches the parent *thread* that forked the child, not the whole process: use
it only where that thread outlives the child (a single-threaded zygote; a thread that
waits for its trial; :func:`popen_for_life` forks on a thread that never ends). Off
Linux, or without ``setpriv``, they are no-ops and the callers' other means (a closed
control socket, ``stop_orphan``) remain. Standard library only: the zygote, which may
run on an interpreter without sweepflow, loads this file by path.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["die_with_parent", "pid_alive", "popen_for_life", "with_parent_death"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this host; it may belong to another user).

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` (loaded once, so a forked child needs no lookup), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Have the kernel send this process ``sig`` when its parent exits.

    Args:
        sig: The signal to receive.
        parent: The pid the parent should have. If this process was already orphaned
            before the request took hold (its parent is no longer ``parent``), ``sig``
            is sent at once: the kernel would never send it.

    Returns:
        Whether the kernel took the request (False off Linux).
    """
    prctl = _prctl()
    if prctl is None or prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True


@functools.cache
def _setpriv() -> str | None:
    """The path of a ``setpriv`` that knows ``--pdeathsig`` (util-linux 2.33+), or None."""
    path = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if path is None:
        return None
    try:
        usage = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "--pdeathsig" in usage.stdout else None


def with_parent_death(
    argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str]
) -> list[str]:
    """``argv`` run so that the program gets SIGKILL when the thread that starts it exits.

    Unchanged where that cannot be done, and when ``argv[0]`` cannot be found, so that
    ``Popen`` still raises its own ``FileNotFoundError`` for a missing program.

    >>> with_parent_death([], ".", {})
    []
    """
    setpriv = _setpriv() if argv else None
    if setpriv is None:
        return list(argv)
    program = os.fspath(argv[0])
    if os.sep in program:
        found = os.access(os.path.join(cwd, program), os.X_OK)
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath)) is not None
    if not found:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


_lasting: queue.SimpleQueue[Callable[[], None]] | None = None
_lasting_lock = threading.Lock()


def _serve(requests: queue.SimpleQueue[Callable[[], None]]) -> None:
    while True:
        requests.get()()


def _on_lasting_thread(work: Callable[[], Any]) -> Any:
    """``work()`` run on a daemon thread that never ends (started on first use)."""
    global _lasting
    with _lasting_lock:
        if _lasting is None:
            _lasting = queue.SimpleQueue()
            name = "sweepflow-lasting-parent"
            threading.Thread(target=_serve, args=(_lasting,), name=name, daemon=True).start()
        requests = _lasting
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # raised again in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    requests.put(run)
    done.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def popen_for_life(
    argv: Sequence[str], cwd: str | os.PathLike[str], env: Mapping[str, str], **options: Any
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` of a program that gets SIGKILL when this *process* ends.

    :func:`with_parent_death` ties the program to the thread that forks it, so the fork
    happens on a thread that lasts as long as the process: the main thread if called
    there, else a daemon thread kept for this (it ends only with the process). For a
    server that must not outlive its driver, SIGKILL of the driver included.

    Args:
        argv: The program and its arguments.
        cwd: Its working directory.
        env: Its environment.
        **options: More ``Popen`` arguments (``stdout``, ``start_new_session`` ...).
    """

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(with_parent_death(argv, cwd, env), cwd=cwd, env=env, **options)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _on_lasting_thread(start)
