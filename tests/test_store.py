"""The content-addressed artifact store: objects, catalog, verify, gc, leases.

Fast tests of the core (no Prefect): real files, real SQLite, real processes for the
concurrent writers and for a lease whose holder is killed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sweepflow.store import (
    AmbiguousAtom,
    Atom,
    Catalog,
    GcRefused,
    ObjectStore,
    Provenance,
    StoreError,
    UnknownAtom,
    gc,
    hold,
    verify,
)
from sweepflow.store.digests import folder_digest
from sweepflow.store.layout import object_dir

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore(tmp_path / "state" / "store")


def _file(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _put(store: ObjectStore, tmp: Path, text: str, type: str, **prov: object) -> Atom:
    return store.put(_file(tmp / "src", f"{type}-{text}", text), type, Provenance(**prov))


def _set_age(store: ObjectStore, digest: str, days: float) -> None:
    """Make an object ``days`` old by rewriting ``created`` in its meta.json."""
    path = object_dir(store.root, digest) / "meta.json"
    meta = json.loads(path.read_text())
    meta["created"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()
    path.write_text(json.dumps(meta))


# -- objects -------------------------------------------------------------------------


def test_put_file_stores_bytes_read_only_with_meta(store: ObjectStore, tmp_path: Path) -> None:
    source = _file(tmp_path, "data.npz", b"\x00payload bytes")
    prov = Provenance(step="prepare", config={"n": 3}, host="h1", user="ana", git_dirty=True)
    atom = store.put(source, "dataset", prov, metadata={"rows": 3})

    expected = hashlib.sha256(b"\x00payload bytes").hexdigest()
    assert atom.digest == expected
    assert atom.path == object_dir(store.root, expected) / "payload"
    assert atom.path.as_posix().endswith(
        f"objects/sha256/{expected[:2]}/{expected[2:4]}/{expected}/payload"
    )
    assert atom.path.read_bytes() == b"\x00payload bytes"
    assert stat.S_IMODE(atom.path.stat().st_mode) == 0o444
    assert source.exists()  # copied, not moved
    meta = json.loads((atom.path.parent / "meta.json").read_text())
    assert meta["type"] == "dataset" and meta["digest"] == expected and meta["kind"] == "file"
    assert meta["size"] == 14 and meta["metadata"] == {"rows": 3}
    assert meta["provenance"]["step"] == "prepare" and meta["provenance"]["user"] == "ana"
    assert dt.datetime.fromisoformat(meta["created"]).utcoffset() == dt.timedelta(0)
    assert store.get(expected) == atom
    with store.open(expected) as handle:
        assert handle.read() == b"\x00payload bytes"
    assert not any((store.root / "tmp").iterdir())


def test_put_folder_digest_is_canonical(store: ObjectStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _file(a, "x/1.txt", "one")
    _file(a, "2.bin", "two")
    (a / "empty").mkdir()
    _file(b, "2.bin", "two")  # another place, order and time: same content
    _file(b, "x/1.txt", "one")
    os.utime(b / "2.bin", (0, 0))
    atom = store.put(a, "model")
    assert atom.meta.kind == "folder" and atom.meta.size == 6
    assert atom.digest == folder_digest(b) == folder_digest(atom.path)
    assert store.put(b, "model").digest == atom.digest
    assert sorted(p.name for p in atom.path.iterdir()) == ["2.bin", "x"]
    assert stat.S_IMODE((atom.path / "x" / "1.txt").stat().st_mode) == 0o444
    assert stat.S_IMODE((atom.path / "x").stat().st_mode) == 0o555

    (b / "2.bin").chmod(0o755)  # the executable bit is content
    assert folder_digest(b) != atom.digest
    assert stat.S_IMODE((store.put(b, "model").path / "2.bin").stat().st_mode) == 0o555


def test_put_twice_keeps_the_first(store: ObjectStore, tmp_path: Path) -> None:
    first = _put(store, tmp_path, "same", "dataset", step="one")
    second = store.put(_file(tmp_path, "other", "same"), "dataset", {"step": "two"})
    assert second == first and second.meta.provenance.step == "one"
    assert list(store.digests()) == [first.digest]


@pytest.mark.parametrize("where", ["top", "inside"], ids=["symlink", "symlink-inside-folder"])
def test_put_refuses_symlinks(store: ObjectStore, tmp_path: Path, where: str) -> None:
    target = _file(tmp_path, "real.txt", "x")
    folder = tmp_path / "out"
    folder.mkdir()
    link = (tmp_path / "link") if where == "top" else (folder / "link")
    link.symlink_to(target)
    with pytest.raises(StoreError, match="is a symlink") as info:
        store.put(link if where == "top" else folder, "dataset")
    assert "\n" not in str(info.value)
    assert not store.root.exists() or not list(store.digests())


def test_put_missing_path_is_one_clear_line(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"nope\.npz: no such file or folder; return a path"):
        store.put(tmp_path / "nope.npz", "dataset")


def test_short_ids_and_prefixes_resolve(store: ObjectStore, tmp_path: Path) -> None:
    atom = _put(store, tmp_path, "m", "model")
    assert atom.short_id == f"model:{atom.digest[:12]}"
    for ref in (atom.digest, atom.short_id, atom.digest[:6], atom.digest[:8].upper()):
        assert store.resolve(ref) == atom.digest
    with pytest.raises(UnknownAtom, match="no object"):
        store.resolve(f"dataset:{atom.digest[:12]}")  # the type must match
    with pytest.raises(UnknownAtom, match="at least 4 hex"):
        store.get("abc")
    # Two contents whose digests share 4 hex digits: the prefix is ambiguous.
    seen: dict[str, bytes] = {}
    for n in range(100_000):
        data = str(n).encode()
        head = hashlib.sha256(data).hexdigest()[:4]
        if head in seen:
            break
        seen[head] = data
    store.put(_file(tmp_path, "c1", seen[head]), "log")
    store.put(_file(tmp_path, "c2", data), "log")
    with pytest.raises(AmbiguousAtom, match=f"'{head}': matches 2 objects"):
        store.resolve(head)


def test_extras_sit_beside_the_payload_unhashed(store: ObjectStore, tmp_path: Path) -> None:
    atom = _put(store, tmp_path, "weights", "model")
    _file(tmp_path / "plots", "loss.png", b"png")
    extras = store.add_extras(atom.short_id, tmp_path / "plots", "run-1")
    assert extras == atom.path.parent / "extras" / "run-1"
    assert (extras / "loss.png").read_bytes() == b"png"
    assert store.put(_file(tmp_path, "again", "weights"), "model").digest == atom.digest
    assert verify(store) == []


# -- concurrency -----------------------------------------------------------------------

_WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from sweepflow.store import ObjectStore
    root, work, index = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    work.mkdir(parents=True)
    (work / "shared.txt").write_text("the same bytes in every process\\n" * 1000)
    (work / "folder" / "sub").mkdir(parents=True)
    for n in range(20):
        (work / "folder" / "sub" / f"{n}.txt").write_text(str(n) * 500)
    (work / "own.txt").write_text(f"process {index}\\n")
    while not (root.parent / "go").exists():
        time.sleep(0.005)
    store = ObjectStore(root)
    out = [store.put(work / name, kind, {"step": f"w{index}"}).digest
           for name, kind in (("shared.txt", "dataset"), ("folder", "model"), ("own.txt", "log"))]
    print(json.dumps(out))
    """
)


def test_eight_processes_write_one_object_per_digest(tmp_path: Path) -> None:
    root = tmp_path / "state" / "store"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(root), str(tmp_path / f"w{i}"), str(i)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for i in range(8)
    ]
    (tmp_path / "state").mkdir(exist_ok=True)
    (tmp_path / "state" / "go").touch()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(out))
    assert len({r[0] for r in results}) == 1 and len({r[1] for r in results}) == 1
    assert len({r[2] for r in results}) == 8
    store = ObjectStore(root)
    digests = list(store.digests())
    assert sorted(digests) == sorted({d for r in results for d in r}) and len(digests) == 10
    assert not any((root / "tmp").iterdir())  # every loser cleaned up
    assert verify(store) == []
    # The driver indexes what its workers returned, from several threads at once.
    with Catalog(root) as catalog:
        threads = [
            threading.Thread(target=lambda r=r: catalog.record(store.get(d) for d in r))
            for r in results
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(catalog.atoms()) == 10
        indexed = catalog.dump()
        catalog.reindex()
        assert catalog.dump() == indexed


# -- verify ----------------------------------------------------------------------------


def test_verify_finds_and_quarantines_a_corrupt_payload(store: ObjectStore, tmp_path: Path) -> None:
    good = _put(store, tmp_path, "good", "dataset")
    bad = _put(store, tmp_path, "bad data", "model")
    with Catalog(store.root) as catalog:
        catalog.record([good, bad])
        catalog.record_cache("k1", "train", {"model": bad.digest})
        assert catalog.lookup("k1") == {"model": bad}
        bad.path.chmod(0o644)
        bad.path.write_bytes(b"Bad data")  # one byte changed
        problems = verify(store)
        actual = hashlib.sha256(b"Bad data").hexdigest()
        assert [(p.digest, p.reason) for p in problems] == [
            (bad.digest, f"payload re-hashes to {actual[:12]}")
        ]
        assert verify(store) == problems  # reporting moves nothing
        moved = verify(store, quarantine=True)
        assert moved[0].path.parent == store.root / "quarantine"
        assert (moved[0].path / "payload").read_bytes() == b"Bad data"
        assert not store.exists(bad.digest) and store.exists(good.digest)
        assert catalog.lookup("k1") is None  # a miss, not an error
        assert verify(store) == []


def test_verify_reports_a_missing_meta(store: ObjectStore, tmp_path: Path) -> None:
    atom = _put(store, tmp_path, "x", "dataset")
    (atom.path.parent / "meta.json").unlink()
    assert [p.reason for p in verify(store)] == ["meta.json is missing or unreadable"]


# -- catalog ---------------------------------------------------------------------------


def _graph(store: ObjectStore, tmp: Path) -> dict[str, Atom]:
    """dataset -> model -> report, and the report also reads the dataset."""
    ds = _put(store, tmp, "rows", "dataset", step="prepare")
    model = _put(store, tmp, "w", "model", step="train", inputs={"dataset": ds.digest})
    report = _put(
        store,
        tmp,
        "r2=0.9",
        "report",
        step="evaluate",
        inputs={"model": model.digest, "dataset": ds.digest},
    )
    return {"ds": ds, "model": model, "report": report}


def test_catalog_never_uses_wal(store: ObjectStore, tmp_path: Path) -> None:
    with Catalog(store.root) as catalog:
        catalog.record(_put(store, tmp_path, "x", "dataset"))
        assert catalog._query("PRAGMA journal_mode") == [("delete",)]
    assert not list(store.root.glob("catalog.db-*"))


def test_lineage_up_and_down(store: ObjectStore, tmp_path: Path) -> None:
    g = _graph(store, tmp_path)
    with Catalog(store.root) as catalog:
        catalog.record(g.values())
        up = catalog.lineage(g["report"].digest, "up")
        assert {n["digest"] for n in up["nodes"]} == {a.digest for a in g.values()}
        assert {(e["parent"], e["child"], e["input"]) for e in up["edges"]} == {
            (g["ds"].digest, g["model"].digest, "dataset"),
            (g["model"].digest, g["report"].digest, "model"),
            (g["ds"].digest, g["report"].digest, "dataset"),
        }
        node = next(n for n in up["nodes"] if n["digest"] == g["model"].digest)
        assert node == {
            "id": g["model"].short_id,
            "type": "model",
            "digest": g["model"].digest,
            "step": "train",
            "size": 1,
            "created": g["model"].meta.created,
        }
        down = catalog.lineage(g["ds"].digest, "down")
        assert {n["type"] for n in down["nodes"]} == {"dataset", "model", "report"}
        assert len(down["edges"]) == 3
        assert catalog.lineage(g["report"].digest, "down")["edges"] == []
        assert catalog.lineage(g["model"].digest, "up")["nodes"][0]["type"] in ("dataset", "model")
        assert len(catalog.lineage(g["model"].digest, "up")["nodes"]) == 2
        json.dumps(up)


def test_reindex_rebuilds_the_catalog_whole(store: ObjectStore, tmp_path: Path) -> None:
    g = _graph(store, tmp_path)
    with Catalog(store.root) as catalog:
        catalog.record(g.values())
        catalog.record_cache("key-train", "train", {"model": g["model"].digest})
        catalog.add_run("r1", "train_and_evaluate", [a.digest for a in g.values()])
        catalog.pin(g["ds"].digest)
        original = catalog.dump()
    assert all(original[t] for t in original)
    (store.root / "catalog.db").unlink()
    with Catalog(store.root) as catalog:
        assert catalog.dump()["atoms"] == []
        counts = catalog.reindex()
        assert catalog.dump() == original
        assert counts == {t: len(rows) for t, rows in original.items()}
        assert catalog.lookup("key-train") == {"model": g["model"]}
        assert catalog.lookup("no-such-key") is None


def test_a_damaged_catalog_says_how_to_fix_it(store: ObjectStore) -> None:
    store.root.mkdir(parents=True)
    (store.root / "catalog.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="reindex"):
        Catalog(store.root)


# -- gc --------------------------------------------------------------------------------


def test_gc_refuses_without_ttl(store: ObjectStore) -> None:
    with Catalog(store.root) as catalog, pytest.raises(GcRefused) as info:
        gc(catalog, None)
    assert "--ttl-days" in str(info.value) and "\n" not in str(info.value)


def test_gc_deletes_exactly_the_old_unreachable_objects(store: ObjectStore, tmp_path: Path) -> None:
    g = _graph(store, tmp_path)  # a recorded run holds these
    orphan_ds = _put(store, tmp_path, "old rows", "dataset", step="prepare")
    orphan = _put(
        store, tmp_path, "old w", "model", step="train", inputs={"dataset": orphan_ds.digest}
    )
    young = _put(
        store, tmp_path, "new w", "model", step="train", inputs={"dataset": orphan_ds.digest}
    )
    pinned = _put(store, tmp_path, "pinned", "model", step="train")
    leased = _put(store, tmp_path, "in use", "model", step="train")
    everything = [*g.values(), orphan_ds, orphan, young, pinned, leased]
    for atom in everything:
        _set_age(store, atom.digest, 40)
    _set_age(store, young.digest, 2)
    with Catalog(store.root) as catalog, hold(store.root, [leased.digest]):
        catalog.reindex()
        catalog.add_run("r1", "train_and_evaluate", [g["report"].digest])
        catalog.pin(pinned.digest)
        catalog.record_cache("k-orphan", "train", {"model": orphan.digest})

        dry = gc(catalog, ttl_days=30, dry_run=True)
        assert [r.id for r in dry.rows] == [orphan.short_id]  # young keeps its dataset
        assert dry.total_bytes == orphan.meta.size and dry.rows[0].age_days >= 40
        assert dry.rows[0].step == "train" and dry.rows[0].type == "model"
        assert all(store.exists(a.digest) for a in everything)  # a dry run deletes nothing

        assert gc(catalog, ttl_days=100, dry_run=False).rows == []  # nothing that old
        report = gc(catalog, ttl_days=30, dry_run=False)
        assert report.rows == dry.rows
        assert not store.exists(orphan.digest)
        assert {d for d in store.digests()} == {a.digest for a in everything} - {orphan.digest}
        assert catalog.lookup("k-orphan") is None
        assert orphan.digest not in {a["digest"] for a in catalog.atoms()}
        assert verify(store) == []

        # Without the young model, its old dataset goes too; the lease still holds.
        _set_age(store, young.digest, 40)
        gone = gc(catalog, ttl_days=30, dry_run=False)
        assert {r.digest for r in gone.rows} == {young.digest, orphan_ds.digest}
        assert store.exists(leased.digest) and store.exists(pinned.digest)
        assert all(store.exists(a.digest) for a in g.values())
    # The lease ended: nothing holds that model any more.
    with Catalog(store.root) as catalog:
        assert [r.digest for r in gc(catalog, ttl_days=30, dry_run=False).rows] == [leased.digest]


def test_gc_keep_last_keeps_the_newest_runs(store: ObjectStore, tmp_path: Path) -> None:
    old = _put(store, tmp_path, "run 1 output", "model", workflow="wf")
    new = _put(store, tmp_path, "run 2 output", "model", workflow="wf")
    for atom in (old, new):
        _set_age(store, atom.digest, 50)
    with Catalog(store.root) as catalog:
        catalog.add_run("1", "wf", [old.digest], created="2026-01-01T00:00:00+00:00")
        catalog.add_run("2", "wf", [new.digest], created="2026-02-01T00:00:00+00:00")
        assert gc(catalog, ttl_days=30).rows == []  # every recorded run is a root
        assert [r.digest for r in gc(catalog, ttl_days=30, keep_last=1).rows] == [old.digest]


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweepflow.store import hold
    with hold(Path(sys.argv[1]), [sys.argv[2]]):
        print("held", flush=True)
        time.sleep(600)
    """
)


def test_a_killed_holders_lease_stops_protecting(store: ObjectStore, tmp_path: Path) -> None:
    atom = _put(store, tmp_path, "held elsewhere", "model")
    _set_age(store, atom.digest, 40)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store.root), atom.digest],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with Catalog(store.root) as catalog:
            assert gc(catalog, ttl_days=30, dry_run=False).rows == []
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
            assert [r.digest for r in gc(catalog, ttl_days=30, dry_run=False).rows] == [atom.digest]
        assert not list((store.root / "leases").glob("*.lease"))  # the stale one is gone
    finally:
        holder.kill()
        holder.wait()


def test_store_imports_no_heavy_library() -> None:
    code = (
        "import sys, sweepflow.store; "
        "print(sorted(m for m in ('prefect', 'mlflow', 'jax', 'optuna', 'dask') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert out.stdout.strip() == "[]"


def test_gc_clears_what_killed_writers_left(store: ObjectStore, tmp_path: Path) -> None:
    _put(store, tmp_path, "x", "dataset")
    stale, fresh = store.root / "tmp" / "put-killed", store.root / "tmp" / "put-running"
    for folder in (stale, fresh):
        _file(folder, "payload", "half")
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=31)).timestamp()
    os.utime(stale, (old, old))
    with Catalog(store.root) as catalog:
        gc(catalog, ttl_days=30, dry_run=True)
        assert stale.exists()  # a dry run touches nothing
        gc(catalog, ttl_days=30, dry_run=False)
    assert not stale.exists() and fresh.exists()


def test_put_into_a_lease_protects_an_existing_object(store: ObjectStore, tmp_path: Path) -> None:
    atom = _put(store, tmp_path, "reused", "model")
    _set_age(store, atom.digest, 40)
    with Catalog(store.root) as catalog:
        with hold(store.root) as lease:
            again = store.put(_file(tmp_path, "again", "reused"), "model", lease=lease)
            assert again.digest == atom.digest and lease.digests == {atom.digest}
            assert gc(catalog, ttl_days=30, dry_run=False).rows == []
        assert [r.digest for r in gc(catalog, ttl_days=30, dry_run=False).rows] == [atom.digest]


@pytest.mark.parametrize(
    "name", ["../up", ".hidden", "a/b", ""], ids=["dotdot", "dot", "slash", "empty"]
)
def test_names_that_would_leave_the_store_are_refused(
    store: ObjectStore, tmp_path: Path, name: str
) -> None:
    atom = _put(store, tmp_path, "x", "model")
    (tmp_path / "plots").mkdir()
    with pytest.raises(StoreError, match="no '/', no leading dot"):
        store.add_extras(atom.digest, tmp_path / "plots", name)
    with Catalog(store.root) as catalog, pytest.raises(StoreError, match="cache key"):
        catalog.record_cache(name, "train", {"model": atom.digest})
