"""Garbage collection: delete old objects that no root reaches along ``made_from``.

Marked (kept) are: the atoms of every recorded workflow run (with ``keep_last=K``,
only the newest K runs of each workflow), pinned atoms, atoms a live run holds (see
``leases``), and atoms younger than ``ttl_days``; then everything any kept atom was
made from, transitively, so a kept atom never loses its lineage. Everything else is
deleted. The edges come from each object's ``meta.json`` (the catalog may lag), the
roots from the catalog. A real run also clears what killed writers left in ``tmp/``
(untouched for ``ttl_days``, at least a day).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sweepflow.store.catalog import Catalog
from sweepflow.store.errors import GcRefused, StoreError
from sweepflow.store.layout import object_dir, tmp_dir
from sweepflow.store.leases import collecting
from sweepflow.store.objects import AtomMeta, make_writable

__all__ = ["GcReport", "GcRow", "gc"]


class GcRow(BaseModel):
    """One object that is (or would be) deleted."""

    model_config = ConfigDict(frozen=True)

    id: str
    digest: str
    type: str
    step: str | None
    size: int
    age_days: float


class GcReport(BaseModel):
    """What a collection deleted (or, in a dry run, would delete)."""

    model_config = ConfigDict(frozen=True)

    rows: list[GcRow]
    total_bytes: int
    dry_run: bool


def _roots(catalog: Catalog, keep_last: int | None) -> set[str]:
    runs: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    kept: set[str] = set()
    for root in catalog.roots():
        if root["kind"] == "pin":
            kept.update(root["digests"])
        else:
            runs[root["workflow"]].append(root)
    for group in runs.values():
        group.sort(key=lambda r: r["created"], reverse=True)
        for root in group if keep_last is None else group[:keep_last]:
            kept.update(root["digests"])
    return kept


def _age_days(meta: AtomMeta, now: dt.datetime) -> float:
    created = dt.datetime.fromisoformat(meta.created)
    return (now - created).total_seconds() / 86400


def _sweep_tmp(root: Path, now: dt.datetime, days: float) -> None:
    """Remove what killed writers left in ``tmp/`` (untouched for ``days``); a put in
    progress is younger than that."""
    folder = tmp_dir(root)
    for item in folder.iterdir() if folder.is_dir() else ():
        age = now.timestamp() - item.lstat().st_mtime
        if age > days * 86400:
            make_writable(item)
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)


def gc(
    catalog: Catalog,
    ttl_days: float | None,
    *,
    keep_last: int | None = None,
    dry_run: bool = True,
    now: dt.datetime | None = None,
) -> GcReport:
    """Delete (or, with ``dry_run``, list) unreachable objects older than ``ttl_days``.

    Args:
        catalog: The store's catalog (its roots; it forgets what is deleted).
        ttl_days: Minimum age in days of a deleted object; required.
        keep_last: Only the newest K runs of each workflow are roots (default: all
            recorded runs).
        dry_run: List only; delete nothing.
        now: The time ages are measured from (default: now, UTC).

    Raises:
        GcRefused: without ``ttl_days``, or with a negative one or ``keep_last``.
    """
    if ttl_days is None or ttl_days < 0:
        raise GcRefused(
            "gc needs --ttl-days N (N >= 0): only objects older than N days are deleted, "
            "e.g. 'sweepflow artifacts gc --ttl-days 30 --dry-run'"
        )
    if keep_last is not None and keep_last < 0:
        raise GcRefused(f"--keep-last {keep_last}: give a number of runs >= 0")
    now = now or dt.datetime.now(dt.UTC)
    store = catalog.store
    with collecting(store.root) as held:
        metas: dict[str, AtomMeta] = {}
        for digest in store.digests():
            try:
                metas[digest] = store.get(digest).meta
            except StoreError:
                continue  # unreadable: verify's business, never deleted here
        ages = {d: _age_days(m, now) for d, m in metas.items()}
        todo = list(
            _roots(catalog, keep_last) | held | {d for d, a in ages.items() if a < ttl_days}
        )
        marked: set[str] = set()
        while todo:
            digest = todo.pop()
            if digest not in marked:
                marked.add(digest)
                meta = metas.get(digest)
                todo.extend(meta.provenance.inputs.values() if meta else ())
        rows = [
            GcRow(
                id=f"{m.type}:{d[:12]}",
                digest=d,
                type=m.type,
                step=m.provenance.step,
                size=m.size,
                age_days=round(ages[d], 2),
            )
            for d, m in sorted(metas.items(), key=lambda i: (i[1].created, i[0]))
            if d not in marked
        ]
        if not dry_run:
            for row in rows:
                trash = tmp_dir(store.root) / f"gc-{row.digest}-{uuid.uuid4().hex[:8]}"
                trash.parent.mkdir(parents=True, exist_ok=True)
                os.rename(object_dir(store.root, row.digest), trash)  # gone at once
                make_writable(trash)
                shutil.rmtree(trash)
            catalog.forget(r.digest for r in rows)
            _sweep_tmp(store.root, now, max(ttl_days, 1.0))
    return GcReport(rows=rows, total_bytes=sum(r.size for r in rows), dry_run=dry_run)
