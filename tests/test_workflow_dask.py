"""``workflow:`` jobs through ``sweepflow run``: steps in Dask worker processes, stored
once with their lineage and reused; transient step errors retried, a broken step failing
its trial only; ``watch:`` globs in the step keys.

Each step appends a line to ``calls.log`` when it runs and writes its process id into
its outputs' metadata, so a test sees which steps ran and where.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepflow.store import Catalog

pytestmark = pytest.mark.usefixtures("prefect_api")

ROOT = Path(__file__).resolve().parents[1]

STEPS = '''
"""Two steps: prepare copies the data file, train "fits" a model on it."""
import json
import os
from pathlib import Path

from pydantic import BaseModel

import sweepflow

HERE = Path(__file__).parent


def called(name: str) -> None:
    with open(HERE / "calls.log", "a") as handle:
        handle.write(name + "\\n")


class PrepareConfig(BaseModel):
    copies: int = 2


@sweepflow.step(outputs={"dataset": "dataset"})
def prepare(cfg: PrepareConfig, workspace: Path) -> dict:
    called("prepare")
    rows = (HERE / "data" / "input.csv").read_text()
    (workspace / "data.csv").write_text(rows * cfg.copies)
    return {"dataset": workspace / "data.csv", "_metadata": {"pid": os.getpid()}}


class TrainConfig(BaseModel):
    lr: float = 0.1
    flaky: bool = False  # an OSError the first time for this lr
    fail_at: float = -1.0  # a ValueError for this lr


@sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict:
    called(f"train {cfg.lr}")
    marker = HERE / f"flaky-{cfg.lr}"
    if cfg.flaky and not marker.exists():
        marker.touch()
        raise OSError("the disk hiccuped")
    if cfg.lr == cfg.fail_at:
        raise ValueError(f"lr {cfg.lr} diverged")
    rows = len(dataset.path.read_text().splitlines())
    (workspace / "model.json").write_text(json.dumps({"lr": cfg.lr, "rows": rows}))
    return {
        "model": workspace / "model.json",
        "_metadata": {"pid": os.getpid()},
        "_metrics": {"loss": rows * cfg.lr},
    }
'''

JOBS = """
workflows:
  pipe: pipe:pipe
jobs:
  sweep:
    workflow: pipe
    config: config.yaml
    profile: dask-local
    sets:
      - each: train.lr=0.1,0.01
  flaky:
    workflow: pipe
    config: config.yaml
    profile: local
    retries: 1
    sets:
      - each: train.lr=0.2,0.3 train.flaky=true
  broken:
    workflow: pipe
    config: config.yaml
    profile: local
    sets:
      - each: train.lr=0.4,0.5,0.6 train.fail_at=0.5
  watched:
    workflow: pipe
    config: config.yaml
    profile: local
    watch: [data/*.csv]
    sets:
      - each: train.lr=0.7
"""

FILES = {
    "wf_steps.py": STEPS,
    "pipe.py": "import sweepflow\nfrom wf_steps import prepare, train\n\n"
    'pipe = sweepflow.Workflow("pipe", [prepare, train])\n',
    "config.yaml": "prepare:\n  copies: 2\ntrain:\n  lr: 0.1\n",
    "sweepflow.yaml": JOBS,
    "data/input.csv": "x,y\n1,2\n",
}


@pytest.fixture
def wf_project(project: Path) -> Path:
    """The project with the two-step workflow and its jobs."""
    for name, text in FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text).lstrip())
    return project


class Ran:
    """A finished ``sweepflow`` command: its pid, exit code and output."""

    def __init__(self, pid: int, returncode: int, output: str) -> None:
        self.pid, self.returncode, self.output = pid, returncode, output


def _sweepflow(project: Path, *args: str) -> Ran:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env |= {"PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "300", "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sweepflow", *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = process.communicate(timeout=180)
    return Ran(process.pid, process.returncode, output)


def _calls(project: Path) -> list[str]:
    log = project / "calls.log"
    found = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return sorted(found)


def _catalog(project: Path) -> Catalog:
    return Catalog(project / ".sweepflow" / "store")


def test_dask_local_runs_steps_in_worker_processes_and_reuses_them(wf_project: Path) -> None:
    first = _sweepflow(wf_project, "run", "sweep", "--set", "workers=2")

    assert first.returncode == 0, first.output
    assert "2 done, 0 cached, 0 failed" in first.output, first.output
    assert _calls(wf_project) == ["prepare", "train 0.01", "train 0.1"]  # prepare once
    with _catalog(wf_project) as catalog:
        (dataset,) = catalog.atoms(step="prepare")
        models = catalog.atoms(step="train")
        assert len(models) == 2
        pids = {catalog.store.get(a["digest"]).meta.metadata["pid"] for a in [dataset, *models]}
        assert first.pid not in pids and os.getpid() not in pids  # ran in Dask's workers
        for model in models:
            edges = catalog.lineage(model["digest"], direction="up")["edges"]
            assert edges == [
                {"parent": dataset["digest"], "child": model["digest"], "input": "dataset"}
            ]
            atom = catalog.store.get(model["digest"])
            assert atom.path.is_file()
            assert atom.meta.provenance.prefect_task_run_id  # made by a step task
        entries = catalog.dump()["cache_entries"]
        assert sorted(step for _, step, _, _ in entries) == ["prepare", "train", "train"]

    second = _sweepflow(wf_project, "run", "sweep", "--set", "workers=2")

    assert second.returncode == 0, second.output
    assert "0 done, 2 cached, 0 failed" in second.output, second.output
    assert _calls(wf_project) == []


def test_a_transient_step_error_is_retried_with_the_jobs_retries(wf_project: Path) -> None:
    done = _sweepflow(wf_project, "run", "flaky")

    assert done.returncode == 0, done.output
    assert "2 done, 0 cached, 0 failed" in done.output, done.output
    # Each train raised OSError once, then ran again in the same trial.
    assert _calls(wf_project) == ["prepare", "train 0.2", "train 0.2", "train 0.3", "train 0.3"]
    with _catalog(wf_project) as catalog:
        assert len(catalog.atoms(step="train")) == 2
        pids = {catalog.store.get(a["digest"]).meta.metadata["pid"] for a in catalog.atoms()}
        assert pids == {done.pid}  # the local profile runs steps in the flow's process


def test_a_broken_step_fails_its_trial_only(wf_project: Path) -> None:
    done = _sweepflow(wf_project, "run", "broken")

    assert done.returncode != 0, done.output
    assert "2 done, 0 cached, 1 failed" in done.output, done.output
    assert "Traceback" not in done.output, done.output
    lines = done.output.splitlines()
    (told,) = [
        line
        for line in lines
        if line.startswith("trial 1 (train.lr=0.5 train.fail_at=0.5) failed:")
    ]
    assert "step 'train' failed: ValueError: lr 0.5 diverged" in told, done.output
    assert lines[lines.index(told) + 1].strip().startswith("logs:"), done.output  # one line
    progress = [line for line in lines if line.startswith("[") and "failed" in line]
    assert len(progress) == 1 and "step 'train' failed" in progress[0], done.output
    assert _calls(wf_project) == ["prepare", "train 0.4", "train 0.5", "train 0.6"]
    with _catalog(wf_project) as catalog:
        assert len(catalog.atoms(step="train")) == 2  # the trials that finished are stored


def test_a_watched_data_file_is_part_of_the_step_keys(wf_project: Path) -> None:
    first = _sweepflow(wf_project, "run", "watched")
    assert first.returncode == 0, first.output
    assert _calls(wf_project) == ["prepare", "train 0.7"]
    (wf_project / "data" / "input.csv").write_text("x,y\n1,2\n3,4\n")

    second = _sweepflow(wf_project, "run", "watched")

    assert second.returncode == 0, second.output
    assert "1 done, 0 cached, 0 failed" in second.output, second.output
    assert _calls(wf_project) == ["prepare", "train 0.7"]  # the edit changed both keys
    with _catalog(wf_project) as catalog:
        stored = [catalog.store.get(a["digest"]).path for a in catalog.atoms(step="prepare")]
        rows = sorted(len(path.read_text().splitlines()) for path in stored)
        assert rows == [4, 6]  # the old data and the new, each stored
