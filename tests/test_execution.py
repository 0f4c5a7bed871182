"""Running jobs under execution profiles: a real local Dask cluster, the resolved
profile saved with the run, and bad profile input refused before anything starts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sweepflow.cli import main

pytestmark = pytest.mark.usefixtures("prefect_api")

JOBS = """\
jobs:
  squares:
    call: work:square
    sets:
      - all: x=1:6
"""

WORK = """\
import os


def square(args):
    x = int(dict(item.split("=", 1) for item in args)["x"])
    return {"y": x * x, "pid": os.getpid()}
"""


def _project(project: Path) -> Path:
    (project / "sweepflow.yaml").write_text(JOBS)
    (project / "work.py").write_text(textwrap.dedent(WORK))
    return project / "sweepflow.yaml"


def test_a_dask_local_profile_runs_trials_in_worker_processes(project: Path) -> None:
    import os

    from flows.run_job import run_job

    job_file = _project(project)
    summary = run_job(
        "squares",
        job_file=str(job_file),
        profile="dask-local",
        profile_set=["workers=2", "threads_per_worker=1"],
    )

    assert summary["counts"]["done"] == 6
    rows = summary["trials"]
    assert sorted(r["metrics"]["y"] for r in rows) == [1, 4, 9, 16, 25, 36]
    pids = {r["metrics"]["pid"] for r in rows}
    assert os.getpid() not in pids  # the function ran in Dask's worker processes
    saved = list((project / ".sweepflow" / "runs" / "squares" / "profiles").glob("*.json"))
    assert len(saved) == 1
    resolved = json.loads(saved[0].read_text())
    assert resolved["type"] == "dask-local" and resolved["workers"] == 2

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])
    artifacts = [a.path for a in client.list_artifacts(summary["parent_run"])]
    assert "profile.json" in artifacts
    assert client.get_run(summary["parent_run"]).data.params["profile"] == "dask-local"

    again = run_job("squares", job_file=str(job_file), profile="dask-local")
    assert again["counts"]["cached"] == 6


def test_bad_profile_input_is_one_line_and_starts_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(project)

    code = main(["run", "squares", "--profile", "dask-local", "--set", "wokers=2"])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "wokers" in err[0] and "workers" in err[0]  # names the key and the close match
    assert not (project / ".sweepflow").exists()

    code = main(["run", "squares", "--profile", "no-such-profile"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no-such-profile" in err[0], err
