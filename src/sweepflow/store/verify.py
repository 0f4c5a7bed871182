"""Re-hash every object of a store; report, and optionally quarantine, corrupt ones."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sweepflow.store.digests import payload_digest
from sweepflow.store.errors import StoreError
from sweepflow.store.layout import object_dir, quarantine_dir
from sweepflow.store.objects import ObjectStore

__all__ = ["Corrupt", "verify"]


class Corrupt(BaseModel):
    """A corrupt object: its digest, what is wrong, and where it is now."""

    model_config = ConfigDict(frozen=True)

    digest: str
    reason: str
    path: Path


def _problem(store: ObjectStore, digest: str) -> str:
    """What is wrong with object ``digest``, or ``""``."""
    try:
        meta = store.get(digest).meta
    except StoreError:
        return "meta.json is missing or unreadable"
    if meta.digest != digest:
        return f"meta.json names digest {meta.digest[:12]}, not its folder's"
    try:
        actual = payload_digest(object_dir(store.root, digest) / "payload")
    except (StoreError, OSError) as exc:
        return f"payload unreadable: {exc}"
    return "" if actual == digest else f"payload re-hashes to {actual[:12]}"


def verify(store: ObjectStore, quarantine: bool = False) -> list[Corrupt]:
    """Re-hash every object of ``store``; return the corrupt ones, in digest order.

    Args:
        quarantine: Move each corrupt object to ``<store>/quarantine/`` (out of the
            store, so lookups miss it and the step runs again); the catalog forgets it
            at the next ``reindex``.
    """
    found = []
    for digest in list(store.digests()):
        reason = _problem(store, digest)
        if not reason:
            continue
        path = object_dir(store.root, digest)
        if quarantine:
            target = quarantine_dir(store.root) / f"{digest}-{uuid.uuid4().hex[:8]}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, target)
            path = target
        found.append(Corrupt(digest=digest, reason=reason, path=path))
    return found
