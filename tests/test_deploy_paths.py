"""End to end: deployments run wherever ``sweepflow up`` was started, and a failed or
crashed deployment run's cause reaches ``sweepflow status``.

The code (the folder that holds ``flows/``) is not the project (the job file's folder):
``prefect.yaml``'s pull step enters the code, ``sweepflow deploy``'s the job's folder.
Two real ``sweepflow up`` (Prefect server and worker, no MLflow UI) on free ports: one
started at the repository root, one in a job file's folder of its own. Each keeps its
state in a temporary ``SWEEPFLOW_HOME``, so the examples' runs leave nothing in the
repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sweepflow
from sweepflow.services.files import free_ports

pytestmark = [pytest.mark.servers, pytest.mark.timeout(900)]

REPO = Path(sweepflow.__file__).resolve().parents[2]

JOBS = """\
jobs:
  quick:
    run: python quick.py
    sets:
      - all: x=1:2
"""

QUICK = """\
import sys
import sweepflow

sweepflow.log_metrics({"y": int(sys.argv[1].split("=")[1]) ** 2})
"""


@dataclass
class Servers:
    """The servers ``sweepflow up`` started in ``cwd``, and how to talk to them."""

    cwd: Path
    env: dict[str, str]
    api_url: str

    def command(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=cwd or self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def sweepflow(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.command(sys.executable, "-m", "sweepflow", *argv, cwd=cwd)

    def prefect(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return self.command(sys.executable, "-m", "prefect", *argv, cwd=cwd)

    def run(self, deployment: str, *params: str) -> Any:
        """Start ``deployment`` with ``prefect deployment run``; its final flow run."""
        argv = ["deployment", "run", deployment]
        for item in params:
            argv += ["--param", item]
        done = self.prefect(*argv, cwd=REPO)
        assert done.returncode == 0, done.stdout + done.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert match, done.stdout
        return self.wait(match.group(1))

    def wait(self, flow_run_id: str, timeout: float = 240) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        deadline = time.monotonic() + timeout
        with SyncPrefectClient(self.api_url) as client:
            while True:
                flow_run = client.read_flow_run(flow_run_id)
                if flow_run.state and flow_run.state.is_final():
                    return flow_run
                if time.monotonic() > deadline:
                    pytest.fail(f"flow run {flow_run_id} still {flow_run.state_name}")
                time.sleep(1)


@contextlib.contextmanager
def _servers(cwd: Path, home: Path) -> Iterator[Servers]:
    """``sweepflow up --no-mlflow`` in ``cwd`` (state in ``home``); ``down`` after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.pop("SWEEPFLOW_PROJECT_DIR", None)
    env |= {"SWEEPFLOW_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env |= {"COLUMNS": "400", "NO_COLOR": "1"}
    (port,) = free_ports(1)
    servers = Servers(cwd, env, f"http://127.0.0.1:{port}/api")
    try:
        done = servers.sweepflow("up", "--no-mlflow", "--prefect-port", str(port))
        assert done.returncode == 0, f"sweepflow up failed:\n{done.stdout}\n{done.stderr}"
        # What `source <state>/servers/env` gives a shell; `sweepflow` needs none of it.
        servers.env = {**env, "PREFECT_API_URL": servers.api_url}
        yield servers
    finally:
        subprocess.run(
            [sys.executable, "-m", "sweepflow", "down"], cwd=cwd, env=env, timeout=120, check=False
        )


@pytest.fixture(scope="module")
def at_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with _servers(REPO, tmp_path_factory.mktemp("root-home")) as servers:
        yield servers


@pytest.fixture(scope="module")
def in_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("job-folder") / "my lab"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(JOBS)
    (folder / "quick.py").write_text(QUICK)
    with _servers(folder, tmp_path_factory.mktemp("folder-home")) as servers:
        yield servers


def _prefect_yaml_run_completes(servers: Servers) -> None:
    """``prefect deploy --all`` from the repository root; run-job/run-job (the examples'
    job_sequential, job file relative to the root) completes."""
    done = servers.prefect("--no-prompt", "deploy", "--all", cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    flow_run = servers.run("run-job/run-job")
    assert flow_run.state.is_completed(), flow_run.state.message
    assert flow_run.parameters["job_file"] == "examples/sweepflow.yaml"


def test_deployments_complete_when_up_ran_at_the_repository_root(at_root: Servers) -> None:
    _prefect_yaml_run_completes(at_root)
    # `sweepflow deploy` of the examples' job file, from the root.
    done = at_root.sweepflow("deploy", "job_sequential", "-f", "examples/sweepflow.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"working directory: {REPO / 'examples'}" in done.stdout
    flow_run = at_root.run("run-job/job_sequential")
    assert flow_run.state.is_completed(), flow_run.state.message


def test_deployments_complete_when_up_ran_in_a_job_file_folder(in_folder: Servers) -> None:
    _prefect_yaml_run_completes(in_folder)
    done = in_folder.sweepflow("deploy")  # the folder's own job file
    assert done.returncode == 0, done.stdout + done.stderr
    flow_run = in_folder.run("run-job/quick")
    assert flow_run.state.is_completed(), flow_run.state.message


def test_status_says_why_deployment_runs_failed_or_crashed(in_folder: Servers) -> None:
    quiet = in_folder.sweepflow("status")
    assert quiet.returncode == 0, quiet.stderr
    assert "Recent failed deployment runs" not in quiet.stdout

    # Failed: the flow ran and refused a job file that is not there.
    done = in_folder.sweepflow("deploy")
    assert done.returncode == 0, done.stdout + done.stderr
    failed = in_folder.run("run-job/quick", "job_file=missing/sweepflow.yaml")
    assert failed.state.is_failed()
    # sweepflow deploy's runs start in the job file's folder: a relative path is from there.
    assert f"no job file at {in_folder.cwd / 'missing' / 'sweepflow.yaml'}" in failed.state.message

    # Crashed before the flow code ran: a deployment laid out as prefect.yaml's used to
    # be, entering the project folder, where there is no flows/run_job.py.
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(in_folder.api_url) as client:
        client.create_deployment(
            flow_id=client.create_flow_from_name("run-job"),
            name="old-layout",
            entrypoint="flows/run_job.py:run_job",
            work_pool_name="sweepflow",
            parameters={"job": "quick"},
            pull_steps=[
                {
                    "prefect.deployments.steps.set_working_directory": {
                        "directory": str(in_folder.cwd)
                    }
                }
            ],
        )
    crashed = in_folder.run("run-job/old-layout")
    assert crashed.state.is_crashed(), crashed.state

    status = in_folder.sweepflow("status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    heading = lines.index(
        "Recent failed deployment runs (newest first; details: prefect flow-run logs ID):"
    )
    listed = lines[heading + 1 :]
    assert len(listed) == 2, status.stdout
    crash_line, fail_line = listed  # newest first
    assert crash_line.split()[:2] == ["CRASHED", "run-job/old-layout"]
    assert str(crashed.id) in crash_line
    assert f"looked for {in_folder.cwd / 'flows' / 'run_job.py'}" in crash_line
    assert "FileNotFoundError" in crash_line and "prefect --no-prompt deploy --all" in crash_line
    assert fail_line.split()[:2] == ["FAILED", "run-job/quick"]
    assert "JobFileError: no job file at" in fail_line
