"""Child processes that die with their parent: Linux's ``PR_SET_PDEATHSIG``, else nothing.

The kernel sends the child a signal when its parent exits, so nobody polls ``getppid``.
Two ways in: :func:`die_with_parent` for a Python process to call on itself (the
zygote's forked trials do, right after the fork), and :func:`with_parent_death` for a
program started with ``subprocess.Popen`` (it prefixes ``setpriv --pdeathsig``, which
sets it between fork and exec: ``preexec_fn`` is not safe in a threaded parent).

The kernel watches the parent *thread* that forked the child, not the whole process: use
it only where that thread outlives the child (a single-threaded zygote; a thread that
waits for its trial). Off Linux, or without ``setpriv``, both are no-ops and the
callers' other means (a closed control socket, ``stop_orphan``) remain. Standard library
only: the zygote, which may run on an interpreter without sweepflow, loads this file by
path.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence

__all__ = ["die_with_parent", "pid_alive", "with_parent_death"]

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
