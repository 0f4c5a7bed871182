"""Running jobs under execution profiles: a real local Dask cluster, the resolved
profile saved with the run, and bad profile input refused before anything starts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sweepflow.cli.main import main

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


def test_the_command_line_starts_the_dask_cluster_before_the_flow(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sweepflow run --profile dask-local`` starts the cluster while Prefect is imported
    and the flow run created; the flow runs its trials there (it does not start a second
    cluster), and no worker process is left when the command returns."""
    import os

    import psutil

    import flows._runtime
    from sweepflow.services import cluster as _prestart

    _project(project)
    taken: list[str | None] = []

    def spy(kwargs: dict, adapt: dict | None) -> str | None:
        taken.append(_prestart.take(kwargs, adapt))
        return taken[-1]

    monkeypatch.setattr(flows._runtime, "take", spy)
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    code = main(["run", "squares", "--profile", "dask-local", "--set", "workers=2"])

    assert code == 0
    assert len(taken) == 1 and taken[0] and taken[0].startswith("tcp://127.0.0.1:")
    state = project / ".sweepflow" / "results"
    from sweepflow.cache.results import read_result

    pids = {read_result(path).metrics["pid"] for path in state.iterdir()}
    assert len(pids) >= 1 and os.getpid() not in pids  # ran in the cluster's workers
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left & pids, "the cluster's worker processes outlived the command"
    assert _prestart.take({}, None) is None  # nothing kept for a later run


def test_a_cluster_started_with_other_settings_is_not_used(project: Path) -> None:
    """The flow only connects to a started cluster made with exactly its arguments."""
    from sweepflow.services import cluster as _prestart

    kwargs = {"n_workers": 1, "threads_per_worker": 1, "processes": False}
    _prestart.start(kwargs, None)
    try:
        assert _prestart.take({**kwargs, "n_workers": 2}, None) is None
        assert _prestart.take(kwargs, {"minimum": 1, "maximum": 2}) is None
        assert (_prestart.take(kwargs, None) or "").startswith("inproc://")
    finally:
        _prestart.close()
    assert _prestart.take(kwargs, None) is None
