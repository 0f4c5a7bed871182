"""``sweepflow results`` and ``sweepflow ls`` after real sweeps of a ``call:`` job."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_run_job import make_project, run_flow

import sweepflow
from sweepflow.cli.main import main

pytestmark = pytest.mark.usefixtures("prefect_api")

JOBS = """
jobs:
  fit:
    call: fit:with_model
    sets:
      - each: model.depth=1,2,3 lr=0.5,0.1
  other:
    call: fit:with_list
    sets:
      - each: a=1
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def swept(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One sweep of ``fit`` (6 trials, loss = lr * depth)."""
    monkeypatch.delitem(sys.modules, "fit", raising=False)
    job_file = make_project(project, JOBS, "fit.py")
    run_flow("fit", job_file)
    return job_file


def test_results_json_columns_and_values(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "results", "fit", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 6 and {row["status"] for row in rows} == {"FINISHED"}
    assert list(rows[0])[:4] == ["run_id", "parent_run_id", "status", "start_time"]
    assert {"model.depth", "lr", "loss", "depth_seen"} <= set(rows[0])
    for row in rows:
        assert row["loss"] == pytest.approx(float(row["lr"]) * int(row["model.depth"]))
    assert len({row["parent_run_id"] for row in rows}) == 1


def test_results_sort_and_filter(swept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "results", "fit", "--format", "csv", "--sort", "loss")
    losses = [float(row["loss"]) for row in csv.DictReader(io.StringIO(out))]
    assert losses == sorted(losses) and len(losses) == 6
    _, out, _ = cli(capsys, "results", "fit", "--format", "csv", "--sort=-loss")
    assert [float(r["loss"]) for r in csv.DictReader(io.StringIO(out))] == sorted(losses)[::-1]
    args = ["results", "fit", "--format", "json", "--filter", "lr=0.5", "--filter", "model.depth=2"]
    _, out, _ = cli(capsys, *args)
    assert [(row["lr"], row["loss"]) for row in json.loads(out)] == [("0.5", 1.0)]


def test_results_table(
    swept: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    code, out, _ = cli(capsys, "results", "fit", "--sort", "-loss")
    assert code == 0 and "fit: 6 trials (latest sweep)" in out
    header = next(line for line in out.splitlines() if "model.depth" in line)
    for column in ("#", "run", "model.depth", "lr", "depth_seen", "loss", "status"):
        assert column in header
    assert out.index("1.5") < out.index("0.1 ")  # 3 * 0.5 first, 1 * 0.1 last


ERRORS = [
    pytest.param(["results", "fti"], "No job 'fti'", id="unknown-job"),
    pytest.param(["results", "other"], "run `sweepflow run other` first", id="no-sweep-yet"),
    pytest.param(
        ["results", "fit", "--sort", "los"],
        "did you mean 'loss'? metrics: depth_seen, loss",
        id="sort",
    ),
    pytest.param(["results", "fit", "--filter", "lr"], "expected key=value", id="filter-form"),
    pytest.param(["results", "fit", "--filter", "lrr=1"], "did you mean 'lr'", id="filter-key"),
    pytest.param(["results", "fit", "--run", "abc"], "no sweep 'abc' of job 'fit'", id="run-id"),
    pytest.param(["ls", "other"], "run `sweepflow run other` first", id="ls-no-sweep"),
]


@pytest.mark.parametrize(("args", "message"), ERRORS)
def test_errors_are_one_line(
    swept: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_second_sweep_all_and_ls(
    swept: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_flow("fit", swept)  # 6 trials, all cache hits
    run_flow("fit", swept, overrides=["lr=0.2"])  # 3 new trials
    _, out, _ = cli(capsys, "results", "fit", "--format", "json")
    assert sorted(row["lr"] for row in json.loads(out)) == ["0.2"] * 3
    _, out, _ = cli(capsys, "results", "fit", "--all", "--format", "json")
    assert len(json.loads(out)) == 9 and len({r["parent_run_id"] for r in json.loads(out)}) == 2

    _, out, _ = cli(capsys, "ls", "--format", "json")
    sweeps = json.loads(out)
    assert [(s["job"], s["done"], s["cached"], s["failed"]) for s in sweeps] == [
        ("fit", 6, 0, 0),
        ("fit", 0, 6, 0),
        ("fit", 3, 0, 0),
    ]
    # The best value each sweep's parent run records: its target metric (the first one
    # its trials reported), lowest value among its trials, cached ones included.
    for one in sweeps:
        _, out, _ = cli(capsys, "results", "fit", "--run", one["run"], "--format", "json")
        assert one["best"] == f"loss={min(row['loss'] for row in json.loads(out)):g} (min)"
    assert {s["status"] for s in sweeps} == {"FINISHED"} and all(s["flow_run"] for s in sweeps)
    cached = sweeps[1]["run"]
    _, out, _ = cli(capsys, "results", "fit", "--run", cached, "--format", "json")
    losses = sorted(row["loss"] for row in json.loads(out))  # the runs of sweep 1
    assert losses == pytest.approx([0.1, 0.2, 0.3, 0.5, 1.0, 1.5])

    monkeypatch.setenv("COLUMNS", "250")  # rich folds cells to the terminal's width
    code, out, _ = cli(capsys, "ls", "fit")
    assert code == 0 and "3 sweeps" in out and "loss=0.1 (min)" in out
    print(out)  # for the eye: pytest -s
    code, out, _ = cli(capsys, "results", "fit", "--sort", "loss")
    print(out)

    # The analysis API: the latest sweep's finished runs by default.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(swept))
    assert sorted(run.params["lr"] for run in sweepflow.runs("fit")) == ["0.2"] * 3
    assert len(sweepflow.runs("fit", all_runs=True)) == 9
    assert len(sweepflow.runs("fit", sweep=cached)) == 6


def _uri(job_file: Path) -> str:
    return f"sqlite:///{(job_file.parent / '.sweepflow' / 'mlflow.db').resolve().as_posix()}"


def test_ls_best_is_the_optimize_metric(swept: Path) -> None:
    from sweepflow.analysis import sweeps
    from sweepflow.cli.results import _best

    (sweep,) = sweeps("fit", tracking_uri=_uri(swept))
    search = SimpleNamespace(optimize=SimpleNamespace(metrics=("loss",), directions=("maximize",)))
    # What the parent run records wins: the sweep's target, the first metric reported.
    assert _best(sweep, search) == "loss=0.1 (min)"
    # A parent without it (an older sweep): the job's optimize metric, else the first
    # metric by name, read from the trials.
    sweep.parent.tags.pop("sweepflow.best_metric")
    assert _best(sweep, search) == "loss=1.5 (max)"
    assert _best(sweep, SimpleNamespace(optimize=None)) == "depth_seen=1 (min)"
