"""What ``sweepflow run`` leaves behind, and what it refuses before it starts: real
processes, real signals.

- SIGKILL of the driver takes its temporary Prefect server (and trials) with it.
- A failed run while ``sweepflow up`` runs starts no server of its own: the terminal's
  pipe closes when the driver exits, and the trials' output lands in the project's server.
- The run's logs reach the Prefect API before its temporary server stops.
- A read-only state folder, a damaged or a locked MLflow store: one line naming it,
  before Prefect starts, and nothing written.

Each Prefect test has a ``PREFECT_HOME`` of its own; whatever still runs with it at the
end (a leaked server) is killed by the fixture, after the test has failed on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from processes import ours, wait_for

import sweepflow
from sweepflow.execution.lifetime import popen_for_life, with_parent_death
from sweepflow.services.files import free_ports

SOURCE_ROOT = str(Path(sweepflow.__file__).resolve().parents[1])
# The console script's own entry (its quick exit included), as a user's shell runs it.
ENTRY = [sys.executable, "-c", "from sweepflow.cli.main import entry; entry()"]
SERVER = "prefect.server.api.server:create_app"  # in the temporary server's command line
PDEATHSIG = with_parent_death(["true"], ".", os.environ) != ["true"]
needs_pdeathsig = pytest.mark.skipif(not PDEATHSIG, reason="no setpriv --pdeathsig (Linux)")

JOBS = """
jobs:
  slow:
    run: python -c "import time; time.sleep(120)"
    sets:
      - each: a=1,2
  quick:
    run: python -c "print('hello from the trial')"
  fails:
    run: python -c "import sys; print('output of a failing trial', file=sys.stderr); sys.exit(3)"
"""

_CLEARED = (
    "PREFECT_API_URL",
    "PREFECT_PROFILE",
    "SWEEPFLOW_HOME",
    "SWEEPFLOW_DATABASE",
    "SWEEPFLOW_PREFECT_PORT",
    "SWEEPFLOW_MLFLOW_PORT",
    "MLFLOW_TRACKING_URI",
)


def _environment(prefect_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    env |= {"PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env |= {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "COLUMNS": "200"}
    # The run's own temporary server, not the warm one (tests/test_warm_server.py).
    env["SWEEPFLOW_SERVER_IDLE"] = "0"
    return env | extra


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "my project"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(textwrap.dedent(JOBS).lstrip())
    return folder


def _command_line(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


# ---------------------------------------------------------------------------
# Child processes die with the driver
# ---------------------------------------------------------------------------


@needs_pdeathsig
def test_popen_for_life_outlives_the_thread_that_asked_not_the_process() -> None:
    helper = textwrap.dedent(
        """
        import os, sys, threading
        from sweepflow.execution.lifetime import popen_for_life
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

        def start():
            print(popen_for_life(sleeper, ".", dict(os.environ)).pid, flush=True)

        thread = threading.Thread(target=start)
        thread.start()
        thread.join()  # the thread that started it has ended
        sys.stdin.read()
        """
    )
    env = _environment(Path(tempfile.gettempdir()))
    driver = subprocess.Popen(
        [sys.executable, "-c", helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        assert driver.stdout is not None
        child = psutil.Process(int(driver.stdout.readline()))
        time.sleep(1.0)
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        driver.send_signal(signal.SIGKILL)
        _, alive = psutil.wait_procs([child], timeout=5)
        assert not alive, "the program outlived its SIGKILLed driver"
    finally:
        driver.kill()
        driver.wait()


def test_popen_for_life_from_the_main_thread(tmp_path: Path) -> None:
    process = popen_for_life(["true"], tmp_path, dict(os.environ))
    assert process.wait(timeout=10) == 0


@pytest.mark.slow
@needs_pdeathsig
def test_sigkill_of_run_takes_its_prefect_server_and_trials(
    project: Path, prefect_home: Path
) -> None:
    log = (project / "driver.log").open("wb")
    driver = subprocess.Popen(
        [*ENTRY, "run", "slow"], cwd=project, env=_environment(prefect_home), stdout=log, stderr=log
    )
    me = psutil.Process(driver.pid)
    try:

        def started() -> list[psutil.Process]:
            children = me.children(recursive=True)
            lines = [_command_line(c) for c in children]
            server = any(SERVER in line for line in lines)
            trials = sum("time.sleep(120)" in line for line in lines)
            return children if server and trials == 2 else []

        children = wait_for(started, 120, "a Prefect server and two trials under the driver")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        _, alive = psutil.wait_procs(children, timeout=5)
        left = [f"{p.pid}: {_command_line(p)[:120]}" for p in alive]
        assert not left, "still running 5 s after SIGKILL of the driver:\n" + "\n".join(left)
    finally:
        driver.kill()
        driver.wait()
        log.close()


# ---------------------------------------------------------------------------
# With `sweepflow up`: no temporary server, the pipe closes, the logs land there
# ---------------------------------------------------------------------------


def _api_logs(api: str) -> list[str]:
    request = urllib.request.Request(
        f"{api}/logs/filter",
        data=json.dumps({"limit": 200}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [entry["message"] for entry in json.load(response)]


@pytest.mark.slow
@pytest.mark.servers
def test_failed_run_beside_sweepflow_up_starts_no_server(project: Path, prefect_home: Path) -> None:
    port = free_ports(1)[0]
    env = _environment(prefect_home, SWEEPFLOW_PREFECT_PORT=str(port))
    up = subprocess.run(
        [*ENTRY, "up", "--no-mlflow"], cwd=project, env=env, capture_output=True, timeout=180
    )
    assert up.returncode == 0, up.stderr.decode()
    try:
        # `| cat`: the run's stdout and stderr are one pipe, read until every holder closes it.
        run = subprocess.Popen(
            [*ENTRY, "run", "fails"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = run.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            run.kill()
            holders = [_command_line(p)[:120] for p in ours(prefect_home)]
            raise AssertionError(
                "the pipe of `sweepflow run` stayed open after the run; held by:\n"
                + "\n".join(holders)
            ) from None
        text = output.decode(errors="replace")
        assert run.returncode == 1, text
        assert "Error logging to API" not in text
        temporary = [p for p in ours(prefect_home) if SERVER in _command_line(p)]
        assert not temporary, "a temporary Prefect server was started beside `sweepflow up`"
        # The trial's output, logged from its output thread, went to the project's server.
        logs = _api_logs(f"http://127.0.0.1:{port}/api")
        assert any("output of a failing trial" in message for message in logs)
    finally:
        subprocess.run([*ENTRY, "down"], cwd=project, env=env, capture_output=True, timeout=60)


# ---------------------------------------------------------------------------
# Logs reach the temporary server before it stops
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_every_run_logs_reach_the_temporary_api(project: Path, prefect_home: Path) -> None:
    env = _environment(prefect_home)
    runs = 5
    for _ in range(runs):
        done = subprocess.run(
            [*ENTRY, "run", "quick", "--refresh"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        assert "Error logging to API" not in done.stdout + done.stderr, done.stderr
    # The temporary servers are gone; what they were sent is in their database.
    with contextlib.closing(sqlite3.connect(prefect_home / "prefect.db")) as db:
        flow_runs = [row[0] for row in db.execute("SELECT id FROM flow_run")]
        finished = {
            row[0]
            for row in db.execute(
                "SELECT flow_run_id FROM log WHERE message LIKE 'Finished in state%'"
            )
        }
        trial_output = db.execute(
            "SELECT count(*) FROM log WHERE message LIKE '%hello from the trial%'"
        ).fetchone()[0]
    assert len(flow_runs) == runs
    assert finished >= set(flow_runs), "flow runs without their last log in the API"
    assert trial_output == runs


# ---------------------------------------------------------------------------
# Refused before anything starts
# ---------------------------------------------------------------------------


def _run_fast(project: Path, prefect_home: Path, *prefix: str, **extra: str) -> tuple[int, str]:
    """``sweepflow run quick`` expected to stop before Prefect starts: (code, stderr)."""
    started = time.monotonic()
    done = subprocess.run(
        [*prefix, *ENTRY, "run", "quick"],
        cwd=project,
        env=_environment(prefect_home, **extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 20, "took as long as starting Prefect"
    assert not ours(prefect_home)
    assert not (prefect_home / "prefect.db").exists(), "Prefect started"
    return done.returncode, done.stderr


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A project folder another user can reach (pytest's own tmp folders are 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="sweepflow read-only "))
    folder.chmod(0o755)
    (folder / "sweepflow.yaml").write_text(textwrap.dedent(JOBS).lstrip())
    (folder / "sweepflow.yaml").chmod(0o644)
    yield folder
    for path in (folder, *folder.rglob("*")):
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder)


def _as_another_user() -> list[str]:
    """Run as ``nobody`` where this is root (root writes anywhere); else as is."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root, and no setpriv to run as another user")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize(
    "state_exists", [False, True], ids=["project-read-only", "state-read-only"]
)
def test_read_only_state_folder_is_one_line_at_once(
    open_folder: Path, tmp_path: Path, state_exists: bool
) -> None:
    prefix = _as_another_user()
    state = open_folder / ".sweepflow"
    if state_exists:
        state.mkdir()
    read_only = state if state_exists else open_folder
    read_only.chmod(0o555)
    home = Path(tempfile.mkdtemp(prefix="prefect-home "))  # `nobody` may not reach tmp_path
    home.chmod(0o777)
    try:
        code, stderr = _run_fast(open_folder, home, *prefix, HOME=str(home))
    finally:
        shutil.rmtree(home)
    line = _one_error_line(stderr)
    assert code != 0
    assert str(read_only) in line and "read-only" in line and "SWEEPFLOW_HOME" in line
    assert state.exists() == state_exists


def _store(folder: Path) -> Path:
    """A small SQLite store in WAL mode, as sweepflow makes them (a few pages)."""
    path = folder / ".sweepflow" / "mlflow.db"
    path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE alembic_version (version_num TEXT)")
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO runs (name) VALUES (?)", [("x" * 200,)] * 200)
        db.commit()
    return path


@pytest.mark.parametrize("offset", [0, 100, 8192], ids=["header", "first-page", "a-table"])
def test_damaged_store_is_one_line_naming_it(
    project: Path, prefect_home: Path, offset: int
) -> None:
    store = _store(project)
    with store.open("r+b") as file:
        file.seek(offset)
        file.write(b"garbage!" * 64)
    before = store.read_bytes()
    listing = sorted(p.name for p in store.parent.iterdir())
    code, stderr = _run_fast(project, prefect_home)
    line = _one_error_line(stderr)
    assert code != 0
    assert str(store) in line and "damaged" in line and "move it aside" in line
    assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == listing, "something was written"


def test_locked_store_is_one_line_naming_it(project: Path, prefect_home: Path) -> None:
    store = _store(project)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "db.execute(\"INSERT INTO alembic_version VALUES ('x')\")\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        uri = f"sqlite:///{store}?timeout=2"  # MLflow's and the check's wait for the lock
        code, stderr = _run_fast(project, prefect_home, MLFLOW_TRACKING_URI=uri)
    finally:
        holder.kill()
        holder.wait()
    line = _one_error_line(stderr)
    assert code != 0
    assert str(store) in line and "locked by another process" in line
