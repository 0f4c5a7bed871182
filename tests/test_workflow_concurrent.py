"""Eight workflow runs at once, in eight processes, on one project and state folder:
each object is stored once, the catalog stays whole (it equals the one rebuilt from
the files), ``sweepflow artifacts verify`` is clean, and a later run is all hits.

Four runs share one config and four differ in ``train.lr``: all eight need the same
``prepare`` output, four the same ``train`` output. No Prefect: each process calls
:func:`sweepflow.workflow.run.run_workflow`, as a Dask worker or a second terminal would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepflow.store import Catalog, ObjectStore

ROOT = Path(__file__).resolve().parents[1]

FILES = {
    "steps.py": '''
"""prepare -> train -> evaluate; each sleeps a little so that the runs overlap."""
import json
import time
from pathlib import Path

from pydantic import BaseModel

import sweepflow


class PrepareConfig(BaseModel):
    rows: int = 200


@sweepflow.step(outputs={"dataset": "dataset"})
def prepare(cfg: PrepareConfig, workspace: Path) -> dict:
    time.sleep(0.3)
    (workspace / "data").mkdir()
    for part in range(4):  # a folder: many files to copy while others race
        text = "".join(f"{part},{n},{2 * n}\\n" for n in range(cfg.rows))
        (workspace / "data" / f"part-{part}.csv").write_text(text)
    return {"dataset": workspace / "data"}


class TrainConfig(BaseModel):
    lr: float = 0.1


@sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict:
    time.sleep(0.3)
    files = sorted(p.name for p in dataset.path.iterdir())
    (workspace / "model.json").write_text(json.dumps({"lr": cfg.lr, "files": files}))
    return {"model": workspace / "model.json", "_metrics": {"lr": cfg.lr}}


class EvaluateConfig(BaseModel):
    split: str = "test"


@sweepflow.step(
    inputs={"dataset": "dataset", "model": "model"}, outputs={"evaluation": "evaluation"}
)
def evaluate(
    cfg: EvaluateConfig, dataset: sweepflow.Artifact, model: sweepflow.Artifact, workspace: Path
) -> dict:
    lr = json.loads(model.path.read_text())["lr"]
    (workspace / "evaluation.json").write_text(json.dumps({"loss": lr * 2, "split": cfg.split}))
    return {"evaluation": workspace / "evaluation.json", "_metrics": {"loss": lr * 2}}
''',
    "pipe.py": """
import sweepflow
from steps import evaluate, prepare, train

pipe = sweepflow.Workflow("pipe", [prepare, train, evaluate])
""",
    "config.yaml": "prepare:\n  rows: 200\ntrain:\n  lr: 0.1\nevaluate:\n  split: test\n",
    "sweepflow.yaml": "workflows:\n  pipe: pipe:pipe\n",
}

# One workflow run; waits for the go file so that all eight start together.
_RUN = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sweepflow.workflow import load_config
    from sweepflow.workflow.run import import_workflow, run_workflow
    project, go, overrides = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    workflow = import_workflow("pipe:pipe", project)
    configs = load_config(workflow, project / "config.yaml", overrides)
    while not go.exists():
        time.sleep(0.005)
    result = run_workflow(workflow, configs, project, project / ".sweepflow")
    print(result.model_dump_json())
    """
)

LRS = ["0.1", "0.1", "0.1", "0.1", "0.2", "0.3", "0.4", "0.5"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env |= {"PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "300"}
    return env


def _start(project: Path, go: Path, lr: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _RUN, str(project), str(go), f"train.lr={lr}"],
        cwd=project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


def _status(result: dict) -> dict[str, str]:
    return {s["step"]: s["status"] for s in result["steps"]}


@pytest.fixture
def pipe_project(project: Path) -> Path:
    """The project with the three-step workflow."""
    for name, text in FILES.items():
        (project / name).write_text(textwrap.dedent(text).lstrip())
    return project


def _run_eight(project: Path, go: Path) -> list[dict]:
    """The eight runs of :data:`LRS`, started together; their results."""
    processes = [_start(project, go, lr) for lr in LRS]
    go.touch()
    return [_finish(p) for p in processes]


def test_eight_concurrent_runs_store_each_object_once(pipe_project: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    results = _run_eight(pipe_project, go)

    root = pipe_project / ".sweepflow" / "store"
    made = {d for r in results for s in r["steps"] for d in s["outputs"].values()}
    assert len(made) == 1 + 5 + 5  # one dataset; a model and an evaluation per lr
    for lr, result in zip(LRS, results, strict=True):
        assert result["steps"][1]["metrics"] == {"lr": float(lr)}
    datasets = {r["steps"][0]["outputs"]["dataset"] for r in results}
    models = {r["steps"][1]["outputs"]["model"] for r in results}
    assert len(datasets) == 1 and len(models) == 5, (datasets, models)
    store = ObjectStore(root)
    digests = list(store.digests())
    assert sorted(digests) == sorted(made)  # one object per digest, nothing else
    assert not [p for p in (root / "tmp").iterdir()]  # no workspace or staging left

    with Catalog(root) as catalog:
        tables = catalog.dump()
        atoms = {row[0] for row in tables["atoms"]}
        assert atoms == made
        for digest in atoms:
            assert store.exists(digest)
        for child, parent, _ in tables["made_from"]:
            assert child in atoms and parent in atoms, (child, parent)
        assert len(tables["made_from"]) == 5 + 2 * 5  # train: dataset; evaluate: both
        for key, _, outputs, _ in tables["cache_entries"]:
            assert set(json.loads(outputs).values()) <= atoms, key
        assert len(tables["cache_entries"]) == 1 + 5 + 5  # one per distinct step key
        runs = [r for r in catalog.roots() if r["kind"] == "run"]
        assert len(runs) == 8
        catalog.reindex()
        rebuilt = catalog.dump()
        for table, rows in tables.items():
            assert rebuilt[table] == rows, (table, set(rows) ^ set(rebuilt[table]))

    verify = subprocess.run(
        [sys.executable, "-m", "sweepflow", "artifacts", "verify"],
        cwd=pipe_project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "11 objects checked, 0 corrupt" in verify.stdout, verify.stdout

    ninth = _finish(_start(pipe_project, go, "0.3"))
    assert _status(ninth) == {"prepare": "hit", "train": "hit", "evaluate": "hit"}
    assert sorted(ObjectStore(root).digests()) == sorted(made)


def test_concurrent_cache_entries_match_their_files(pipe_project: Path, tmp_path: Path) -> None:
    _run_eight(pipe_project, tmp_path / "go")
    with Catalog(pipe_project / ".sweepflow" / "store") as catalog:
        indexed = catalog.dump()["cache_entries"]
        catalog.reindex()
        assert catalog.dump()["cache_entries"] == indexed
