"""The tracking contract: both write routes store the same MLflow records.

The direct SQL route (no ``import mlflow``) and MLflow's client route write one sweep
(a parent, trials with a 7,000-character param, Hydra ``+key`` params, repeated metric
points, FINISHED/FAILED/KILLED endings, artifacts) into two fresh SQLite stores; the
tables must hold the same rows. Real MLflow, no mocks.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sweepflow.tracking.uri import local_path, prepare_store
from sweepflow.tracking.writer import RunWriter, Tracker

ROUTES = ["sql", "client"]
STARTED, ENDED = 1_700_000_000.0, 1_700_000_042.5  # a trial's own times (seconds)
PARAMS = {
    "+trainer.epochs": "3",
    "lr": "0.1",
    "notes": "n" * 7000,
    "model@size": "big",
}


def _store(folder: Path) -> str:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    prepare_store(uri)
    return uri


def _workdir(folder: Path, index: int, duplicate_of: int | None = None) -> Path:
    """A trial folder with a report (metrics with steps and a repeated point, a param,
    an artifact) and a stdout log."""
    work = folder / f"trial-{index}"
    work.mkdir(parents=True)
    plot = work / "plot.txt"
    plot.write_text(f"plot {index}")
    lines = [
        {"kind": "metrics", "values": {"loss": 1.0, "acc@1": 0.5}, "step": 0, "time": 1000},
        {"kind": "metrics", "values": {"loss": 0.5}, "step": 1, "time": 2000},
        {"kind": "metrics", "values": {"loss": 0.5}, "step": 1, "time": 2000},  # repeated
        {"kind": "metrics", "values": {"loss": float("nan")}, "step": 2, "time": 3000},
        {"kind": "params", "values": {"seed": str(index)}},
        {"kind": "artifact", "path": str(plot), "artifact_path": "plots"},
    ]
    (work / "report.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (work / "stdout.log").write_text(f"trial {index} says hi\n")
    return work


def _tags(index: int) -> dict[str, str]:
    return {
        "sweepflow.trial": f"digest{index}",
        "sweepflow.cache_key": f"key{index}",
        "sweepflow.label": f"lr=0.1 #{index}",
        "prefect.flow_run_id": "flow-1",
    }


def _sweep(tracker: Tracker, folder: Path, program_logs: bool = False) -> dict[int, str]:
    """One sweep of three trials (FINISHED, FAILED, KILLED); their run ids."""
    parent = tracker.start_parent(
        {"overrides": "lr=0.1", "extra": "", "profile": "local"}, {"prefect.flow_run_id": "f"}
    )
    writer = RunWriter(tracker, parent)
    ids = {}
    for index in range(3):
        writer.prepare(index, _tags(index), params=PARAMS)
        ids[index] = writer.run_id(index)
    if program_logs:  # the program logged a point itself, as the report also has it
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        MlflowClient(tracker.uri).log_batch(ids[0], metrics=[Metric("loss", 0.5, 2000, 1)])
    for index, ok in ((0, True), (1, False)):
        writer.finish(
            index,
            _workdir(folder, index),
            params=PARAMS,
            metrics={"score": 1.5} if ok else None,
            ok=ok,
            tags={"prefect.task_run_id": f"task-{index}"},
            started=STARTED,
            ended=ENDED,
        )
    writer.kill(2)
    writer.close()
    tracker.finish_parent(parent, {"done": 1, "failed": 1, "cancelled": 1}, "FAILED")
    return ids


def _tables(uri: str) -> dict[str, list[tuple]]:
    """Every row sweepflow writes, run ids replaced by run names, times of the
    writing moment dropped (trial metric timestamps are kept: they are the report's)."""
    path = uri.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = dict(db.execute("SELECT run_uuid, name FROM runs"))
        tables: dict[str, list[tuple]] = {}
        cols = "name, source_type, source_name, entry_point_name, user_id, status, "
        cols += "source_version, lifecycle_stage, experiment_id"
        tables["runs"] = sorted(db.execute(f"SELECT {cols} FROM runs"))
        tables["experiments"] = sorted(db.execute("SELECT name, lifecycle_stage FROM experiments"))
        tables["experiment_tags"] = sorted(db.execute("SELECT * FROM experiment_tags"))
        for table in ("tags", "params"):
            rows = db.execute(f"SELECT run_uuid, key, value FROM {table}")
            tables[table] = sorted((names[r], k, names.get(v, v)) for r, k, v in rows)
        for table in ("metrics", "latest_metrics"):
            rows = db.execute(f"SELECT run_uuid, key, value, step, is_nan, timestamp FROM {table}")
            tables[table] = sorted(
                (names[r], k, v, s, n, None if k.startswith("trials_") else t)
                for r, k, v, s, n, t in rows
            )
        artifact_uris = dict(db.execute("SELECT name, artifact_uri FROM runs"))
    tables["artifacts"] = sorted(
        (name, str(p.relative_to(root)), p.read_text())
        for name, uri_ in artifact_uris.items()
        if (root := local_path(uri_)) is not None and root.is_dir()
        for p in root.rglob("*")
        if p.is_file()
    )
    return tables


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same sweep written by each route into its own fresh store."""
    found = {}
    for route in ROUTES:
        folder = tmp_path_factory.mktemp(f"route {route}")
        uri = _store(folder)
        tracker = Tracker(uri, "train", "train", route=route)
        ids = _sweep(tracker, folder)
        found[route] = {"uri": uri, "ids": ids, "tables": _tables(uri)}
    return found


@pytest.mark.parametrize(
    "table",
    [
        "runs",
        "experiments",
        "experiment_tags",
        "tags",
        "params",
        "metrics",
        "latest_metrics",
        "artifacts",
    ],
)
def test_both_routes_store_the_same_rows(both: dict[str, Any], table: str) -> None:
    assert both["sql"]["tables"][table] == both["client"]["tables"][table]
    assert both["sql"]["tables"][table]  # something was written


@pytest.mark.parametrize("route", ROUTES)
def test_params_follow_mlflow_rules_without_losing_any(both: dict[str, Any], route: str) -> None:
    from mlflow import MlflowClient

    run = MlflowClient(both[route]["uri"]).get_run(both[route]["ids"][0])
    params, tags = run.data.params, run.data.tags
    assert params["trainer.epochs"] == "3"  # Hydra's +key, kept under a valid name
    assert tags["sweepflow.param_key.trainer.epochs"] == "+trainer.epochs"
    assert params["model_size"] == "big"
    assert params["notes"] == "n" * 6000  # MLflow's limit; the full length is noted
    assert tags["sweepflow.param_len.notes"] == "7000"
    assert params["seed"] == "0"  # reported by the program
    assert tags["mlflow.runName"] == run.info.run_name == "lr=0.1 #0"
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type"} <= set(tags)
    assert tags["mlflow.parentRunId"]
    history = MlflowClient(both[route]["uri"]).get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.timestamp) for m in history] == [(0, 1000), (1, 2000), (2, 3000)]
    assert run.data.metrics["acc_1"] == 0.5


@pytest.mark.parametrize("route", ROUTES)
def test_experiment_opens_as_model_training(both: dict[str, Any], route: str) -> None:
    from mlflow import MlflowClient

    experiment = MlflowClient(both[route]["uri"]).get_experiment_by_name("train")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_trial_run_times_are_the_trials_own(both: dict[str, Any]) -> None:
    from mlflow import MlflowClient

    info = MlflowClient(both["sql"]["uri"]).get_run(both["sql"]["ids"][0]).info
    assert (info.start_time, info.end_time) == (STARTED * 1000, ENDED * 1000)


@pytest.mark.parametrize("route", ROUTES)
def test_a_running_trial_run_shows_its_params_and_name(tmp_path: Path, route: str) -> None:
    from mlflow import MlflowClient

    uri = _store(tmp_path)
    tracker = Tracker(uri, "train", "train", route=route)
    parent = tracker.start_parent({"overrides": "", "extra": "", "profile": "local"}, {})
    writer = RunWriter(tracker, parent)
    writer.prepare(0, _tags(0), params={"lr": "0.1", "+trainer.epochs": "3"})
    writer.prepare(1, _tags(1))  # the old call, without params, still works
    run = MlflowClient(uri).get_run(writer.run_id(0))
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "lr=0.1 #0"
    assert run.data.params == {"lr": "0.1", "trainer.epochs": "3"}
    writer.finish(0, tmp_path / "no-such-trial", params={"lr": "0.1"}, ok=True)
    writer.close()
    finished = MlflowClient(uri).get_run(writer.run_id(0))
    assert finished.info.status == "FINISHED"
    assert finished.data.params == {"lr": "0.1", "trainer.epochs": "3"}


@pytest.mark.parametrize("route", ROUTES)
def test_a_queued_trial_is_scheduled_then_running(tmp_path: Path, route: str) -> None:
    """Runs made ahead of their turn show SCHEDULED (named, with params), then RUNNING
    once their trial is submitted; one never started is KILLED, and a later driver
    reaps a dead one's SCHEDULED runs like its RUNNING ones."""
    from mlflow import MlflowClient

    uri = _store(tmp_path)
    tracker = Tracker(uri, "train", "train", route=route)
    parent = tracker.start_parent({"overrides": "", "extra": "", "profile": "local"}, {})
    writer = RunWriter(tracker, parent)
    for index in (0, 1):
        writer.prepare(index, _tags(index), params={"lr": f"0.{index}"}, scheduled=True)
    queued = MlflowClient(uri).get_run(writer.run_id(0))
    assert queued.info.status == "SCHEDULED"
    assert queued.data.params == {"lr": "0.0"} and queued.info.run_name == "lr=0.1 #0"
    writer.start(0)
    writer.finish(0, tmp_path / "no-such-trial", params={"lr": "0.0"}, ok=True)
    writer.kill(1)  # never submitted (--fail-fast, Ctrl-C)
    writer.close()
    client = MlflowClient(uri)
    assert client.get_run(writer.run_id(0)).info.status == "FINISHED"
    assert client.get_run(writer.run_id(1)).info.status == "KILLED"

    dead = RunWriter(tracker, parent)
    dead.prepare(2, _tags(2), params={"lr": "0.2"}, scheduled=True)
    dead.close()
    assert tracker.store.running(tracker.experiment_id, "mlflow.parentRunId", parent)


def test_a_failed_transaction_falls_back_to_the_same_data(tmp_path: Path) -> None:
    """A metric point the program logged through MLflow itself breaks the direct
    route's transaction; the fallback writes what the client route writes."""
    tables = {}
    for route in ROUTES:
        folder = tmp_path / route
        folder.mkdir()
        uri = _store(folder)
        _sweep(Tracker(uri, "train", "train", route=route), folder, program_logs=True)
        tables[route] = _tables(uri)
    assert tables["sql"] == tables["client"]
    loss = [row for row in tables["sql"]["metrics"] if row[:2] == ("lr=0.1 #0", "loss")]
    assert len(loss) == 3  # the shared point once


def test_the_direct_route_never_imports_mlflow(tmp_path: Path) -> None:
    """The flow process skips MLflow's ~4 s import when its store allows."""
    import subprocess
    import sys

    uri = _store(tmp_path)
    script = f"""
import sys
from pathlib import Path
from sweepflow.tracking.writer import RunWriter, Tracker
tracker = Tracker({uri!r}, "train", "train")
parent = tracker.start_parent({{"overrides": "", "extra": "", "profile": "local"}}, {{}})
writer = RunWriter(tracker, parent)
writer.prepare(0, {{"sweepflow.label": "a"}}, params={{"+x": "1"}})
writer.finish(0, Path({str(tmp_path / "none")!r}), params={{"+x": "1"}}, metrics={{"m": 1.0}})
writer.close()
tracker.finish_parent(parent, {{"done": 1}}, "FINISHED")
print(tracker.bulk is not None, "mlflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
