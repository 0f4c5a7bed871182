"""Every trial of a ``per: batch`` or ``submit:`` job is its own record.

Real ``sweepflow run`` calls (in-process CLI) against the session's Prefect API and a
fresh MLflow SQLite store: an unchanged Hydra app run as ``--multirun`` batches, and
``examples/submit.py`` as a local "scheduler" handing each line of its parameter file to
a program. MLflow must then hold one child run per trial under the sweep's parent, with
that trial's params and its own metric steps, and the printed summary one row per trial.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from sweepflow.cli.main import main
from sweepflow.plan.members import batch_trials
from sweepflow.reporting import members

ROOT = Path(__file__).resolve().parents[1]

HYDRA_APP = """
from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore

import sweepflow


@dataclass
class Config:
    width: int = 1
    height: int = 1


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base=None, config_name="config")
def app(cfg: Config) -> None:
    for step in range(3):
        sweepflow.log_metrics({"loss": cfg.width * cfg.height + step}, step=step)
    sweepflow.log_metrics({"area": cfg.width * cfg.height})


if __name__ == "__main__":
    app()
"""

MAIN_PROGRAM = """
from pathlib import Path

from pydantic import BaseModel

import sweepflow


class Config(BaseModel):
    width: int = 1
    height: int = 1
    seed: int = 0


@sweepflow.main(Config)
def app(cfg: Config, out: Path) -> None:
    (out / "mine.txt").write_text(f"{cfg.width}x{cfg.height}")
    for step in (0, 5):
        sweepflow.log_metrics({"loss": cfg.width * 10 + cfg.height + step}, step=step)


if __name__ == "__main__":
    app()
"""

CRASHING_PROGRAM = MAIN_PROGRAM.replace(
    "    for step in (0, 5):",
    "    if cfg.height == 4:\n        raise SystemExit(3)\n    for step in (0, 5):",
)

# Reports for the trial its handler names, whatever its arguments say.
BLIND_PROGRAM = """
import os
import sys

import sweepflow

if "b=skip" not in sys.argv:
    position = int(os.environ.get("SWEEPFLOW_TRIAL_INDEX", "-1"))
    sweepflow.log_metrics({"position": position}, step=0)
    sweepflow.log_metrics({"position": position + 1}, step=1)
"""

# examples/submit.py, but telling each program its line's position.
INDEX_HANDLER = """
import json, os, subprocess, sys
from pathlib import Path

program, param_file = sys.argv[1], Path(sys.argv[2])
for position, line in enumerate(param_file.read_text().splitlines()):
    env = dict(os.environ, SWEEPFLOW_TRIAL_INDEX=str(position))
    subprocess.run([sys.executable, program, *json.loads(line)["args"]], env=env, check=True)
"""

JOBS = """
jobs:
  hb:
    run: python hydra_app.py
    per: batch
    add: hydra/launcher=basic
    sets:
      - each: width=2,5
        all: height=3,7
  sub:
    submit: python submit.py prog.py
    sets:
      - each: width=1,2
        all: height=3,4
  crashy:
    submit: python submit.py crash.py
    sets:
      - each: width=1
        all: height=3,4,5
  blind:
    submit: python index_handler.py blind.py
    sets:
      - each: b=x,skip,y
"""


@pytest.fixture
def job_project(project: Path, prefect_api: str) -> Path:
    (project / "hydra_app.py").write_text(HYDRA_APP)
    (project / "prog.py").write_text(MAIN_PROGRAM)
    (project / "crash.py").write_text(CRASHING_PROGRAM)
    (project / "blind.py").write_text(BLIND_PROGRAM)
    (project / "index_handler.py").write_text(INDEX_HANDLER)
    shutil.copy(ROOT / "examples" / "submit.py", project / "submit.py")
    (project / "sweepflow.yaml").write_text(textwrap.dedent(JOBS).lstrip("\n"))
    return project


# -- which trial a report is for (no Prefect) ---------------------------------------
BATCHES = [
    ("product-last-fastest", ["--multirun", "w=2,5", "h=3,7", "hydra.job.name=j"],
     [{"w": "2", "h": "3"}, {"w": "2", "h": "7"}, {"w": "5", "h": "3"}, {"w": "5", "h": "7"}]),
    ("quoted-comma-is-one-value", ["--multirun", "m='a,b',c", "hydra.sweep.dir=/x", "k=1"],
     [{"m": "'a,b'"}, {"m": "c"}]),
    ("not-a-batch", ["w=2", "h=3"], []),
]  # fmt: skip


@pytest.mark.parametrize(("items", "trials"), [b[1:] for b in BATCHES], ids=[b[0] for b in BATCHES])
def test_batch_trials(items: list[str], trials: list[dict[str, str]]) -> None:
    assert batch_trials(items) == trials


TRIALS = [{"w": "2", "h": "3"}, {"w": "2", "h": "'p q'"}]
MATCHES = [
    ("main-items", {}, {"w": "2", "h": "3", "seed": "0"}, [], 0),
    ("unquoted-value", {}, {"w": "2", "h": "p q"}, [], 1),
    ("argv-fallback", {}, None, ["prog.py", "h='p q'", "w=2"], 1),
    ("no-match", {}, {"w": "9"}, [], None),
    ("explicit-index-wins", {"SWEEPFLOW_TRIAL_INDEX": "1"}, {"w": "2", "h": "3"}, [], 1),
]


@pytest.mark.parametrize(
    ("env", "given", "argv", "expected"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES]
)
def test_the_trial_a_program_reports_for(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    given: dict[str, str] | None,
    argv: list[str],
    expected: int | None,
) -> None:
    path = members.write_members(tmp_path, TRIALS)
    settings = {members.TRIALS_ENV: str(path), **env}
    monkeypatch.setattr("sys.argv", argv or ["prog.py"])
    if given is None:
        assert members.current(settings.get) == expected
        return
    with members.given(given):
        assert members.current(settings.get) == expected


def test_a_bad_explicit_index_says_how_to_fix_it(tmp_path: Path) -> None:
    path = members.write_members(tmp_path, TRIALS)
    settings = {members.TRIALS_ENV: str(path), members.INDEX_ENV: "2"}
    with pytest.raises(ValueError, match=r"SWEEPFLOW_TRIAL_INDEX='2' is not a trial .* 0 to 1"):
        members.current(settings.get)


# -- real sweeps ------------------------------------------------------------------------
def _client(project: Path) -> Any:
    from mlflow import MlflowClient

    db = (project / ".sweepflow" / "mlflow.db").resolve().as_posix()
    return MlflowClient(tracking_uri=f"sqlite:///{db}")


def _children(project: Path, job: str) -> tuple[Any, list[Any], list[Any]]:
    """The latest parent run of ``job``, its trial runs and its other child runs."""
    client = _client(project)
    experiment = client.get_experiment_by_name(job)
    assert experiment is not None, f"no MLflow experiment {job!r}"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("sweepflow.role") == "parent"]
    parent = max(parents, key=lambda r: r.info.start_time)
    mine = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    trials = [r for r in mine if r.data.tags.get("sweepflow.role") == "trial"]
    return parent, trials, [r for r in mine if r not in trials]


def _history(project: Path, run: Any, metric: str) -> list[tuple[int, float]]:
    points = _client(project).get_metric_history(run.info.run_id, metric)
    return sorted((p.step, p.value) for p in points)


def _by(runs: list[Any], *keys: str) -> dict[tuple[str, ...], Any]:
    found = {tuple(r.data.params.get(k, "") for k in keys): r for r in runs}
    assert len(found) == len(runs), "two runs with the same params"
    return found


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["run", *args])
    out, err = capsys.readouterr()
    return code, out + err


def _rows(output: str, status: str) -> list[str]:
    """Rows of the printed summary table with ``status`` in a cell."""
    return [line for line in output.splitlines() if f" {status} " in line and "│" in line]


def _shown(output: str, *keys: str) -> set[tuple[str, ...]]:
    """The params of the summary's rows: from their columns, or their ``k=v`` label."""
    lines = [line for line in output.splitlines() if line.startswith(("┃", "│"))]
    cells = [
        [cell.strip() for cell in line.strip("┃│").split("┃" if "┃" in line else "│")]
        for line in lines
    ]
    header, rows = cells[0], cells[1:]
    if all(key in header for key in keys):
        return {tuple(row[header.index(key)] for key in keys) for row in rows}
    labels = [
        dict(item.split("=", 1) for item in " ".join(row).split() if "=" in item) for row in rows
    ]
    return {tuple(label.get(key, "") for key in keys) for label in labels}


def test_hydra_batch_trials_are_runs_of_their_own(
    job_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _run(capsys, "hb")
    assert code == 0, output

    _, trials, others = _children(job_project, "hb")
    runs = _by(trials, "width", "height")
    assert set(runs) == {("2", "3"), ("2", "7"), ("5", "3"), ("5", "7")}, "a run per trial"
    assert {r.info.status for r in trials} == {"FINISHED"}
    for (width, height), run in runs.items():
        area = int(width) * int(height)
        assert _history(job_project, run, "loss") == [(0, area), (1, area + 1), (2, area + 2)]
        assert run.data.metrics["area"] == area, "its own metrics, no other trial's"
        assert set(run.data.metrics) == {"loss", "area"}
    assert [r.data.tags["sweepflow.role"] for r in others] == ["batch", "batch"]
    assert len(_rows(output, "done")) == 4, "one summary row per trial"
    assert _shown(output, "width", "height") == set(runs)


def test_submit_trials_are_runs_of_their_own_and_cached_per_trial(
    job_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _run(capsys, "sub")
    assert code == 0, output

    _, trials, _ = _children(job_project, "sub")
    runs = _by(trials, "width", "height")
    assert set(runs) == {("1", "3"), ("1", "4"), ("2", "3"), ("2", "4")}
    for (width, height), run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == "0", "what sweepflow.main logged lands there too"
        base = int(width) * 10 + int(height)
        assert _history(job_project, run, "loss") == [(0, base), (5, base + 5)]
        (config,) = _client(job_project).list_artifacts(run.info.run_id)
        assert config.path == "config.yaml"
    assert len(_rows(output, "done")) == 4
    assert _shown(output, "width", "height") == set(runs)

    from flows.run_job import run_job

    # Again: the unit is one cache hit, and the flow's summary (Prefect's trials
    # table) still has a row per trial, with that trial's metrics.
    summary = run_job(job="sub", job_file=str(job_project / "sweepflow.yaml"))
    rows = {row["label"]: row for row in summary["trials"]}
    assert set(rows) == {
        "width=1 height=3",
        "width=1 height=4",
        "width=2 height=3",
        "width=2 height=4",
    }
    assert {row["status"] for row in rows.values()} == {"cached"}
    assert rows["width=2 height=4"]["metrics"] == {"loss": 29.0}
    assert sorted(row["index"] for row in rows.values()) == [0, 1, 2, 3]

    # The rows a summary of cache hits shows without a flow run (flows._members).
    from flows._members import trial_rows
    from sweepflow.cache.results import all_cached
    from sweepflow.engine.progress import outcome_of
    from sweepflow.plan.expansion import compile_job
    from sweepflow.plan.specs import build_specs
    from sweepflow.spec.jobs import load_jobs

    job = load_jobs(job_project / "sweepflow.yaml").job("sub")
    specs = build_specs(compile_job(job), job_project)
    results = all_cached(specs, job_project / ".sweepflow", "sub", True)
    assert results is not None
    units = [outcome_of(s, "cached", r) for s, r in zip(specs, results, strict=True)]
    shown = trial_rows(job, specs, units)
    assert [(row.label, row.metrics) for row in shown][3] == ("width=2 height=4", {"loss": 29.0})


def test_a_trial_that_reports_nothing_fails_in_its_own_row(
    job_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = _run(capsys, "blind")
    assert code == 1, output

    _, trials, _ = _children(job_project, "blind")
    runs = _by(trials, "b")
    assert {b: r.info.status for (b,), r in runs.items()} == {
        "x": "FINISHED",
        "skip": "FAILED",
        "y": "FINISHED",
    }
    # The handler named each program's trial by its line: SWEEPFLOW_TRIAL_INDEX.
    assert _history(job_project, runs[("x",)], "position") == [(0, 0), (1, 1)]
    assert _history(job_project, runs[("y",)], "position") == [(0, 2), (1, 3)]
    assert len(_rows(output, "done")) == 2 and len(_rows(output, "failed")) == 1
    assert _shown(output, "b") == {("x",), ("skip",), ("y",)}
    assert "reported nothing" in output

    code, output = _run(capsys, "blind")  # not a cache hit: the unit runs again
    assert code == 1 and not _rows(output, "cached"), output
    assert len(_rows(output, "done")) == 2 and "reported nothing" in output


def test_one_crashed_trial_fails_alone_when_its_handler_fails(
    job_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/submit.py runs every line and then exits non-zero: the trials whose
    program returned (``@sweepflow.main`` says so) are done, the crashed one failed."""
    code, output = _run(capsys, "crashy")
    assert code == 1, output

    _, trials, _ = _children(job_project, "crashy")
    runs = _by(trials, "height")
    assert {h: r.info.status for (h,), r in runs.items()} == {
        "3": "FINISHED",
        "4": "FAILED",
        "5": "FINISHED",
    }
    assert _history(job_project, runs[("5",)], "loss") == [(0, 15), (5, 20)]
    assert runs[("4",)].data.params["seed"] == "0", "it reported its params before crashing"
    assert len(_rows(output, "done")) == 2 and len(_rows(output, "failed")) == 1
    assert "handler exited with code 3" in output
