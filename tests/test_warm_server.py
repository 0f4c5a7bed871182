"""The warm Prefect server that ``sweepflow run`` starts without ``sweepflow up``.

Real processes throughout: the console script as a user's shell runs it, the supervisor
and Prefect's server, ``sweepflow status`` / ``down`` / ``up``. Each test has a Prefect
home of its own; whatever carries it in its environment is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from processes import named, ours, wait_for

from sweepflow.services.files import free_ports
from sweepflow.services.warm_server import IdleSettingError, idle_seconds

pytestmark = [pytest.mark.slow, pytest.mark.servers]

SOURCE_ROOT = str(Path(__file__).resolve().parents[1] / "src")
ENTRY = [sys.executable, "-c", "from sweepflow.cli.main import entry; entry()"]
SERVER = "prefect.server.api.server:create_app"
SUPERVISOR = "sweepflow.services.warm_server"

JOBS = """
jobs:
  quick:
    run: python -c "print('hello from the trial')"
  slow:
    run: python -c "import time; time.sleep(6)"
  hang:
    run: python -c "import time; time.sleep(120)"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "my project"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(textwrap.dedent(JOBS).lstrip())
    return folder


def _env(home: Path, **extra: str) -> dict[str, str]:
    cleared = ("PREFECT_API_URL", "PREFECT_PROFILE", "SWEEPFLOW_HOME", "MLFLOW_TRACKING_URI")
    env = {
        k: v for k, v in os.environ.items() if k not in cleared and not k.startswith("SWEEPFLOW_")
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    env |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env |= {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "COLUMNS": "200"}
    return env | extra


def _sweepflow(
    project: Path, home: Path, *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ENTRY, *args], cwd=project, env=_env(home, **extra), capture_output=True, text=True,
        timeout=240, check=False,
    )  # fmt: skip


def _record(project: Path) -> dict[str, object]:
    path = project / ".sweepflow" / "servers" / "warm.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_idle_time_is_a_duration_or_one_line() -> None:
    assert idle_seconds("45") == 45.0
    assert idle_seconds("2 m") == 120.0
    with pytest.raises(IdleSettingError, match=r"SWEEPFLOW_SERVER_IDLE='soon' is not a duration"):
        idle_seconds("soon")


def test_second_run_reuses_the_warm_server_shown_by_status_and_stopped_by_down(
    project: Path, prefect_home: Path
) -> None:
    first = _sweepflow(project, prefect_home, "run", "quick")
    assert first.returncode == 0, first.stderr
    record = _record(project)
    assert record, "no warm server recorded after the first run"
    links = re.findall(r"Prefect: (http://127\.0\.0\.1:\d+)/runs/flow-run/", first.stderr)
    assert links == [record["url"]], first.stderr  # a link that stays valid after the run

    status = _sweepflow(project, prefect_home, "status")
    assert re.search(rf"Prefect \(warm\)\s*│\s*running\s*│\s*{record['pid']}", status.stdout)
    assert "stops after 20 min 00 s without a run" in status.stdout

    second = _sweepflow(project, prefect_home, "run", "quick", "--refresh")
    assert second.returncode == 0, second.stderr
    assert _record(project)["pid"] == record["pid"], "the second run started another server"
    assert len(named(prefect_home, SERVER)) == 1
    for done in (first, second):
        assert "Error logging to API" not in done.stdout + done.stderr
    # Both runs, with their trial's output, are in the warm server's database.
    database = project / ".sweepflow" / "servers" / "prefect.db"
    with contextlib.closing(sqlite3.connect(database)) as db:
        runs = db.execute("SELECT count(*) FROM flow_run").fetchone()[0]
        said = db.execute("SELECT count(*) FROM log WHERE message LIKE '%hello from the trial%'")
        assert (runs, said.fetchone()[0]) == (2, 2)

    down = _sweepflow(project, prefect_home, "down")
    assert "Prefect (warm): stopped" in down.stdout
    wait_for(lambda: not named(prefect_home, SERVER), 15, "the warm server gone after down")
    wait_for(lambda: not named(prefect_home, SUPERVISOR), 10, "its supervisor gone too")
    assert "Prefect (warm)" not in _sweepflow(project, prefect_home, "status").stdout


def test_an_unused_server_stops_after_the_idle_time_not_during_a_run(
    project: Path, prefect_home: Path
) -> None:
    run = subprocess.Popen(
        [*ENTRY, "run", "slow"], cwd=project, env=_env(prefect_home, SWEEPFLOW_SERVER_IDLE="1s"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = run.communicate(timeout=240)  # the pipe closes: the server does not hold it
    assert run.returncode == 0, output.decode()
    # The trial took 6 s, far past the idle time: the server was kept while the run held
    # its lease (the run would have failed reporting its end otherwise).
    assert b"Error logging to API" not in output
    wait_for(lambda: not named(prefect_home, SERVER), 20, "the server stopped once idle")
    wait_for(lambda: not named(prefect_home, SUPERVISOR), 10, "its supervisor gone too")
    assert not _record(project)
    assert not (project / ".sweepflow" / "servers" / "warm.pid").exists()
    # The next run starts a fresh one.
    again = _sweepflow(project, prefect_home, "run", "quick", SWEEPFLOW_SERVER_IDLE="1s")
    assert again.returncode == 0, again.stderr


def test_a_killed_driver_frees_the_server_and_a_killed_supervisor_takes_it_along(
    project: Path, prefect_home: Path
) -> None:
    driver = subprocess.Popen(
        [*ENTRY, "run", "hang"], cwd=project, env=_env(prefect_home, SWEEPFLOW_SERVER_IDLE="3s"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: named(prefect_home, "time.sleep(120)"), 120, "the trial running")
        time.sleep(4)  # past the idle time: held by the run
        assert named(prefect_home, SERVER), "the server stopped while a run used it"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # The kernel dropped the run's lease: the server stops after its idle time.
        wait_for(lambda: not named(prefect_home, SERVER), 30, "the server stopped once idle")
        assert not named(prefect_home, "time.sleep(120)"), "the trial outlived its driver"
    finally:
        driver.kill()
        driver.wait()

    # A supervisor that dies however it dies takes its server along.
    first = _sweepflow(project, prefect_home, "run", "quick")
    assert first.returncode == 0, first.stderr
    supervisor = psutil.Process(int(_record(project)["pid"]))  # type: ignore[call-overload]
    server = psutil.Process(int(_record(project)["server_pid"]))  # type: ignore[call-overload]
    supervisor.kill()
    _, alive = psutil.wait_procs([server], timeout=10)
    assert not alive, "the Prefect server outlived its supervisor"
    # status sees the stale pid file for what it is; the next run starts a new server.
    assert re.search(
        r"Prefect \(warm\)\s*│\s*stopped", _sweepflow(project, prefect_home, "status").stdout
    )
    assert _sweepflow(project, prefect_home, "run", "quick", "--refresh").returncode == 0


def test_up_takes_over_from_an_unused_warm_server(project: Path, prefect_home: Path) -> None:
    assert _sweepflow(project, prefect_home, "run", "quick").returncode == 0
    assert named(prefect_home, SUPERVISOR)
    port = free_ports(1)[0]
    up = _sweepflow(project, prefect_home, "up", "--no-mlflow", "--no-worker",
                    SWEEPFLOW_PREFECT_PORT=str(port))  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr
        wait_for(lambda: not named(prefect_home, SUPERVISOR), 15, "the warm server stopped")
        run = _sweepflow(project, prefect_home, "run", "quick", "--refresh")
        assert f"Prefect: http://127.0.0.1:{port}/runs/flow-run/" in run.stderr, run.stderr
        assert not named(prefect_home, SUPERVISOR), "a warm server started beside `up`"
        # The lasting server has the warm one's database: the earlier run is there too.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/flow_runs/count", data=b"{}",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response) == 2
    finally:
        _sweepflow(project, prefect_home, "down")


def test_a_bad_idle_time_is_one_line_before_anything_starts(
    project: Path, prefect_home: Path
) -> None:
    done = _sweepflow(project, prefect_home, "run", "quick", SWEEPFLOW_SERVER_IDLE="later")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: SWEEPFLOW_SERVER_IDLE='later' is not a duration: write e.g. 20m, 90s or 1h, "
        "or 0 for a Prefect server of each run's own"
    ]
    assert not ours(prefect_home)
