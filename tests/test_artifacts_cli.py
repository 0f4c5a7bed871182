"""``sweepflow artifacts ...`` in-process on a small store built with the store API:
ls, show (which code file changed), lineage in every format, export, verify, gc, pin
and reindex."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from sweepflow.cli.main import main
from sweepflow.store import Atom, Catalog, ObjectStore, Provenance
from sweepflow.store.layout import object_dir
from sweepflow.workflow.code import code_fingerprint

STEPS = """\
from helpers import scale


def prepare_dataset(cfg):
    return 1


def train(cfg, dataset):
    return scale(dataset)
"""
HELPERS = "def scale(x):\n    return 2 * x\n"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass
class Built:
    """The store of the test project and its atoms by role."""

    root: Path
    raw: Atom
    model: Atom
    metrics: Atom
    orphan: Atom
    notes: Atom
    fresh: Atom


def _set_age(root: Path, digest: str, days: float) -> None:
    path = object_dir(root, digest) / "meta.json"
    meta = json.loads(path.read_text())
    meta["created"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days)).isoformat()
    path.write_text(json.dumps(meta))


@pytest.fixture
def built(project: Path, tmp_path: Path) -> Built:
    """raw -> model -> metrics (and raw -> metrics), held by a run of workflow ``pipe``;
    ``notes`` old and pinned; ``orphan`` old and unreachable; ``fresh`` unreachable but
    new. ``model`` records the code fingerprint of ``steps.py`` (which imports
    ``helpers.py``)."""
    (project / "steps.py").write_text(STEPS)
    (project / "helpers.py").write_text(HELPERS)
    code = code_fingerprint(project / "steps.py", project).files
    root = project / ".sweepflow" / "store"
    store = ObjectStore(root)
    source = tmp_path / "src"
    source.mkdir()

    def put(name: str, data: bytes, type: str, **prov: object) -> Atom:
        (source / name).write_bytes(data)
        return store.put(source / name, type, Provenance(**prov))

    raw = put("raw", b"raw rows", "dataset", step="prepare_dataset", workflow="pipe")
    folder = source / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01weights")
    (folder / "sub" / "config.json").write_text("{}")
    model = store.put(
        folder,
        "model",
        Provenance(step="train", workflow="pipe", inputs={"dataset": raw.digest}, code=code),
    )
    metrics = put(
        "metrics",
        b'{"loss": 0.5}',
        "metrics",
        step="evaluate",
        workflow="pipe",
        inputs={"model": model.digest, "dataset": raw.digest},
    )
    orphan = put("orphan", b"old unreachable", "model", step="train", workflow="other")
    notes = put("notes", b"pinned notes", "notes")
    fresh = put("fresh", b"new unreachable", "model", step="train")
    for atom in (raw, model, metrics, orphan, notes):
        _set_age(root, atom.digest, 30)
    with Catalog(root) as catalog:
        atoms = [store.get(a.digest) for a in (raw, model, metrics, orphan, notes, fresh)]
        catalog.record(atoms)
        catalog.add_run("r1", "pipe", [metrics.digest])
        catalog.pin(notes.digest)
    return Built(root, *atoms)


# -- ls ------------------------------------------------------------------------------


def test_ls_json_has_the_fields_and_filters_narrow(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "artifacts", "ls", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 6
    assert {"id", "type", "digest", "step", "size", "created", "workflow"} <= set(rows[0])
    by_digest = {r["digest"]: r for r in rows}
    model = by_digest[built.model.digest]
    assert model["id"] == built.model.short_id
    assert (model["type"], model["step"], model["workflow"]) == ("model", "train", "pipe")
    assert model["size"] == built.model.meta.size

    def ids(*args: str) -> set[str]:
        code, out, err = cli(capsys, "artifacts", "ls", "--json", *args)
        assert code == 0, err
        return {r["digest"] for r in json.loads(out)}

    assert ids("--type", "model") == {built.model.digest, built.orphan.digest, built.fresh.digest}
    assert ids("--step", "evaluate") == {built.metrics.digest}
    assert ids("--workflow", "pipe") == {built.raw.digest, built.model.digest, built.metrics.digest}
    assert ids("--since", "1d") == {built.fresh.digest}
    assert ids("--type", "model", "--since", "2000-01-01") == ids("--type", "model")


def test_ls_table_shows_each_artifact(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "artifacts", "ls", "--type", "model")
    assert code == 0
    header = out.splitlines()[1]
    for column in ("id", "type", "step", "size", "created", "workflow"):
        assert column in header
    for atom in (built.model, built.orphan, built.fresh):
        assert atom.short_id in out
    assert built.raw.short_id not in out
    model_line = next(line for line in out.splitlines() if built.model.short_id in line)
    assert "pipe" in model_line and "train" in model_line and " B" in model_line


def test_ls_finds_the_store_of_the_job_file_named_by_file(
    built: Built,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (project / "sweepflow.yaml").write_text("jobs: {}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert json.loads(cli(capsys, "artifacts", "ls", "--json")[1]) == []
    code, out, _ = cli(capsys, "artifacts", "ls", "--json", "-f", str(project / "sweepflow.yaml"))
    assert code == 0 and len(json.loads(out)) == 6


def test_ls_of_an_empty_project_says_how_to_make_artifacts(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "artifacts", "ls")
    assert code == 0
    assert out.count("\n") == 1 and "no artifacts yet" in out and "workflow run" in out
    assert not (project / ".sweepflow" / "store").exists()  # looking created nothing
    assert json.loads(cli(capsys, "artifacts", "ls", "--json")[1]) == []


def test_ls_bad_since_is_one_error_line(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "artifacts", "ls", "--since", "yesterday")
    assert code == 2 and not out
    assert err.count("\n") == 1 and "--since 'yesterday'" in err and "7d" in err


# -- show ----------------------------------------------------------------------------


def test_show_prints_meta_and_names_the_changed_code_file(
    built: Built, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "artifacts", "show", built.model.short_id)
    assert code == 0
    assert built.model.digest in out and '"step": "train"' in out
    assert "code: unchanged" in out
    (project / "helpers.py").write_text("def scale(x):\n    return 3 * x\n")
    code, out, _ = cli(capsys, "artifacts", "show", built.model.digest[:10])
    assert code == 0
    assert "would miss now" in out and "  helpers.py changed" in out
    assert "steps.py changed" not in out


def test_show_of_an_object_without_fingerprint_says_it_is_not_checked(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "artifacts", "show", built.notes.short_id)
    assert code == 0 and "code: not checked" in out and "no code fingerprint" in out


def test_show_unknown_id_is_one_error_line_listing_ids(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "artifacts", "show", "model:ffffffffffff")
    assert code == 2 and not out
    assert err.count("\n") == 1 and "no object" in err and "some ids:" in err
    code, _, err = cli(capsys, "artifacts", "show", "ab")
    assert code == 2 and "at least 4 hex digits" in err


# -- lineage -------------------------------------------------------------------------


def test_lineage_json_up_and_down(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "artifacts", "lineage", built.metrics.short_id, "--format", "json")
    assert code == 0
    graph = json.loads(out)
    assert {n["digest"] for n in graph["nodes"]} == {
        built.raw.digest,
        built.model.digest,
        built.metrics.digest,
    }
    assert {"id", "type", "digest", "step", "size", "created"} <= set(graph["nodes"][0])
    edges = {(e["parent"], e["child"], e["input"]) for e in graph["edges"]}
    assert edges == {
        (built.raw.digest, built.model.digest, "dataset"),
        (built.model.digest, built.metrics.digest, "model"),
        (built.raw.digest, built.metrics.digest, "dataset"),
    }
    code, out, _ = cli(
        capsys, "artifacts", "lineage", built.model.short_id, "--down", "--format", "json"
    )
    down = json.loads(out)
    assert {n["digest"] for n in down["nodes"]} == {built.model.digest, built.metrics.digest}
    assert [e["input"] for e in down["edges"]] == ["model"]


def test_lineage_tree_names_inputs(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "artifacts", "lineage", built.metrics.short_id)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(built.metrics.short_id)
    assert lines[1:] == [
        f"├── dataset: {built.raw.short_id} (prepare_dataset, 8 B)",
        f"└── model: {built.model.short_id} (train, 11 B)",
        f"    └── dataset: {built.raw.short_id} (prepare_dataset, 8 B)",
    ]
    code, out, _ = cli(capsys, "artifacts", "lineage", built.raw.short_id, "--down")
    assert f"model -> {built.metrics.short_id}" in out
    code, _, err = cli(capsys, "artifacts", "lineage", built.raw.short_id, "--up", "--down")
    assert code == 2 and "not both" in err


def test_lineage_dot_and_mermaid_hold_every_node_and_edge(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = json.loads(
        cli(capsys, "artifacts", "lineage", built.metrics.short_id, "--format", "json")[1]
    )
    _, dot, _ = cli(capsys, "artifacts", "lineage", built.metrics.short_id, "--format", "dot")
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    for node in graph["nodes"]:
        assert f'"{node["digest"]}" [label="{node["id"]}' in dot
    for edge in graph["edges"]:
        assert f'"{edge["parent"]}" -> "{edge["child"]}" [label="{edge["input"]}"];' in dot
    assert dot.count(" -> ") == len(graph["edges"]) == 3
    _, mermaid, _ = cli(
        capsys, "artifacts", "lineage", built.metrics.short_id, "--format", "mermaid"
    )
    assert mermaid.splitlines()[0] == "graph TD"
    for node in graph["nodes"]:
        assert f'a{node["digest"]}["{node["id"]}' in mermaid
    for edge in graph["edges"]:
        assert f"a{edge['parent']} -->|{edge['input']}| a{edge['child']}" in mermaid
    assert mermaid.count("-->") == 3


# -- export, verify ------------------------------------------------------------------


def test_export_makes_writable_identical_copies(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out"
    code, out, _ = cli(capsys, "artifacts", "export", built.model.short_id, str(target))
    assert code == 0 and "exported" in out
    for rel in ("weights.bin", "sub/config.json"):
        copy = target / "payload" / rel
        assert copy.read_bytes() == (built.model.path / rel).read_bytes()
        assert os.access(copy, os.W_OK)
        copy.write_bytes(b"edited")  # the copy is the user's; the store is untouched
    assert (built.model.path / "weights.bin").read_bytes() == b"\x00\x01weights"
    meta = json.loads((target / "meta.json").read_text())
    assert meta["digest"] == built.model.digest
    code, _, _ = cli(capsys, "artifacts", "export", built.raw.short_id, str(tmp_path / "f"))
    assert (tmp_path / "f" / "payload").read_bytes() == b"raw rows"
    assert os.access(tmp_path / "f" / "payload", os.W_OK)
    code, _, err = cli(capsys, "artifacts", "export", built.raw.short_id, str(tmp_path / "f"))
    assert code == 2 and "already holds" in err


def test_verify_finds_a_corrupted_payload(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "artifacts", "verify")
    assert code == 0 and "6 objects checked, 0 corrupt" in out + err
    payload = built.raw.path
    os.chmod(payload, 0o644)
    data = bytearray(payload.read_bytes())
    data[0] ^= 0xFF
    payload.write_bytes(bytes(data))
    code, out, err = cli(capsys, "artifacts", "verify")
    assert code == 1
    assert out.splitlines() == [
        f"corrupt: {built.raw.short_id} ({built.raw.digest}): payload re-hashes to "
        + out.split("re-hashes to ")[1].strip()
    ]
    assert "1 corrupt" in err and "--quarantine" in err
    code, out, _ = cli(capsys, "artifacts", "verify", "--quarantine")
    assert code == 1 and "moved to" in out
    assert cli(capsys, "artifacts", "verify")[0] == 0


# -- gc, pin -------------------------------------------------------------------------


def test_gc_refuses_without_ttl(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "artifacts", "gc", "--dry-run")
    assert code == 2 and not out
    assert err.count("\n") == 1 and "--ttl-days" in err


def _listed(out: str, built: Built) -> set[str]:
    every = (built.raw, built.model, built.metrics, built.orphan, built.notes, built.fresh)
    return {a.short_id for a in every if a.short_id in out}


def test_gc_dry_run_lists_then_gc_deletes_exactly_the_old_unreachable(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "artifacts", "gc", "--ttl-days", "7", "--dry-run")
    assert code == 0
    assert _listed(out, built) == {built.orphan.short_id}
    line = next(ln for ln in out.splitlines() if built.orphan.short_id in ln)
    assert "model" in line and "train" in line and "15 B" in line and "30.0d" in line
    assert out.splitlines()[-1] == "would free 15 B in 1 object"
    assert ObjectStore(built.root).exists(built.orphan.digest)  # a dry run deletes nothing
    code, out, _ = cli(capsys, "artifacts", "gc", "--ttl-days", "7")
    assert code == 0 and out.splitlines()[-1] == "freed 15 B in 1 object"
    store = ObjectStore(built.root)
    assert not store.exists(built.orphan.digest)
    kept = (built.raw, built.model, built.metrics, built.notes, built.fresh)
    assert all(store.exists(a.digest) for a in kept)
    code, out, _ = cli(capsys, "artifacts", "ls", "--json")
    assert built.orphan.digest not in out


def test_pin_protects_and_unpin_releases(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "artifacts", "pin", built.orphan.short_id)
    assert code == 0 and out == f"pinned {built.orphan.short_id}\n"
    code, out, _ = cli(capsys, "artifacts", "gc", "--ttl-days", "7", "--dry-run")
    assert _listed(out, built) == set() and "would free 0 B in 0 objects" in out
    code, out, _ = cli(capsys, "artifacts", "unpin", built.notes.short_id)
    assert out == f"unpinned {built.notes.short_id}\n"
    code, out, _ = cli(capsys, "artifacts", "unpin", built.notes.short_id)
    assert "was not pinned" in out
    code, out, _ = cli(capsys, "artifacts", "gc", "--ttl-days", "7", "--dry-run")
    assert _listed(out, built) == {built.notes.short_id}


# -- reindex -------------------------------------------------------------------------


def test_reindex_prints_counts_and_rebuilds_the_same_catalog(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    with Catalog(built.root) as catalog:
        before = catalog.dump()
    (built.root / "catalog.db").unlink()
    code, out, _ = cli(capsys, "artifacts", "reindex")
    assert code == 0
    assert "6 atoms, 3 made_from edges, 0 cache entries, 2 roots, 2 root atoms" in out
    with Catalog(built.root) as catalog:
        assert catalog.dump() == before
