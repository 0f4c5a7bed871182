"""The content-addressed object store: put a file or folder once, get it by digest.

An object is a payload (a file or a folder) under its content digest (see
``digests``), with a ``meta.json`` beside it (:class:`AtomMeta`). :meth:`ObjectStore.put`
copies the payload into ``<store>/tmp`` (the same file system), hashes the copy, writes
the meta, makes the payload read-only and renames the folder into place. A rename onto
an existing object fails, so an object is never overwritten: the first writer wins and
every other writer gets the existing atom back (its meta, type included, stays the
first one's). Any number of processes may put at once.

Diagnostics (plots, logs) go in ``extras/<run>/`` beside the payload, never in it, so
that they do not change the digest (:meth:`ObjectStore.add_extras`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sweepflow.hashing import canonical_json
from sweepflow.store.digests import folder_files, payload_digest
from sweepflow.store.errors import AmbiguousAtom, StoreError, UnknownAtom
from sweepflow.store.layout import DIGEST, check_name, object_dir, objects_dir, tmp_dir
from sweepflow.store.leases import Lease

__all__ = ["Atom", "AtomMeta", "ObjectStore", "Provenance", "make_writable", "now_iso"]

META_FORMAT = 1
SHORT = 12  # hex digits in a short id


def now_iso() -> str:
    """The current UTC time, ISO 8601 (``2026-01-02T03:04:05.123456+00:00``)."""
    return dt.datetime.now(dt.UTC).isoformat()


class Provenance(BaseModel):
    """How an object was made; every field optional (a hand-put object has none).

    Attributes:
        step: The step that wrote it.
        output: The step's output name it was returned as.
        cache_key: The step's cache key (a record; the catalog's entries are authoritative).
        config: The step's resolved config.
        inputs: The step's inputs, name -> digest (the ``made_from`` edges).
        code: The code fingerprint, file -> digest (or ``code_version``).
        packages: Package versions, name -> version.
        git_commit, git_dirty: The project's commit and whether it had changes.
        host, user: Where and by whom (fields, never part of an id).
        placement: Where a worker ran it: ``SLURM_JOB_ID``, ``SLURMD_NODENAME``,
            ``CUDA_VISIBLE_DEVICES`` as set there (empty when none was).
        workflow, workflow_run: The workflow and its run that wrote it.
        mlflow_run_id, prefect_flow_run_id, prefect_task_run_id: Tracking ids.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str | None = None
    output: str | None = None
    cache_key: str | None = None
    config: dict[str, Any] | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    code: dict[str, str] = Field(default_factory=dict)
    packages: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    git_dirty: bool | None = None
    host: str | None = None
    user: str | None = None
    placement: dict[str, str] = Field(default_factory=dict)
    workflow: str | None = None
    workflow_run: str | None = None
    mlflow_run_id: str | None = None
    prefect_flow_run_id: str | None = None
    prefect_task_run_id: str | None = None


class AtomMeta(BaseModel):
    """The ``meta.json`` of an object.

    Attributes:
        type: The artifact type (``dataset``, ``model``, ...).
        digest: The content digest (the folder name).
        kind: Whether the payload is a ``file`` or a ``folder``.
        size: Bytes in the payload.
        created: When it was stored (UTC, ISO 8601).
        provenance: How it was made.
        metadata: Small JSON-able metadata and metrics the step returned.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = META_FORMAT
    type: str
    digest: str
    kind: Literal["file", "folder"]
    size: int
    created: str
    provenance: Provenance = Field(default_factory=Provenance)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Atom(BaseModel):
    """A stored object: its payload path (read-only) and its meta."""

    model_config = ConfigDict(frozen=True)

    path: Path
    meta: AtomMeta

    @property
    def digest(self) -> str:
        """The full content digest (the id everywhere but in front of people)."""
        return self.meta.digest

    @property
    def type(self) -> str:
        """The artifact type."""
        return self.meta.type

    @property
    def short_id(self) -> str:
        """``<type>:<first 12 hex>``, the id shown to people."""
        return f"{self.meta.type}:{self.meta.digest[:SHORT]}"


def make_writable(path: Path) -> None:
    """Give the owner write access under ``path`` again (before removing it)."""
    if path.is_dir() and not path.is_symlink():
        for base, dirs, _ in os.walk(path):
            for name in dirs:
                os.chmod(Path(base, name), 0o755)
        os.chmod(path, 0o755)


def _read_only(path: Path) -> None:
    """Drop write bits from a payload (files keep their executable bit)."""
    items = [p for _, p in folder_files(path)] if path.is_dir() else [path]
    for item in items:
        mode = item.stat().st_mode
        os.chmod(item, 0o555 if mode & stat.S_IXUSR else 0o444)
    if path.is_dir():
        dirs = [Path(base, d) for base, names, _ in os.walk(path) for d in names]
        for folder in [*reversed(dirs), path]:
            os.chmod(folder, 0o555)


def _copy(source: Path, target: Path) -> int:
    """Copy a file, or a folder's regular files, to ``target``; return the bytes."""
    if source.is_dir():
        size = 0
        target.mkdir()
        for rel, path in folder_files(source):
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            size += dest.stat().st_size
        return size
    shutil.copy2(source, target)
    return target.stat().st_size


def _write_json(handle: IO[str], data: dict[str, Any]) -> None:
    handle.write(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False))
    handle.write("\n")


class ObjectStore:
    """The objects under ``root`` (``<state>/store``); see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).absolute()

    def put(
        self,
        path: str | Path,
        type: str,
        provenance: Provenance | dict[str, Any] | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        lease: Lease | None = None,
    ) -> Atom:
        """Store a file or folder (copied; the source stays); return its atom.

        Args:
            path: The payload: a regular file, or a folder of regular files.
            type: Its artifact type.
            provenance: How it was made (a :class:`Provenance` or its fields).
            metadata: Small JSON-able metadata and metrics to keep in the meta.
            lease: Hold the object in this lease, so a collection running now cannot
                delete an existing object this put returns.

        Raises:
            StoreError: if the payload is missing, a symlink, holds a symlink, or is
                neither a file nor a folder.
        """
        source = Path(path)
        payload_digest(source)  # refuses symlinks and missing paths before copying
        prov = (
            provenance if isinstance(provenance, Provenance) else Provenance(**(provenance or {}))
        )
        canonical_json(metadata or {})  # JSON-able, or a clear TypeError now
        tmp_dir(self.root).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="put-", dir=tmp_dir(self.root)))
        try:
            size = _copy(source, staging / "payload")
            digest = payload_digest(staging / "payload")  # the bytes stored, not the source
            meta = AtomMeta(
                type=type,
                digest=digest,
                kind="folder" if source.is_dir() else "file",
                size=size,
                created=now_iso(),
                provenance=prov,
                metadata=metadata or {},
            )
            with open(staging / "meta.json", "w", encoding="utf-8") as handle:
                _write_json(handle, meta.model_dump(mode="json"))
            _read_only(staging / "payload")
            os.chmod(staging, 0o755)  # mkdtemp made it private; others may read objects
            final = object_dir(self.root, digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            if lease is not None:
                lease.add([digest])
            if not final.exists():
                with contextlib.suppress(OSError):  # another writer won the race
                    os.rename(staging, final)
            return self.get(digest)
        finally:
            if staging.exists():
                make_writable(staging)
                shutil.rmtree(staging, ignore_errors=True)

    def add_extras(self, digest: str, folder: str | Path, run: str) -> Path:
        """Keep diagnostics (plots, logs) of ``run`` beside the object, not hashed.

        A second call for the same ``run`` replaces nothing: the first one wins.
        """
        try:
            check_name(run, "extras run")
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        target = object_dir(self.root, self.resolve(digest)) / "extras" / run
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="extras-", dir=self.root / "tmp"))
        try:
            _copy(Path(folder), staging / "x")
            with contextlib.suppress(OSError):
                os.rename(staging / "x", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def exists(self, digest: str) -> bool:
        """Whether the object ``digest`` (a full digest) is in the store."""
        return (
            bool(DIGEST.fullmatch(digest))
            and (object_dir(self.root, digest) / "meta.json").is_file()
        )

    def get(self, ref: str) -> Atom:
        """The atom of a full digest, a short id or a unique prefix.

        Raises:
            UnknownAtom: if nothing matches.
            AmbiguousAtom: if a prefix matches more than one object.
        """
        digest = self.resolve(ref)
        folder = object_dir(self.root, digest)
        try:
            meta = AtomMeta.model_validate_json((folder / "meta.json").read_bytes())
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"{folder / 'meta.json'}: unreadable ({exc.__class__.__name__}); "
                "run 'sweepflow artifacts verify --quarantine'"
            ) from None
        return Atom(path=folder / "payload", meta=meta)

    def open(self, ref: str, mode: str = "rb") -> IO[Any]:
        """Open a file payload for reading (``r`` or ``rb``)."""
        if mode not in ("r", "rb"):
            raise StoreError(f"objects are read-only: open {ref!r} with 'r' or 'rb', not {mode!r}")
        atom = self.get(ref)
        if atom.meta.kind != "file":
            raise StoreError(f"{atom.short_id} is a folder: read files under {atom.path} instead")
        return open(atom.path, mode)

    def digests(self) -> Iterator[str]:
        """Every digest in the store (by folder name; a folder without meta included)."""
        base = objects_dir(self.root)
        for folder in sorted(base.glob("??/??/*")):
            if DIGEST.fullmatch(folder.name):
                yield folder.name

    def resolve(self, ref: str) -> str:
        """The full digest named by ``ref``: a digest, a unique hex prefix (at least 4
        digits), or a short id ``<type>:<prefix>`` (the type must match).

        >>> ObjectStore("/nonexistent").resolve("ab")
        Traceback (most recent call last):
        ...
        sweepflow.store.errors.UnknownAtom: 'ab': give at least 4 hex digits of a digest \
(or a short id like model:1a2b3c4d5e6f)
        """
        kind, _, prefix = ref.rpartition(":")
        prefix = prefix.lower()
        if len(prefix) < 4 or not all(c in "0123456789abcdef" for c in prefix):
            raise UnknownAtom(
                f"{ref!r}: give at least 4 hex digits of a digest "
                "(or a short id like model:1a2b3c4d5e6f)"
            )
        shard = objects_dir(self.root) / prefix[:2] / prefix[2:4]
        found = sorted(p.name for p in shard.glob(f"{prefix}*") if (p / "meta.json").is_file())
        if kind:
            found = [d for d in found if self._type(d) == kind]
        if not found:
            raise UnknownAtom(
                f"{ref!r}: no object in {self.root} matches; "
                "list them with 'sweepflow artifacts ls'"
            )
        if len(found) > 1:
            shown = ", ".join(f"{self._type(d)}:{d[:16]}" for d in found[:5])
            raise AmbiguousAtom(
                f"{ref!r}: matches {len(found)} objects ({shown}); give more digits"
            )
        return found[0]

    def _type(self, digest: str) -> str:
        try:
            data = json.loads((object_dir(self.root, digest) / "meta.json").read_bytes())
            return str(data.get("type", "?"))
        except (OSError, ValueError):
            return "?"
