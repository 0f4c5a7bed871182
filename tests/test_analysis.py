"""The analysis API against a real MLflow store laid out as the run-job flow writes it."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweepflow.analysis import (
    RunCollection,
    RunLookupError,
    RunQueryError,
    runs,
    sweeps,
    unflatten,
)
from sweepflow.errors import SweepflowError

T0 = 1_700_000_000_000  # start times are explicit, one minute apart: a known order

# (job, params, metrics as {name: [values by step]}, status, has config.yaml)
TRIALS: list[tuple[str, dict[str, str], dict[str, list[float]], str, bool]] = [
    (
        "train",
        {"model": "cnn", "lr": "0.1", "model.depth": "2"},
        {"loss": [0.9, 0.5]},
        "FINISHED",
        True,
    ),
    (
        "train",
        {"model": "cnn", "lr": "1e-3", "model.depth": "4"},
        {"loss": [0.8, 0.3]},
        "FINISHED",
        True,
    ),
    (
        "train",
        {"model": "mlp", "lr": "0.1", "model.depth": "2"},
        {"loss": [0.7, 0.6]},
        "FINISHED",
        True,
    ),
    (
        "train",
        {"model": "mlp", "lr": "1e-3", "model.depth": "4"},
        {"loss": [0.4, 0.2]},
        "FINISHED",
        True,
    ),
    ("train", {"model": "cnn", "lr": "0.1", "model.depth": "8"}, {}, "FAILED", False),
    ("eval", {"split": "val", "ckpt": "a"}, {"acc": [0.81]}, "FINISHED", False),
    ("eval", {"split": "test", "ckpt": "a"}, {"acc": [0.79]}, "FINISHED", False),
]


def _create_job(client: Any, job: str, start: int, tmp: Path) -> None:
    from sweepflow.tracking.uri import ensure_experiment

    experiment = ensure_experiment(client, job, client.tracking_uri)
    parent = client.create_run(
        experiment, start_time=start, tags={"sweepflow.role": "parent", "sweepflow.job": job}
    ).info.run_id
    for index, (trial_job, params, metrics, status, has_config) in enumerate(TRIALS):
        if trial_job != job:
            continue
        begin = start + (index + 1) * 60_000
        tags = {
            "sweepflow.role": "trial",
            "sweepflow.job": job,
            "sweepflow.trial": f"{index:02d}" + "ab" * 31,
            "mlflow.parentRunId": parent,
            "sweepflow.fingerprint": "f" * 64,
            "prefect.flow_run_id": "flow-1",
            "prefect.task_run_id": f"task-{index}",
        }
        run_id = client.create_run(experiment, start_time=begin, tags=tags).info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, value)
        for name, values in metrics.items():
            for step, value in enumerate(values):
                client.log_metric(run_id, name, value, timestamp=begin + step, step=step)
        if has_config:
            config = tmp / f"{index}" / "config.yaml"
            config.parent.mkdir()
            nested = {"model": {"name": params["model"], "depth": int(params["model.depth"])}}
            config.write_text(yaml.safe_dump({**nested, "lr": float(params["lr"])}))
            client.log_artifact(run_id, str(config))
        client.set_terminated(run_id, status=status, end_time=begin + 1500 * (index + 1))
    client.set_terminated(parent, end_time=start + 3_600_000)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real SQLite store: two jobs, each with a parent run and its trial runs."""
    from mlflow import MlflowClient

    from sweepflow.tracking.uri import prepare_store

    root = tmp_path_factory.mktemp("analysis store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    prepare_store(uri)
    client = MlflowClient(uri)
    _create_job(client, "train", T0, root)
    _create_job(client, "eval", T0, root)
    # A by-hand run in the Default experiment is not a trial.
    client.create_run("0", tags={"sweepflow.role": "manual"})
    return uri


@pytest.fixture
def train(store: str, monkeypatch: pytest.MonkeyPatch) -> RunCollection:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    return runs("train", status=None)


def test_runs_of_a_job_oldest_first(train: RunCollection) -> None:
    assert len(train) == 5 and {run.job for run in train} == {"train"}
    starts = [run.start_time for run in train]
    assert starts == sorted(starts) and all(isinstance(s, datetime) for s in starts)
    assert [run.trial[:2] for run in train] == ["00", "01", "02", "03", "04"]
    assert repr(train) == "<RunCollection of 5 runs (train: 5)>"


def test_runs_of_every_job(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    everything = runs(tracking_uri=store, status=None)
    assert len(everything) == 7 and [r.job for r in everything].count("eval") == 2


def test_unknown_job_suggests_one(store: str) -> None:
    with pytest.raises(RunLookupError, match=r"did you mean 'train'\? jobs with runs: eval, train"):
        runs("trian", tracking_uri=store)


def test_missing_store(tmp_path: Path) -> None:
    with pytest.raises(RunLookupError, match=r"no MLflow store at .*nothing has run here yet"):
        runs(tracking_uri=f"sqlite:///{tmp_path / 'none.db'}")


def test_run_fields(train: RunCollection) -> None:
    run = train[1]
    assert run.params == {"model": "cnn", "lr": "1e-3", "model.depth": "4"}
    assert run.metrics == {"loss": 0.3}  # the latest step's value
    assert run.status == "FINISHED" and run.duration == 3.0
    assert run.tags["prefect.task_run_id"] == "task-1" and run.parent_id
    assert run.artifact_dir is not None and (run.artifact_dir / "config.yaml").is_file()
    assert run.config == {"model": {"name": "cnn", "depth": 4}, "lr": 0.001}
    again = runs("train", status=None)[1]
    assert run == again and len({run, again}) == 1


def test_config_falls_back_to_nested_params(store: str) -> None:
    failed = runs("train", tracking_uri=store, status=None).get(status="FAILED")
    assert failed.config == {"model": "cnn", "lr": "0.1", "model.depth": "8"}
    assert runs("eval", tracking_uri=store)[0].config == {"split": "val", "ckpt": "a"}


def test_unflatten() -> None:
    assert unflatten({"a.b.c": 1, "a.d": 2, "e": 3}) == {"a": {"b": {"c": 1}, "d": 2}, "e": 3}


FILTERS = [
    pytest.param({"model": "cnn"}, [0, 1, 4], id="string"),
    pytest.param({"lr": 0.001}, [1, 3], id="number-matches-1e-3"),
    pytest.param({"lr": "0.1", "model": "mlp"}, [2], id="two-params"),
    pytest.param({"model__depth": 4}, [1, 3], id="dotted-key"),
    pytest.param({"model.depth": [2, 8]}, [0, 2, 4], id="any-of"),
    pytest.param({"model.depth": lambda v: int(v) > 3}, [1, 3, 4], id="callable"),
    pytest.param({"status": "finished"}, [0, 1, 2, 3], id="status"),
    pytest.param({"model": None}, [], id="none-means-absent"),
]


@pytest.mark.parametrize(("conditions", "expected"), FILTERS)
def test_filter(train: RunCollection, conditions: dict[str, Any], expected: list[int]) -> None:
    assert [int(run.trial[:2]) for run in train.filter(**conditions)] == expected


def test_filter_with_predicate(train: RunCollection) -> None:
    found = train.filter(lambda run: run.metrics.get("loss", 1) < 0.4, model="mlp")
    assert [run.params["lr"] for run in found] == ["1e-3"]


def test_filter_unknown_key(train: RunCollection) -> None:
    with pytest.raises(RunLookupError, match="no run has a param 'modle'; did you mean 'model'"):
        train.filter(modle="cnn")


def test_get(train: RunCollection) -> None:
    assert train.get(model="mlp", lr="0.1").trial.startswith("02")
    with pytest.raises(RunLookupError, match=r"3 runs match model='cnn'.*: lr, model\.depth"):
        train.get(model="cnn")
    with pytest.raises(RunLookupError, match=r"no run \(of 5\) matches lr=0.5; present: lr in"):
        train.get(lr=0.5)
    with pytest.raises(LookupError):  # a builtin too, and a sweepflow error
        train.get(model="rnn")
    assert issubclass(RunLookupError, SweepflowError)


def test_first_and_last(train: RunCollection) -> None:
    assert train.first().trial.startswith("00") and train.last().trial.startswith("04")
    assert train.last(model="mlp").trial.startswith("03")
    with pytest.raises(RunLookupError, match="the collection is empty"):
        train.filter(model="rnn").first()


def test_group_by(train: RunCollection) -> None:
    by_model = train.group_by("model")
    assert list(by_model) == ["cnn", "mlp"] and [len(g) for g in by_model.values()] == [3, 2]
    pairs = train.group_by("model", "status")
    assert list(pairs) == [("cnn", "FINISHED"), ("mlp", "FINISHED"), ("cnn", "FAILED")]
    with pytest.raises(RunQueryError):
        train.group_by()


def test_sort_and_best(train: RunCollection) -> None:
    losses = [run.metrics.get("loss") for run in train.sort("loss")]
    assert losses == [0.2, 0.3, 0.5, 0.6, None]  # the failed run has no loss: last
    assert [run.metrics.get("loss") for run in train.sort("loss", reverse=True)][-1] is None
    assert train.best("loss").metrics["loss"] == 0.2
    assert train.best("loss", mode="max").metrics["loss"] == 0.6
    with pytest.raises(RunQueryError, match="mode must be 'min' or 'max'"):
        train.best("loss", mode="lowest")  # type: ignore[arg-type]
    with pytest.raises(RunLookupError, match="did you mean 'loss'"):
        train.best("los")


def test_slicing_and_sequence(train: RunCollection) -> None:
    assert isinstance(train[1:3], RunCollection) and len(train[1:3]) == 2
    assert train[-1] in train and train.index(train[2]) == 2


def test_to_frame(train: RunCollection, store: str) -> None:
    frame = train.to_frame()
    assert list(frame.columns[:8]) == [
        "run_id",
        "parent_run_id",
        "job",
        "trial",
        "status",
        "start_time",
        "end_time",
        "duration",
    ]
    assert {"model", "lr", "model.depth", "metrics.loss", "tags.prefect.task_run_id"} <= set(
        frame.columns
    )
    assert "tags.sweepflow.job" not in frame.columns and len(frame) == 5
    assert frame["lr"].tolist() == [0.1, 0.001, 0.1, 0.001, 0.1]  # numeric when all parse
    assert frame["model"].tolist() == ["cnn", "cnn", "mlp", "mlp", "cnn"]
    assert frame["duration"].tolist() == [1.5, 3.0, 4.5, 6.0, 7.5]
    assert math.isnan(frame["metrics.loss"].iloc[4])
    assert frame.to_dict("records")[0]["run_id"] == train[0].id
    assert train.to_frame(numeric_params=False)["lr"].tolist()[1] == "1e-3"
    empty = runs("eval", tracking_uri=store).filter(split="none").to_frame()
    assert len(empty) == 0 and "run_id" in empty.columns


def test_default_is_the_latest_sweeps_finished_runs(store: str) -> None:
    assert [run.trial[:2] for run in runs("train", tracking_uri=store)] == ["00", "01", "02", "03"]
    assert len(runs(tracking_uri=store)) == 6  # both jobs' latest sweeps, FINISHED only
    assert len(runs("train", status=["FAILED", "KILLED"], tracking_uri=store)) == 1


def _sweep(client: Any, experiment: str, start: int, counts: dict[str, int]) -> str:
    tags = {"sweepflow.role": "parent", "sweepflow.job": "retrain"}
    parent = client.create_run(experiment, start_time=start, tags=tags).info.run_id
    client.log_param(parent, "overrides", "")
    for name, value in counts.items():
        client.log_metric(parent, f"trials_{name}", value)
    client.set_terminated(parent, end_time=start + 50_000)
    return str(parent)


def _trial(client: Any, experiment: str, parent: str, start: int, digest: str, ok: bool) -> str:
    tags = {"sweepflow.role": "trial", "sweepflow.job": "retrain", "sweepflow.trial": digest}
    tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(experiment, start_time=start, tags=tags).info.run_id
    client.log_param(run_id, "x", digest)
    client.set_terminated(run_id, status="FINISHED" if ok else "FAILED", end_time=start + 1)
    return str(run_id)


@pytest.fixture(scope="module")
def resweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str], list[str]]:
    """A job swept three times: a fails; a re-runs, b is a cache hit; then all cached."""
    from mlflow import MlflowClient

    from sweepflow.tracking.uri import ensure_experiment, prepare_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('resweeps') / 'mlflow.db'}"
    prepare_store(uri)
    client = MlflowClient(uri)
    experiment = ensure_experiment(client, "retrain", uri)
    first = _sweep(client, experiment, T0, {"done": 1, "cached": 0, "failed": 1})
    trials = [_trial(client, experiment, first, T0 + 1000, "a", ok=False)]
    trials.append(_trial(client, experiment, first, T0 + 2000, "b", ok=True))
    second = _sweep(client, experiment, T0 + 60_000, {"done": 1, "cached": 1, "failed": 0})
    trials.append(_trial(client, experiment, second, T0 + 61_000, "a", ok=True))
    third = _sweep(client, experiment, T0 + 120_000, {"done": 0, "cached": 2, "failed": 0})
    return uri, [first, second, third], trials


def test_cache_hits_resolve_to_earlier_runs(resweeps: tuple[str, list[str], list[str]]) -> None:
    uri, parents, trials = resweeps
    assert [run.id for run in runs("retrain", tracking_uri=uri)] == [trials[1], trials[2]]
    assert [r.id for r in runs("retrain", sweep=parents[1], tracking_uri=uri)] == trials[1:]
    first = runs("retrain", sweep=parents[0], status=None, tracking_uri=uri)
    assert [run.status for run in first] == ["FAILED", "FINISHED"]
    assert len(runs("retrain", all_runs=True, tracking_uri=uri)) == 2
    assert len(runs("retrain", all_runs=True, status=None, tracking_uri=uri)) == 3
    with pytest.raises(RunLookupError, match=r"no sweep 'nope' of job 'retrain'.*sweepflow ls"):
        runs("retrain", sweep="nope", tracking_uri=uri)


def test_sweeps(resweeps: tuple[str, list[str], list[str]]) -> None:
    uri, parents, _ = resweeps
    found = sweeps("retrain", tracking_uri=uri)
    assert [one.id for one in found] == parents
    assert found[1].counts == {"done": 1, "cached": 1, "failed": 0}
    assert [len(one.runs) for one in found] == [2, 2, 2]
    with pytest.raises(
        RunLookupError, match=r"no sweep of job 'retrian'.*'retrain'.*sweepflow run"
    ):
        sweeps("retrian", tracking_uri=uri)
