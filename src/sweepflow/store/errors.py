"""The errors of the artifact store: each one line saying what, where and how to fix it."""

from __future__ import annotations

from sweepflow.errors import SweepflowError

__all__ = ["AmbiguousAtom", "GcRefused", "StoreError", "UnknownAtom"]


class StoreError(SweepflowError, ValueError):
    """A payload the store cannot take (missing, a symlink, not a file or folder) or a
    store folder it cannot read."""


class UnknownAtom(StoreError, LookupError):
    """An id, digest or prefix that names no object in the store."""


class AmbiguousAtom(StoreError, LookupError):
    """A short id or prefix that names more than one object; the message lists them."""


class GcRefused(StoreError):
    """A garbage collection asked for without the settings it needs (``ttl_days``)."""
