"""The catalog: a SQLite index of the store's atoms, ``made_from`` edges, step cache
entries and roots, rebuilt from files at any time (:meth:`Catalog.reindex`).

Only the driver process writes the catalog (workers put objects and hand their atoms
back); its threads share one connection behind a lock. The database uses
``journal_mode=DELETE``, never WAL (WAL needs shared memory, which cluster file systems
do not give), and waits up to 30 s for a lock held by another reader or driver.

Tables::

    atoms(digest, type, kind, step, workflow, size, created, meta)  -- one per object
    made_from(child, parent, input)   -- child was made from parent as input `input`
    cache_entries(key, step, outputs, created)  -- outputs: JSON {name: digest}
    roots(id, kind, workflow, created)          -- kind: 'run' or 'pin'
    root_atoms(root, digest)                    -- the atoms a root holds

Nothing lives only here: atoms and edges come from each object's ``meta.json``, and
cache entries and roots are also written as JSON files (``entries/``, ``roots/``), so
a lost or damaged catalog is rebuilt whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from sweepflow.hashing import digest as json_digest
from sweepflow.store.errors import StoreError
from sweepflow.store.layout import check_name
from sweepflow.store.objects import Atom, AtomMeta, ObjectStore, now_iso

__all__ = ["Catalog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS atoms(
    digest TEXT PRIMARY KEY, type TEXT NOT NULL, kind TEXT NOT NULL, step TEXT,
    workflow TEXT, size INTEGER NOT NULL, created TEXT NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS made_from(
    child TEXT NOT NULL, parent TEXT NOT NULL, input TEXT NOT NULL,
    PRIMARY KEY (child, input));
CREATE INDEX IF NOT EXISTS made_from_parent ON made_from(parent);
CREATE TABLE IF NOT EXISTS cache_entries(
    key TEXT PRIMARY KEY, step TEXT NOT NULL, outputs TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots(
    id TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('run', 'pin')),
    workflow TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS root_atoms(
    root TEXT NOT NULL, digest TEXT NOT NULL, PRIMARY KEY (root, digest));
"""
TABLES = ("atoms", "made_from", "cache_entries", "roots", "root_atoms")
NODE_FIELDS = ("id", "type", "digest", "step", "size", "created")


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _read_jsons(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            continue  # a damaged record is dropped, as if never written
    return found


class Catalog:
    """The catalog of the store at ``root`` (``<root>/catalog.db``); see the module
    docstring. Use it as a context manager, or :meth:`close` it."""

    def __init__(self, root: str | Path) -> None:
        self.store = ObjectStore(root)
        self.root = self.store.root
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "catalog.db"
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path}: not a usable catalog ({exc}); move it away and run "
                "'sweepflow artifacts reindex'"
            ) from None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def _write(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        with self._lock, self._db:
            self._db.executemany(sql, rows)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- atoms and edges -------------------------------------------------------------

    def _atom_rows(self, meta: AtomMeta) -> tuple[tuple[Any, ...], list[tuple[str, str, str]]]:
        prov = meta.provenance
        row = (
            meta.digest,
            meta.type,
            meta.kind,
            prov.step,
            prov.workflow,
            meta.size,
            meta.created,
            meta.model_dump_json(),
        )
        return row, [(meta.digest, parent, name) for name, parent in prov.inputs.items()]

    def record(self, atoms: Atom | Iterable[Atom]) -> None:
        """Index atoms (and their ``made_from`` edges); indexing twice changes nothing."""
        items = [atoms] if isinstance(atoms, Atom) else list(atoms)
        with self._lock, self._db:
            for atom in items:
                row, edges = self._atom_rows(atom.meta)
                self._db.execute("INSERT OR REPLACE INTO atoms VALUES (?,?,?,?,?,?,?,?)", row)
                self._db.executemany("INSERT OR REPLACE INTO made_from VALUES (?,?,?)", edges)

    def forget(self, digests: Iterable[str]) -> None:
        """Drop deleted objects: their rows, their edges as child, and cache entries
        that name them."""
        gone = set(digests)
        with self._lock, self._db:
            for digest in gone:
                self._db.execute("DELETE FROM atoms WHERE digest = ?", (digest,))
                self._db.execute("DELETE FROM made_from WHERE child = ?", (digest,))
            for key, outputs in self._db.execute("SELECT key, outputs FROM cache_entries"):
                if gone & set(json.loads(outputs).values()):
                    self._db.execute("DELETE FROM cache_entries WHERE key = ?", (key,))
                    (self.root / "entries" / f"{key}.json").unlink(missing_ok=True)

    def atoms(
        self,
        *,
        type: str | None = None,
        step: str | None = None,
        workflow: str | None = None,
        since: str | None = None,
    ) -> list[dict[str, Any]]:
        """Indexed atoms as JSON-able rows (``id``, ``type``, ``digest``, ``step``,
        ``size``, ``created``), oldest first, filtered by the given fields; ``since`` is
        an ISO date or time (UTC)."""
        where, args = [], []
        for column, value in (("type", type), ("step", step), ("workflow", workflow)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("created >= ?")
            args.append(since)
        sql = "SELECT type, digest, step, size, created FROM atoms"
        sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created, digest"
        return [self._node(*row) for row in self._query(sql, tuple(args))]

    @staticmethod
    def _node(
        type: str | None, digest: str, step: str | None, size: int | None, created: str | None
    ) -> dict[str, Any]:
        short = f"{type or '?'}:{digest[:12]}"
        return dict(zip(NODE_FIELDS, (short, type, digest, step, size, created), strict=True))

    def lineage(
        self, digest: str, direction: Literal["up", "down"] = "up"
    ) -> dict[str, list[dict[str, Any]]]:
        """The atoms ``digest`` was made from (``up``) or that were made from it
        (``down``), transitively: ``{"nodes": [...], "edges": [...]}``, JSON-able.

        Nodes have ``id``, ``type``, ``digest``, ``step``, ``size``, ``created`` (None
        for an object not indexed); edges have ``parent``, ``child``, ``input`` (full
        digests).
        """
        if direction not in ("up", "down"):
            raise StoreError(f"lineage direction {direction!r}: use 'up' or 'down'")
        near, far = ("child", "parent") if direction == "up" else ("parent", "child")
        seen, todo, edges = {digest}, [digest], []
        while todo:
            current = todo.pop()
            rows = self._query(
                f"SELECT parent, child, input FROM made_from WHERE {near} = ? ORDER BY input",
                (current,),
            )
            for parent, child, name in rows:
                edges.append({"parent": parent, "child": child, "input": name})
                other = parent if far == "parent" else child
                if other not in seen:
                    seen.add(other)
                    todo.append(other)
        nodes = []
        for item in sorted(seen):
            row = self._query(
                "SELECT type, digest, step, size, created FROM atoms WHERE digest = ?", (item,)
            )
            nodes.append(self._node(*row[0]) if row else self._node(None, item, None, None, None))
        edges.sort(key=lambda e: (e["child"], e["input"], e["parent"]))
        return {"nodes": nodes, "edges": edges}

    # -- cache entries ---------------------------------------------------------------

    def record_cache(self, key: str, step: str, outputs: Mapping[str, str]) -> None:
        """Remember that step ``step`` with cache key ``key`` gave ``outputs`` (name ->
        digest); a later entry for the same key replaces it."""
        try:
            check_name(key, "cache key")
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        entry = {"key": key, "step": step, "outputs": dict(outputs), "created": now_iso()}
        # The file and the row under one write lock across processes: two drivers that
        # record the same key leave the same entry in both (reindex reads the files).
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            _write_atomic(self.root / "entries" / f"{key}.json", entry)
            self._insert_entries([entry])

    def _insert_entries(self, entries: Iterable[dict[str, Any]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO cache_entries VALUES (?,?,?,?)",
            (
                (e["key"], e["step"], json.dumps(e["outputs"], sort_keys=True), e["created"])
                for e in entries
            ),
        )

    def lookup(self, key: str) -> dict[str, Atom] | None:
        """The outputs of cache key ``key`` by name, or None: no entry, or one of its
        objects is missing (a miss, never an error)."""
        rows = self._query("SELECT outputs FROM cache_entries WHERE key = ?", (key,))
        if not rows:
            return None
        outputs: dict[str, str] = json.loads(rows[0][0])
        if not all(self.store.exists(d) for d in outputs.values()):
            return None
        try:
            return {name: self.store.get(d) for name, d in outputs.items()}
        except StoreError:
            return None

    # -- roots -----------------------------------------------------------------------

    def add_run(
        self, run_id: str, workflow: str, digests: Iterable[str], created: str | None = None
    ) -> None:
        """Record a workflow run and the atoms it made or used (a root for ``gc``)."""
        self._add_root(
            {
                "id": f"run:{run_id}",
                "kind": "run",
                "workflow": workflow,
                "created": created or now_iso(),
                "digests": sorted(set(digests)),
            }
        )

    def pin(self, digest: str) -> None:
        """Keep ``digest`` (and what it was made from) through every ``gc``."""
        self._add_root(
            {
                "id": f"pin:{digest}",
                "kind": "pin",
                "workflow": None,
                "created": now_iso(),
                "digests": [digest],
            }
        )

    def unpin(self, digest: str) -> None:
        """Undo :meth:`pin` (nothing if it was not pinned)."""
        self.remove_root(f"pin:{digest}")

    def _root_file(self, root_id: str) -> Path:
        return self.root / "roots" / f"{json_digest(root_id)[:32]}.json"

    def _add_root(self, root: dict[str, Any]) -> None:
        _write_atomic(self._root_file(root["id"]), root)
        self._insert_roots([root])

    def _insert_roots(self, roots: Iterable[dict[str, Any]]) -> None:
        with self._lock, self._db:
            for r in roots:
                self._db.execute(
                    "INSERT OR REPLACE INTO roots VALUES (?,?,?,?)",
                    (r["id"], r["kind"], r["workflow"], r["created"]),
                )
                self._db.execute("DELETE FROM root_atoms WHERE root = ?", (r["id"],))
                self._db.executemany(
                    "INSERT INTO root_atoms VALUES (?,?)", ((r["id"], d) for d in r["digests"])
                )

    def remove_root(self, root_id: str) -> None:
        """Forget a run or pin (``run:<id>``, ``pin:<digest>``)."""
        self._root_file(root_id).unlink(missing_ok=True)
        with self._lock, self._db:
            self._db.execute("DELETE FROM roots WHERE id = ?", (root_id,))
            self._db.execute("DELETE FROM root_atoms WHERE root = ?", (root_id,))

    def roots(self) -> list[dict[str, Any]]:
        """Every root: ``id``, ``kind``, ``workflow``, ``created``, ``digests``."""
        found = []
        for root_id, kind, workflow, created in self._query(
            "SELECT id, kind, workflow, created FROM roots ORDER BY created, id"
        ):
            digests = self._query(
                "SELECT digest FROM root_atoms WHERE root = ? ORDER BY digest", (root_id,)
            )
            found.append(
                {
                    "id": root_id,
                    "kind": kind,
                    "workflow": workflow,
                    "created": created,
                    "digests": [d for (d,) in digests],
                }
            )
        return found

    # -- rebuilding ------------------------------------------------------------------

    def reindex(self) -> dict[str, int]:
        """Rebuild every table from the files: each object's ``meta.json``, and the
        ``entries/`` and ``roots/`` records; return the row count of each table.

        An object whose meta does not read is left out (``verify`` reports it).
        """
        metas = []
        for digest in self.store.digests():
            try:
                metas.append(self.store.get(digest).meta)
            except StoreError:
                continue
        with self._lock, self._db:
            for table in TABLES:
                self._db.execute(f"DELETE FROM {table}")
        self.record(Atom(path=Path(), meta=m) for m in metas)
        self._insert_entries(_read_jsons(self.root / "entries"))
        self._insert_roots(_read_jsons(self.root / "roots"))
        return {
            t: n for t, (n,) in ((t, self._query(f"SELECT count(*) FROM {t}")[0]) for t in TABLES)
        }

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, sorted (to compare two catalogs)."""
        return {t: sorted(self._query(f"SELECT * FROM {t}")) for t in TABLES}
