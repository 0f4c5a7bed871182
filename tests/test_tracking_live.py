"""MLflow seen while a sweep runs: every in-flight trial's run is there, named, with its
params (a user opening the MLflow UI mid-sweep sees what each running trial is)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")

WAIT = """\
import sys, time
from pathlib import Path
params = dict(item.split("=", 1) for item in sys.argv[1:])
here = Path(__file__).resolve().parent
(here / f"started-{params['n']}").touch()
deadline = time.time() + 120
while not (here / "go").exists() and time.time() < deadline:
    time.sleep(0.05)
"""

JOBS = """\
jobs:
  slow:
    run: python wait.py
    sets:
      - each: n=1:4 lr=0.5
"""


def _trial_runs(uri: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("slow")
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id], "tags.`sweepflow.role` = 'trial'", max_results=100
    )


def test_running_trials_show_their_params_in_mlflow(project: Path) -> None:
    (project / "wait.py").write_text(WAIT)
    (project / "sweepflow.yaml").write_text(textwrap.dedent(JOBS))
    uri = f"sqlite:///{(project / '.sweepflow' / 'mlflow.db').as_posix()}"
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweepflow", "run", "slow", "--max-parallel", "2"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while len(list(project.glob("started-*"))) < 2 and time.time() < deadline:
            assert driver.poll() is None, f"the sweep ended early: {driver.stderr.read()}"
            time.sleep(0.1)
        started = sorted(p.name for p in project.glob("started-*"))
        assert len(started) == 2, "two trials should be running (max-parallel 2)"
        running = [r for r in _trial_runs(uri) if r.info.status == "RUNNING"]
        assert len(running) >= 2, "the trials in flight have no RUNNING MLflow run"
        for run in running:
            assert run.data.params.get("lr") == "0.5", run.data.params
            assert run.data.params.get("n") in {"1", "2", "3", "4"}, run.data.params
            # Named by the params that vary (lr=0.5 in every trial).
            assert run.info.run_name == f"n={run.data.params['n']}", run.info.run_name
            assert run.data.tags.get("mlflow.runName") == run.info.run_name
        running_n = {r.data.params["n"] for r in running}
        assert {name.removeprefix("started-") for name in started} <= running_n
    finally:
        (project / "go").touch()
        _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    finished = _trial_runs(uri)
    assert sorted(r.data.params["n"] for r in finished) == ["1", "2", "3", "4"]
    assert {r.info.status for r in finished} == {"FINISHED"}
