"""One run of a trial at a time across processes, and proof of which processes are ours.

Two ``sweepflow run`` of the same state folder (the same job twice, or two jobs that
share a trial) must neither run a trial twice at once nor stop each other's programs:

- :func:`claim` holds an exclusive ``flock`` on ``<trial folder>/lock`` while the trial
  runs and its result is stored. A second process waits for it (and then finds the
  result in the cache). The kernel drops the lock when its holder dies, SIGKILL
  included, so a killed driver never leaves a trial claimed. The descriptor is not
  inherited: a program left running by a killed driver does not hold the claim.
- :class:`Owned` is the ``pid`` file of a trial's program: its pid, the kernel's start
  time of that pid and its session (sweepflow starts every program in a session of its
  own). :func:`stop_orphan` signals a process only when all three still match, so a
  reused pid is never touched; the file is removed when the program ends.

- :class:`Keeper` makes a driver's programs die with it, whatever their own children
  do: a small process (this file, run by path) holds the read end of a pipe whose write
  end only the driver has. The driver registers each program's process group while it
  runs; when the driver ends in any way (SIGKILL included) the pipe closes and the
  keeper kills the groups still registered, then exits.

Locks are advisory ``flock``s (Linux, macOS; NFSv4 and Lustre emulate them with POSIX
locks). Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Keeper", "Owned", "claim", "start_time", "stop_orphan"]


def start_time(pid: int) -> int | None:
    """The kernel's start time of process ``pid`` (clock ticks since boot), or None
    (no such process, or not Linux).

    >>> start_time(os.getpid()) == start_time(os.getpid()) is not None
    True
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owned:
    """A process sweepflow started in a session of its own, as its pid file records it."""

    pid: int
    start: int
    host: str

    @classmethod
    def of(cls, pid: int) -> Owned | None:
        """The record of live process ``pid`` (None where the start time is unknown)."""
        start = start_time(pid)
        return None if start is None else cls(pid, start, socket.gethostname())

    def write(self, path: Path) -> None:
        """Write the pid file (to a temporary name, then renamed)."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"pid": self.pid, "start": self.start, "host": self.host}))
        temporary.replace(path)

    @classmethod
    def read(cls, path: Path) -> Owned | None:
        """The record in a pid file; None if missing or not this format (an old plain
        pid proves nothing)."""
        try:
            data = json.loads(path.read_text())
            return cls(int(data["pid"]), int(data["start"]), str(data["host"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def alive(self) -> bool:
        """Whether this very process still runs: same host, pid, start time and session."""
        if self.host != socket.gethostname() or start_time(self.pid) != self.start:
            return False
        try:
            return os.getsid(self.pid) == self.pid
        except OSError:
            return False


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphan(workdir: Path) -> bool:
    """SIGKILL the process group a killed driver left running in ``workdir``; remove the
    pid file. Call it only while holding the trial's :func:`claim`.

    The group is signalled when its pid file proves it: the program itself still runs
    (same pid, start time and session), or it is gone and its group lives on (programs
    it started; Linux does not hand out a pid again while a group still bears it).
    Returns whether a group was signalled.
    """
    pid_file = workdir / "pid"
    owned = Owned.read(pid_file)
    pid_file.unlink(missing_ok=True)
    if owned is None or owned.host != socket.gethostname():
        return False
    if start_time(owned.pid) is None:  # the program is gone: its group may live on
        if not _group_exists(owned.pid):
            return False
    elif not owned.alive():
        return False  # the pid now names another process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(owned.pid, signal.SIGKILL)
    return True


@contextlib.contextmanager
def claim(workdir: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the trial folder ``workdir`` for this process while the block runs.

    If another process holds it, wait until that process lets go or dies (``waiting``
    is called once, before the wait).
    """
    import fcntl

    workdir.mkdir(parents=True, exist_ok=True)
    fd = os.open(workdir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _stop_group(pid: int, start: int) -> None:
    """SIGKILL group ``pid`` if it is still the one registered with leader ``start``."""
    now = start_time(pid)
    if (now is None and _group_exists(pid)) or now == start:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


class Keeper:
    """The driver's side of the keeper process (one per driver, started on first use)."""

    _lock = threading.Lock()
    _pipe: int | None = None

    @classmethod
    def _send(cls, line: str) -> None:
        with cls._lock:
            if cls._pipe is None:
                read, write = os.pipe()  # neither end is inherited by other children
                try:
                    subprocess.Popen(  # our interpreter, this file, no shell
                        [sys.executable, "-I", os.path.abspath(__file__)],
                        stdin=read,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,  # a Ctrl-C to the driver's group spares it
                    )
                finally:
                    os.close(read)
                cls._pipe = write
            with contextlib.suppress(OSError):
                os.write(cls._pipe, line.encode() + b"\n")

    @classmethod
    def watch(cls, owned: Owned | None) -> None:
        """Kill ``owned``'s process group if this process ends while it runs."""
        if owned is not None:
            cls._send(f"+ {owned.pid} {owned.start}")

    @classmethod
    def release(cls, owned: Owned | None) -> None:
        """``owned`` has ended: forget it."""
        if owned is not None and cls._pipe is not None:
            cls._send(f"- {owned.pid} {owned.start}")


def _keep() -> None:
    """The keeper process: read registrations from stdin until EOF, then kill."""
    groups: set[tuple[int, int]] = set()
    pending = b""
    while chunk := os.read(0, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            sign, number, ticks = line.split()
            entry = (int(number), int(ticks))
            if sign == b"+":
                groups.add(entry)
            else:
                groups.discard(entry)
    for leader, started in groups:
        _stop_group(leader, started)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _keep()
