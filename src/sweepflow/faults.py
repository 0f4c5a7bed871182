"""Faults of the machine, not of the input: a full disk, told apart and survived.

A full (or over-quota) file system makes every later trial fail the same way, and the
MLflow store cannot even record that. So a run keeps a small *reserve* file in its state
folder; on the first sign of a full disk it deletes the reserve (room for the last
writes: closing runs, recording outcomes), stops starting trials, and ends with one
line that says which file system is full and what to do. The next run writes the
reserve again. Standard library only.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sweepflow.errors import DiskFull

__all__ = ["RESERVE_BYTES", "DiskFull", "disk_full", "is_disk_full", "release", "reserve"]

RESERVE_BYTES = 512 * 1024
# How a full disk reads in error messages: the OS, SQLite, and sweepflow's own line.
_SIGNS: tuple[str, ...] = ("No space left on device", "Disk quota exceeded")
_SIGNS += ("database or disk is full", "no space left on the device")


def is_disk_full(error: BaseException | str) -> bool:
    """Whether an exception (or its message, or one it was raised from) says the disk
    is full.

    >>> is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    True
    >>> is_disk_full("trial 'a=1' failed: program exited with code 1")
    False
    """
    seen: BaseException | None = error if isinstance(error, BaseException) else None
    if seen is None:
        return any(sign in str(error) for sign in _SIGNS)
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(seen) for sign in _SIGNS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def disk_full(where: Path) -> DiskFull:
    """The one-line error for a full file system holding ``where``."""
    return DiskFull(
        f"no space left on the device holding {where}: free space there (see "
        f"`df -h {where}`) and run again; finished trials are kept and will not run again"
    )


def _path(state: Path) -> Path:
    return state / "reserve"


def reserve(state: Path) -> None:
    """Write the reserve file (if missing or short) in the state folder.

    Raises:
        DiskFull: There is no room for it: the run would fail at once.
    """
    path = _path(state)
    try:
        if path.exists() and path.stat().st_size >= RESERVE_BYTES:
            return
        state.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(b"\0" * RESERVE_BYTES)  # real blocks: not a sparse file
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(state) from None
        raise


def release(state: Path) -> bool:
    """Delete the reserve (the disk is full: room for the last writes); whether it was
    there."""
    try:
        _path(state).unlink()
    except OSError:
        return False
    return True
