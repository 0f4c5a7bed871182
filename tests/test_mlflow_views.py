"""What MLflow shows of a sweep: readable run names, the parent's summary, the link.

Real sweeps through ``python -m sweepflow run`` (a tiny program, one trial failing), read
back with ``mlflow.MlflowClient``; then the project's real MLflow UI (``sweepflow up
--no-worker`` on free ports) and the link ``sweepflow run`` prints to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sweepflow
from sweepflow.cli.links import run_page, runs_view
from sweepflow.services.files import free_ports

pytestmark = pytest.mark.usefixtures("prefect_api")

PROGRAM = """
import sys
import sweepflow

p = dict(a.split("=", 1) for a in sys.argv[1:])
if p["lr"] == "0.5" and p["seed"] == "2":
    sys.exit("diverged")
loss = float(p["lr"]) * 10 + int(p["seed"]) / 100
sweepflow.log_metrics({"loss": loss, "acc": 1 - loss / 10})
"""

JOBS = f"""
jobs:
  fit:
    run: {sys.executable} train.py
    sets:
      - each: lr=0.1,0.01,0.5 seed=1,2 n=5
"""

_ENV = ("SWEEPFLOW_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
_ENV += ("MLFLOW_EXPERIMENT_NAME", "SWEEPFLOW_PREFECT_PORT", "SWEEPFLOW_MLFLOW_PORT")


def sweepflow_cmd(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sweepflow ARGS`` in ``folder`` (reporting to the tests' Prefect API)."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    source_root = str(Path(sweepflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "300"
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def get(url: str) -> int:
    """The HTTP status of a GET of ``url`` (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return int(response.status)


@dataclass
class Swept:
    folder: Path
    uri: str
    client: Any
    experiment_id: str
    runs: list[subprocess.CompletedProcess[str]]

    def parents(self) -> list[Any]:
        """Parent runs, oldest first."""
        found = self.client.search_runs(
            [self.experiment_id], "tags.`sweepflow.role` = 'parent'", order_by=["start_time ASC"]
        )
        return list(found)

    def children(self, parent: Any) -> dict[str, Any]:
        """The trial runs of ``parent`` by name."""
        where = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        return {r.info.run_name: r for r in self.client.search_runs([self.experiment_id], where)}


@pytest.fixture(scope="module")
def swept(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """Three ``sweepflow run``s of ``fit``: 6 trials (one fails); again (5 cached, the
    failing one again); ``seed=3 lr=0.1,0.01`` (2 new trials, all done)."""
    folder = tmp_path_factory.mktemp("views") / "my project"
    folder.mkdir()
    (folder / "train.py").write_text(textwrap.dedent(PROGRAM))
    (folder / "sweepflow.yaml").write_text(textwrap.dedent(JOBS))
    runs = [
        sweepflow_cmd(folder, "run", "fit"),
        sweepflow_cmd(folder, "run", "fit"),
        sweepflow_cmd(folder, "run", "fit", "seed=3", "lr=0.1,0.01"),
    ]
    assert [r.returncode for r in runs] == [1, 1, 0], [r.stderr[-3000:] for r in runs]
    from mlflow import MlflowClient

    uri = f"sqlite:///{(folder / '.sweepflow' / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fit")
    return Swept(folder, uri, client, experiment.experiment_id, runs)


def test_experiment_opens_as_model_training(swept: Swept) -> None:
    experiment = swept.client.get_experiment(swept.experiment_id)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"


def test_child_runs_are_named_by_their_varying_params(swept: Swept) -> None:
    first, _, third = swept.parents()
    names = set(swept.children(first))
    assert names == {f"lr={lr} seed={seed}" for lr in ("0.1", "0.01", "0.5") for seed in (1, 2)}
    assert set(swept.children(third)) == {"lr=0.1", "lr=0.01"}  # seed=3 in every trial


def test_parent_runs_are_named_by_job_and_size(swept: Swept) -> None:
    names = [parent.info.run_name for parent in swept.parents()]
    assert names == ["fit: 6 trials", "fit: 6 trials", "fit seed=3 lr=0.1,0.01: 2 trials"]


def test_parent_carries_the_summary(swept: Swept) -> None:
    first = swept.parents()[0]
    metrics, tags = first.data.metrics, first.data.tags
    counts = {k: metrics[f"trials_{k}"] for k in ("done", "cached", "failed", "total")}
    assert counts == {"done": 5, "cached": 0, "failed": 1, "total": 6}
    children = swept.children(first)
    best = children["lr=0.01 seed=1"]  # loss 0.11, the lowest
    assert tags["sweepflow.best_run_id"] == best.info.run_id
    assert tags["sweepflow.best_run_name"] == "lr=0.01 seed=1"
    assert (tags["sweepflow.best_metric"], tags["sweepflow.best_direction"]) == ("loss", "minimize")
    assert metrics["best_loss"] == pytest.approx(0.11) == best.data.metrics["loss"]
    # The parent's row in the runs view fills the trials' columns with the best trial's.
    assert metrics["loss"] == pytest.approx(0.11) and metrics["acc"] == pytest.approx(0.989)
    assert first.data.params["lr"] == "0.01" and first.data.params["seed"] == "1"
    note = tags["mlflow.note.content"]
    assert "6 trials: 5 done, 1 failed" in note
    link = f"#/experiments/{swept.experiment_id}/runs/{best.info.run_id}"
    assert f"[lr=0.01 seed=1]({link}?workflowType=machine_learning)" in note


def test_cached_rerun_points_at_the_run_that_made_the_best_result(swept: Swept) -> None:
    first, second, _ = swept.parents()
    metrics, tags = second.data.metrics, second.data.tags
    counts = {k: metrics[f"trials_{k}"] for k in ("done", "cached", "failed")}
    assert counts == {"done": 0, "cached": 5, "failed": 1}
    assert set(swept.children(second)) == {"lr=0.5 seed=2"}  # the one trial that ran again
    assert tags["sweepflow.best_run_id"] == swept.children(first)["lr=0.01 seed=1"].info.run_id
    assert "5 cached, 1 failed" in tags["mlflow.note.content"]


def test_without_a_ui_the_output_says_how_to_start_one(swept: Swept) -> None:
    err = swept.runs[2].stderr
    assert f"MLflow: mlflow ui --backend-store-uri '{swept.uri}' (or: sweepflow up)" in err, err
    assert "MLflow: experiment" not in err


@pytest.fixture(scope="module")
def ui(swept: Swept) -> Iterator[str]:
    """The project's MLflow UI (and Prefect server), started by ``sweepflow up``."""
    from sweepflow.services import servers

    prefect_port, mlflow_port = free_ports(2)
    ports = ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
    try:
        done = sweepflow_cmd(swept.folder, "up", "--no-worker", *ports)
        assert done.returncode == 0, done.stderr
        yield f"http://127.0.0.1:{mlflow_port}"
    finally:
        servers.down(swept.folder)


def test_with_the_ui_running_the_output_links_to_the_runs_view(swept: Swept, ui: str) -> None:
    done = sweepflow_cmd(swept.folder, "run", "fit", "seed=4", "lr=0.1,0.01")
    assert done.returncode == 0, done.stderr
    parent = swept.parents()[-1]
    view = runs_view(ui, swept.experiment_id)
    # MLflow 3's runs view, in model-training mode (not GenAI).
    assert view == f"{ui}/#/experiments/{swept.experiment_id}/runs?workflowType=machine_learning"
    lines = done.stderr.splitlines()
    assert f"MLflow: {view}" in lines, done.stderr
    page = run_page(ui, swept.experiment_id, parent.info.run_id)
    assert f"MLflow run: {page}" in lines, done.stderr
    assert "mlflow ui --backend-store-uri" not in done.stderr
    assert get(view) == 200
    # The UI serves that store: it knows the parent run the link names.
    api = f"{ui}/ajax-api/2.0/mlflow/runs/get?run_id={parent.info.run_id}"
    assert get(api) == 200

    listed = sweepflow_cmd(swept.folder, "ls", "fit", "--format", "json")
    assert page in listed.stdout, listed.stdout
    table = sweepflow_cmd(swept.folder, "results", "fit")
    assert f"MLflow: {view}" in table.stderr.splitlines(), table.stderr
