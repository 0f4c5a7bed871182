"""End to end: ``sweepflow up``, deployments, ``prefect deployment run``, schedules, the
two UIs in headless Chromium, a killed worker, and ``sweepflow down``.

Real servers only: one ``sweepflow up`` (Prefect server, ``sweepflow`` work pool and a
worker, MLflow UI) for the module, in a project folder of its own. The tests run in
file order as one scenario; each names what it needs from the ones before.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

import sweepflow
from sweepflow.services.files import free_ports

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

REPO = Path(sweepflow.__file__).resolve().parents[2]

JOBS = """\
jobs:
  quick:
    run: python quick.py
    schedule: "0 3 * * *"
    sets:
      - all: x=1:3
  slow:
    run: python slow.py
    sets:
      - all: x=1:8
  search:
    run: python quick.py
    optimize: {metric: y, n_trials: 3, parallel: 1, sampler: grid, space: x=0:2}
"""

QUICK = """\
import sys
import sweepflow

x = int(sys.argv[1].split("=")[1])
if x < 0:
    sys.exit(f"x must not be negative, got {x}")
sweepflow.log_metrics({"y": x * x})
"""

SLOW = """\
import sys, time
from pathlib import Path

calls = Path(__file__).parent / "calls.log"
with calls.open("a") as f:
    f.write(f"start {sys.argv[1]}\\n")
time.sleep(1.5)
with calls.open("a") as f:
    f.write(f"end {sys.argv[1]}\\n")
"""


@dataclass
class Scenario:
    """The servers of the module's project, and what the tests learn on the way."""

    folder: Path
    prefect_port: int
    mlflow_port: int
    env: dict[str, str]
    up_output: str
    runs: dict[str, str] = field(default_factory=dict)  # label -> flow run id

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def store(self) -> str:
        return f"sqlite:///{self.folder / '.sweepflow' / 'mlflow.db'}"

    def run(self, *argv: str, cwd: Path | None = None, timeout: float = 300) -> Any:
        """Run a command (no shell) with the servers' environment."""
        return subprocess.run(
            list(argv),
            cwd=cwd or self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def sweepflow(self, *args: str, timeout: float = 300) -> Any:
        return self.run(sys.executable, "-m", "sweepflow", *args, timeout=timeout)

    def prefect(self, *args: str, cwd: Path | None = None) -> Any:
        return self.run(sys.executable, "-m", "prefect", *args, cwd=cwd)

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def start_run(self, deployment: str, *params: str) -> str:
        """``prefect deployment run`` with ``--param`` items; the new flow run's id."""
        argv = ["deployment", "run", deployment]
        for item in params:
            argv += ["--param", item]
        done = self.prefect(*argv)
        assert done.returncode == 0, done.stdout + done.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert match, done.stdout
        return match.group(1)

    def wait(self, flow_run_id: str, timeout: float = 240) -> Any:
        """The flow run once it reaches a final state (fails the test after timeout)."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state and flow_run.state.is_final():
                    return flow_run
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"flow run {flow_run_id} still {flow_run.state_name} after {timeout} s"
                    )
                time.sleep(1)

    def worker_pid(self) -> int:
        record = json.loads((self.folder / ".sweepflow" / "servers" / "servers.json").read_text())
        return int(record["worker"]["pid"])


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    folder = tmp_path_factory.mktemp("deployments") / "lab project"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(JOBS)
    (folder / "quick.py").write_text(QUICK)
    (folder / "slow.py").write_text(SLOW)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.pop("SWEEPFLOW_HOME", None)
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200", "NO_COLOR": "1"}
    source_root = str(Path(sweepflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    prefect_port, mlflow_port = free_ports(2)
    argv = [sys.executable, "-m", "sweepflow", "up"]
    argv += ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
    try:
        done = subprocess.run(
            argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"sweepflow up failed:\n{done.stdout}\n{done.stderr}"
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
        yield Scenario(folder, prefect_port, mlflow_port, env, done.stdout)
    finally:
        subprocess.run(
            [sys.executable, "-m", "sweepflow", "down"],
            cwd=folder,
            env=env,
            timeout=120,
            check=False,
        )


def test_up_prints_the_api_url_and_writes_the_env_file(scenario: Scenario) -> None:
    assert f"PREFECT_API_URL={scenario.api_url}" in scenario.up_output.splitlines()
    env_file = (scenario.folder / ".sweepflow" / "servers" / "env").read_text()
    assert f"export PREFECT_API_URL={scenario.api_url}" in env_file
    assert "export MLFLOW_TRACKING_URI=" in env_file


def test_sweepflow_deploy_registers_each_job_once_with_its_schedule(scenario: Scenario) -> None:
    dry = scenario.sweepflow("deploy", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "run-job/quick" in dry.stdout and "run-job/slow" in dry.stdout
    assert "next runs" not in dry.stdout  # nothing registered
    for _ in range(2):  # deploying again updates, never duplicates
        done = scenario.sweepflow("deploy")
        assert done.returncode == 0, done.stdout + done.stderr
    assert "next runs: " in done.stdout
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with scenario.client() as client:
        deployments = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["run-job"])), limit=50, offset=0
        )
        names = sorted(d.name for d in deployments)
        quick = client.read_deployment_by_name("run-job/quick")
    assert names.count("quick") == 1 and names.count("slow") == 1
    assert quick.parameters == {"job": "quick", "job_file": str(scenario.folder / "sweepflow.yaml")}
    assert quick.work_pool_name == "sweepflow"
    step = quick.pull_steps[0]["prefect.deployments.steps.set_working_directory"]
    assert step["directory"] == str(scenario.folder)
    assert [s.schedule.cron for s in quick.schedules] == ["0 3 * * *"]


def test_prefect_deploy_all_registers_the_repository_deployments(scenario: Scenario) -> None:
    done = scenario.prefect("--no-prompt", "deploy", "--all", cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    with scenario.client() as client:
        nightly = client.read_deployment_by_name("run-job/nightly-train")
        example = client.read_deployment_by_name("run-job/run-job")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 3 * * *"]
    assert example.work_pool_name == nightly.work_pool_name == "sweepflow"
    assert example.parameters["job"] == "job_sequential"
    assert "overrides" in example.parameter_openapi_schema["properties"]


def test_deployment_run_completes_with_trials_in_mlflow(scenario: Scenario) -> None:
    flow_run_id = scenario.start_run("run-job/quick", 'overrides=["x=1:4"]')
    flow_run = scenario.wait(flow_run_id)
    assert flow_run.state.is_completed(), flow_run.state.message
    scenario.runs["completed"] = flow_run_id
    scenario.runs["completed_name"] = flow_run.name
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with scenario.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    # The trials table, and the plot of a sweep with one varying numeric parameter.
    assert sorted(a.key for a in artifacts) == ["plot-quick", "trials-quick"]
    (table,) = [a for a in artifacts if a.key == "trials-quick"]
    assert len(table.data if isinstance(table.data, list) else json.loads(table.data)) == 4

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=scenario.store)
    experiment = client.get_experiment_by_name("quick")
    runs = client.search_runs([experiment.experiment_id], "tags.`sweepflow.trial` != ''")
    finished = sorted(r.data.metrics["y"] for r in runs if r.info.status == "FINISHED")
    assert finished == [1.0, 4.0, 9.0, 16.0]


def test_a_search_runs_as_a_deployment(scenario: Scenario) -> None:
    """`sweepflow deploy` registered run-job/search; the run-job flow runs its search,
    with the best trial and the history plot as artifacts."""
    flow_run = scenario.wait(scenario.start_run("run-job/search"))
    assert flow_run.state.is_completed(), flow_run.state.message
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with scenario.client() as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
        optimize = client.read_deployment_by_name("optimize/tune")
    by_key = {a.key: a for a in artifacts}
    scenario.runs["search_artifact"] = str(by_key["best-search"].id)
    assert set(by_key) == {"best-search", "trials-search"}
    best = by_key["best-search"].data
    assert "Best trial of `search`" in best and "| x | 0 |" in best
    assert "data:image/png;base64," in best  # the optimisation history, inline
    import optuna

    journal = scenario.folder / ".sweepflow" / "studies" / "search.journal"
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study = optuna.load_study(study_name="search", storage=storage)
    assert sorted(t.params["x"] for t in study.trials) == [0, 1, 2]
    assert study.best_value == 0
    # The optimize flow's own deployment (prefect.yaml) takes the search's parameters.
    assert {"n_trials", "storage"} <= set(optimize.parameter_openapi_schema["properties"])


def test_sweepflow_run_reports_to_the_project_server(scenario: Scenario) -> None:
    env = {k: v for k, v in scenario.env.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "sweepflow", "run", "quick", "x=7"],
        cwd=scenario.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(rf"{scenario.ui_url}/runs/flow-run/([0-9a-f-]{{36}})", done.stderr)
    assert match, done.stderr
    with scenario.client() as client:
        flow_run = client.read_flow_run(match.group(1))
    assert flow_run.state.is_completed() and flow_run.parameters["overrides"] == ["x=7"]


def test_invalid_parameters_are_rejected_when_the_run_is_created(scenario: Scenario) -> None:
    with scenario.client() as client:
        before = len(_runs(client, "quick"))
    done = scenario.prefect("deployment", "run", "run-job/quick", "--param", "overrides=5")
    out = " ".join((done.stdout + done.stderr).split())
    assert "Validation failed for field 'overrides'" in out
    with scenario.client() as client:
        assert len(_runs(client, "quick")) == before  # no flow run was created


def test_a_failing_flow_run_fails_and_the_worker_goes_on(scenario: Scenario) -> None:
    failing = scenario.wait(scenario.start_run("run-job/quick", 'overrides=["x=-1"]'))
    assert failing.state.is_failed()
    assert psutil.pid_exists(scenario.worker_pid())
    after = scenario.wait(scenario.start_run("run-job/quick", 'overrides=["x=2"]'))
    assert after.state.is_completed(), after.state.message  # a cache hit of the first run


def test_the_schedule_produced_runs_and_a_scheduled_run_executes(scenario: Scenario) -> None:
    from prefect.states import Scheduled

    with scenario.client() as client:
        scheduled = [r for r in _runs(client, "quick") if r.state_type.value == "SCHEDULED"]
        assert scheduled, "the cron schedule produced no scheduled flow runs"
        first = min(scheduled, key=lambda r: r.expected_start_time)
        assert (first.expected_start_time.hour, first.expected_start_time.minute) == (3, 0)
        assert first.expected_start_time > datetime.now(UTC)
        # Instead of waiting for 03:00: the same scheduled run, due now.
        client.set_flow_run_state(first.id, Scheduled(scheduled_time=datetime.now(UTC)), force=True)
    flow_run = scenario.wait(str(first.id))
    assert flow_run.state.is_completed(), flow_run.state.message
    assert flow_run.auto_scheduled


def test_a_killed_worker_crashes_its_flow_run_and_the_rerun_resumes(scenario: Scenario) -> None:
    calls = scenario.folder / "calls.log"
    flow_run_id = scenario.start_run("run-job/slow")
    deadline = time.monotonic() + 180
    while _ended(calls) < 2:
        assert time.monotonic() < deadline, "no slow trial finished in time"
        time.sleep(0.2)
    os.kill(scenario.worker_pid(), signal.SIGKILL)
    crashed = scenario.wait(flow_run_id, timeout=60)
    assert crashed.state.is_crashed(), crashed.state
    finished_before = {
        line.split()[1] for line in calls.read_text().splitlines() if line.startswith("end")
    }

    up = scenario.sweepflow(
        "up",
        "--prefect-port",
        str(scenario.prefect_port),
        "--mlflow-port",
        str(scenario.mlflow_port),
    )
    assert up.returncode == 0, up.stdout + up.stderr
    rerun = scenario.wait(scenario.start_run("run-job/slow"))
    assert rerun.state.is_completed(), rerun.state.message
    lines = calls.read_text().splitlines()
    starts = [line.split()[1] for line in lines if line.startswith("start")]
    ends = {line.split()[1] for line in lines if line.startswith("end")}
    assert ends == {f"x={i}" for i in range(1, 9)}
    for item in finished_before:  # finished before the kill: cached, not run again
        assert starts.count(item) == 1, (item, starts)


def test_the_uis_show_the_flow_run_and_the_experiment(scenario: Scenario, browser: Any) -> None:
    from browser import screenshot_dir

    flow_run_id = scenario.runs["completed"]
    name = scenario.runs["completed_name"]
    browser.open(f"{scenario.ui_url}/runs/flow-run/{flow_run_id}")
    browser.wait_for_text(name, "Finished in state Completed", timeout=90)
    assert (
        browser.evaluate("document.querySelectorAll('.state-badge.state--completed').length") >= 1
    )
    assert name in browser.evaluate("document.title")
    browser.screenshot(screenshot_dir() / "prefect-flow-run.png")

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=scenario.store)
    experiment = client.get_experiment_by_name("quick")
    children = [
        r.info.run_name
        for r in client.search_runs([experiment.experiment_id], "tags.`sweepflow.trial` != ''")
    ]
    browser.open(
        f"http://127.0.0.1:{scenario.mlflow_port}/#/experiments/{experiment.experiment_id}/runs"
    )
    browser.wait_for_text("quick", timeout=120)
    time.sleep(1)
    browser.screenshot(screenshot_dir() / "mlflow-experiment.png")
    text = browser.text()
    match = re.search(r"(\d+) matching runs", text)
    assert match, text[-2000:]
    assert int(match.group(1)) >= len(children) >= 4

    # The search's best-trial artifact shows its history plot (an inline PNG).
    browser.open(f"{scenario.ui_url}/artifacts/artifact/{scenario.runs['search_artifact']}")
    browser.wait_for_text("Best trial of", timeout=90)
    time.sleep(1)
    images = "[...document.images].filter(i => i.src.startsWith('data:image/png'))"
    assert browser.evaluate(f"{images}.length") >= 1
    assert browser.evaluate(f"{images}[0].naturalWidth") > 200  # decoded, not broken
    browser.screenshot(screenshot_dir() / "prefect-best-trial.png")


def test_down_stops_every_process_up_started(scenario: Scenario) -> None:
    record = json.loads((scenario.folder / ".sweepflow" / "servers" / "servers.json").read_text())
    pids = [
        int(entry["pid"]) for entry in record.values() if isinstance(entry, dict) and "pid" in entry
    ]
    done = scenario.sweepflow("down")
    assert done.returncode == 0, done.stderr
    assert not [
        pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
    ]
    status = scenario.sweepflow("status")
    assert "running" not in status.stdout


def _runs(client: Any, deployment: str) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        limit=100,
    )


def _ended(calls: Path) -> int:
    if not calls.exists():
        return 0
    return sum(line.startswith("end") for line in calls.read_text().splitlines())
