"""Leases: a live run's claim on objects that garbage collection must not delete.

A lease is a file ``<store>/leases/<pid>-<token>.lease`` listing digests (JSON), on
which its holder keeps an exclusive ``flock`` for as long as it holds them. The lock,
not the file, is the claim: a killed holder's lock goes with its process, and the next
collection finds the lock free, deletes the file and ignores it. A lease file is
written under a temporary name, locked, then renamed, so it is never seen unlocked.

Collection and leases are ordered by ``<store>/leases/gc.lock``: :func:`collecting`
holds it exclusively from reading the leases to the last deletion; creating or
extending a lease holds it shared for that moment. So a lease taken while a
collection runs waits for it to end, and then must check that its objects still exist
(:meth:`Lease.add` returns the digests that do not).

``flock`` works across processes of one host and, on Linux NFSv4 and Lustre/GPFS with
locking enabled, across hosts; no other lock file or daemon is needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from sweepflow.store.layout import object_dir

__all__ = ["Lease", "collecting", "hold", "live_digests"]

_SUFFIX = ".lease"


def _folder(root: Path) -> Path:
    folder = root / "leases"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _gc_lock(root: Path, mode: int) -> Iterator[None]:
    with open(_folder(root) / "gc.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), mode)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Lease:
    """A held claim on some digests; extend it with :meth:`add`, end it with
    :meth:`release` (or leave the :func:`hold` block)."""

    def __init__(self, root: Path, handle: IO[bytes], path: Path) -> None:
        self.root = root
        self.path = path
        self.digests: set[str] = set()
        self._handle: IO[bytes] | None = handle

    def add(self, digests: Iterable[str]) -> set[str]:
        """Hold ``digests`` too; return those whose objects are already gone (a
        collection deleted them before this lease could protect them)."""
        if self._handle is None:
            raise RuntimeError("the lease was released; take a new one with hold()")
        with _gc_lock(self.root, fcntl.LOCK_SH):
            self.digests.update(digests)
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.write(json.dumps(sorted(self.digests)).encode())
            self._handle.flush()
            return {d for d in self.digests if not object_dir(self.root, d).is_dir()}

    def release(self) -> None:
        """Delete the lease file and drop its lock (idempotent)."""
        if self._handle is not None:
            self.path.unlink(missing_ok=True)
            self._handle.close()  # closing drops the flock
            self._handle = None


@contextlib.contextmanager
def hold(root: Path, digests: Iterable[str] = ()) -> Iterator[Lease]:
    """Hold ``digests`` (and any added later) against collection while the block runs.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with hold(root, ["ab" * 32]) as lease:
    ...     ("ab" * 32) in live_digests(root)
    True
    >>> live_digests(root)
    set()
    """
    folder = _folder(root)
    token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    partial, path = folder / f".{token}.tmp", folder / f"{token}{_SUFFIX}"
    handle = open(partial, "w+b")  # noqa: SIM115 - lives as long as the lease
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    handle.write(b"[]")
    handle.flush()
    os.replace(partial, path)  # the lock is on the inode: visible only once locked
    lease = Lease(root, handle, path)
    try:
        lease.add(digests)
        yield lease
    finally:
        lease.release()


def _read_live(path: Path) -> set[str] | None:
    """The digests of a live lease, or None (its holder is gone: the file is removed)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return set(json.loads(handle.read() or b"[]"))
            except ValueError:
                return set()
        path.unlink(missing_ok=True)  # stale: its holder died
        return None


def live_digests(root: Path) -> set[str]:
    """Every digest some live lease holds; stale lease files are removed on the way."""
    held: set[str] = set()
    for path in sorted(_folder(root).glob(f"*{_SUFFIX}")):
        held |= _read_live(path) or set()
    return held


@contextlib.contextmanager
def collecting(root: Path) -> Iterator[set[str]]:
    """Block new leases while the block runs and give it the digests held now."""
    with _gc_lock(root, fcntl.LOCK_EX):
        yield live_digests(root)
