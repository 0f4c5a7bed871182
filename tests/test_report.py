"""The light reporting channel: report files under sweepflow, MLflow when run by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweepflow.reporting import channel as rep
from sweepflow.reporting.channel import (
    ArtifactEntry,
    MetricPoint,
    log_artifact,
    log_metrics,
    log_params,
    read_report,
)
from sweepflow.tracking.uri import artifact_root, default_tracking_uri


@pytest.fixture
def report_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A trial's report file named in the environment, as the flow launches a trial."""
    trial = tmp_path / "trial dir; 'quoted'"
    trial.mkdir()
    path = trial / "report.jsonl"
    monkeypatch.setenv("SWEEPFLOW_REPORT", str(path))
    monkeypatch.setenv("SWEEPFLOW_TRIAL_DIR", str(trial))
    return path


@pytest.fixture
def experiment_name() -> str:
    """The by-hand experiment of this module (used by the ``by_hand`` fixture)."""
    return "by-hand"


def test_report_round_trip(report_file: Path, tmp_path: Path) -> None:
    plot = tmp_path / "plot.png"
    plot.write_bytes(b"png")
    log_metrics({"loss": 0.5, "acc": np.float32(0.25)}, step=0)
    log_metrics({"loss": 0.25}, step=np.int64(1))
    log_metrics({"final": 3})
    log_params({"lr": 0.1, "model": {"depth": 3, "act": "relu"}})
    log_params({"lr": "0.2"})
    log_artifact(plot, "plots")
    log_artifact(str(tmp_path))

    lines = [json.loads(line) for line in report_file.read_text().splitlines()]
    assert [line["kind"] for line in lines] == ["metrics"] * 3 + ["params"] * 2 + ["artifact"] * 2
    assert lines[0]["values"] == {"loss": 0.5, "acc": 0.25} and lines[0]["step"] == 0
    assert lines[2]["step"] is None and isinstance(lines[2]["time"], int)

    report = read_report(report_file)
    assert [(m.name, m.value, m.step) for m in report.metrics] == [
        ("loss", 0.5, 0),
        ("acc", 0.25, 0),
        ("loss", 0.25, 1),
        ("final", 3.0, None),
    ]
    _name, _value, _step, stamp = report.metrics[0]  # unpacks like a plain tuple
    assert isinstance(report.metrics[0], MetricPoint) and stamp > 1_600_000_000_000
    assert report.params == {"lr": "0.2", "model.depth": "3", "model.act": "relu"}
    assert report.artifacts == (
        ArtifactEntry(str(plot.resolve()), "plots"),
        ArtifactEntry(str(tmp_path.resolve()), None),
    )
    assert report.problems == ()


def test_nan_and_inf_survive(report_file: Path) -> None:
    log_metrics({"nan": float("nan"), "inf": float("inf")}, step=2)
    values = {m.name: m.value for m in read_report(report_file).metrics}
    assert math.isnan(values["nan"]) and values["inf"] == math.inf


def test_truncated_last_line_is_skipped(report_file: Path) -> None:
    log_metrics({"loss": 1.0}, step=0)
    log_params({"seed": 1})
    with report_file.open("a") as handle:  # a writer killed in the middle of a line
        handle.write('{"kind": "metrics", "values": {"loss": 0.')
    report = read_report(report_file)
    assert [m.value for m in report.metrics] == [1.0]
    assert report.params == {"seed": "1"}
    assert len(report.problems) == 1 and "cut short" in report.problems[0]
    assert report.problems[0].startswith(f"{report_file}:3:")


def test_append_after_truncated_line_starts_a_new_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "report.jsonl"
    path.write_text('{"kind": "metrics", "values": {"a": 1.0}, "step": 0, "time": 1}\n{"kin')
    monkeypatch.setenv("SWEEPFLOW_REPORT", str(path))
    log_metrics({"a": 2.0}, step=1)
    report = read_report(path)
    assert [m.value for m in report.metrics] == [1.0, 2.0]
    assert len(report.problems) == 1 and ":2:" in report.problems[0]


def test_malformed_lines_are_listed_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "report.jsonl"
    rows = [
        '{"kind": "params", "values": {"a": "1"}}',
        "[1, 2]",
        '{"kind": "mystery"}',
        '{"kind": "metrics", "values": {"x": "high"}, "step": null, "time": 5}',
        '{"kind": "metrics", "values": {"x": 2}, "step": 4, "time": 5}',
    ]
    path.write_text("\n".join(rows) + "\n")
    report = read_report(path)
    assert report.params == {"a": "1"} and report.metrics == (MetricPoint("x", 2.0, 4, 5),)
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in report.problems] == ["2", "3", "4"]
    assert "unknown kind 'mystery'" in report.problems[1]


def test_missing_report_is_empty(tmp_path: Path) -> None:
    assert read_report(tmp_path / "absent.jsonl") == rep.Report()


BAD_METRICS = [
    pytest.param({"ok": True}, TypeError, "metric 'ok' is a bool", id="bool"),
    pytest.param({"flag": np.bool_(False)}, TypeError, "metric 'flag' is a bool", id="numpy-bool"),
    pytest.param({"loss": "0.5"}, TypeError, "metric 'loss' must be a real number", id="str"),
    pytest.param({"loss": None}, TypeError, "metric 'loss' must be a real number", id="none"),
    pytest.param({"z": 1j}, TypeError, "metric 'z' must be a real number", id="complex"),
    pytest.param({"v": np.ones(2)}, ValueError, "metric 'v' must be a single", id="array"),
    pytest.param({"": 1.0}, TypeError, "non-empty strings", id="empty-name"),
]


@pytest.mark.parametrize(("metrics", "error", "message"), BAD_METRICS)
def test_bad_metric_values_name_the_key(
    report_file: Path, metrics: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        log_metrics(metrics)
    assert not report_file.exists()  # nothing half-written


@pytest.mark.parametrize("step", [True, 1.5, "3"], ids=["bool", "float", "str"])
def test_bad_step(report_file: Path, step: Any) -> None:
    with pytest.raises(TypeError, match="step must be an int"):
        log_metrics({"loss": 1.0}, step=step)


def test_zero_d_arrays_are_accepted(report_file: Path) -> None:
    log_metrics({"zero_d": np.array(0.5), "scalar": np.float16(2.0)})
    assert [m.value for m in read_report(report_file).metrics] == [0.5, 2.0]


def test_missing_artifact_is_an_error(report_file: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"cannot log artifact .*nope\.txt"):
        log_artifact(tmp_path / "nope.txt")


def test_reporting_under_sweepflow_imports_no_mlflow(report_file: Path) -> None:
    code = (
        "import sys, sweepflow.reporting.channel as r\n"
        "r.log_metrics({'loss': 0.1}, step=1); r.log_params({'a': 1})\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'prefect') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
    assert len(read_report(report_file).metrics) == 1


def test_default_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SWEEPFLOW_HOME", str(tmp_path / "state"))
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{(tmp_path / 'state').resolve()}/mlflow.db"
    assert artifact_root(uri) == (tmp_path / "state" / "mlartifacts").resolve()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert default_tracking_uri() == "http://127.0.0.1:5000"


def test_by_hand_logs_straight_to_mlflow(by_hand: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    log_params({"lr": 0.1, "model": {"depth": 2}})
    log_metrics({"loss": 1.0, "acc": np.float64(0.5)}, step=0)
    log_metrics({"loss": 0.5}, step=1)
    log_artifact(notes, "extra")
    run_id = mlflow.active_run().info.run_id
    mlflow.end_run()

    client = MlflowClient(by_hand)
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "by-hand"
    assert run.data.params == {"lr": "0.1", "model.depth": "2"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
        (0, 1.0),
        (1, 0.5),
    ]
    assert [a.path for a in client.list_artifacts(run_id, "extra")] == ["extra/notes.txt"]
    # A new experiment of a SQLite store keeps artifacts next to the database.
    location = client.get_experiment(run.info.experiment_id).artifact_location
    assert location.startswith(artifact_root(by_hand).as_uri())


def test_by_hand_reuses_the_active_run(by_hand: str) -> None:
    import mlflow

    with mlflow.start_run() as run:
        log_metrics({"loss": 2.0})
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert mlflow.MlflowClient(by_hand).get_run(run.info.run_id).data.metrics == {"loss": 2.0}
