"""Tests of ``sweepflow up / down / status``: real Prefect and MLflow servers, no mocks.

The servers start once for the module (a cold start takes 30-60 s on two cores), in
a project folder whose path holds a space, from a ``python -m sweepflow up`` child
process that exits, so the tests also see that the servers outlive it. The tests
after that run in file order: status, idempotent ``up``, restart of a missing
worker, then ``down``. A few tests use a fresh project of their own and start nothing
(busy port, a pid file naming a process sweepflow did not start) or fail on purpose (a
store MLflow cannot open). PostgreSQL: ``tests/test_postgres.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import sweepflow
from sweepflow.cli.main import main
from sweepflow.services import servers
from sweepflow.services.files import free_ports
from sweepflow.tracking.uri import default_tracking_uri, ensure_experiment

pytestmark = pytest.mark.servers

_ENV = ("SWEEPFLOW_HOME", "MLFLOW_TRACKING_URI", "SWEEPFLOW_PREFECT_PORT", "SWEEPFLOW_MLFLOW_PORT")


def get(url: str, timeout: float = 5) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        return response.read()


def record(folder: Path) -> dict:
    return json.loads((folder / ".sweepflow" / "servers" / "servers.json").read_text())


def table_rows(out: str) -> dict[str, list[str]]:
    """Rows of a rich table by their first cell."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


@dataclass(frozen=True)
class Started:
    folder: Path
    prefect_port: int
    mlflow_port: int
    up: subprocess.CompletedProcess[str]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    def port_args(self) -> list[str]:
        return ["--prefect-port", str(self.prefect_port), "--mlflow-port", str(self.mlflow_port)]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """The project's servers, started by ``sweepflow up`` in a child process."""
    folder = tmp_path_factory.mktemp("servers") / "my project"
    folder.mkdir()
    prefect_port, mlflow_port = free_ports(2)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("COLUMNS", "300")
        for name in _ENV:
            patch.delenv(name, raising=False)
        env = dict(os.environ)
        source_root = str(Path(sweepflow.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", "sweepflow", "up"]
        argv += ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
        try:
            done = subprocess.run(
                argv, cwd=folder, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            assert done.returncode == 0, f"sweepflow up failed:\n{done.stdout}\n{done.stderr}"
            yield Started(folder, prefect_port, mlflow_port, done)
        finally:
            servers.down(folder)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``sweepflow ARGS`` in-process; return (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder (no job file) as the working directory."""
    folder = tmp_path / "other project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return folder


# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------


def test_up_prints_urls(started: Started) -> None:
    lines = started.up.stdout.splitlines()
    assert f"PREFECT_API_URL={started.api_url}" in lines
    assert any(
        line.startswith("MLflow UI: started") and started.mlflow_url in line for line in lines
    )
    assert any(line.startswith("Prefect worker: started") for line in lines)


def test_servers_answer_and_outlive_up(started: Started) -> None:
    assert get(f"{started.api_url}/health") == b"true"
    assert get(f"{started.mlflow_url}/health") == b"OK"
    assert servers.configured_api_url(started.folder) == started.api_url


def test_env_file_sets_both_urls(started: Started) -> None:
    env_file = started.folder / ".sweepflow" / "servers" / "env"
    script = (
        f'source {shlex.quote(str(env_file))}; echo "$PREFECT_API_URL"; echo "$MLFLOW_TRACKING_URI"'
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")
    }
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [started.api_url, default_tracking_uri(started.folder)]


def test_servers_json_records_ports_urls_pids(started: Started) -> None:
    data = record(started.folder)
    assert (data["prefect"]["port"], data["prefect"]["api_url"]) == (
        started.prefect_port,
        started.api_url,
    )
    assert (data["mlflow"]["port"], data["mlflow"]["url"]) == (
        started.mlflow_port,
        started.mlflow_url,
    )
    assert data["worker"]["pool"] == "sweepflow"
    assert data["database"] is None  # SQLite files
    for name in ("prefect", "worker", "mlflow"):
        pid_file = started.folder / ".sweepflow" / "servers" / f"{name}.pid"
        pid, created, marker = pid_file.read_text().splitlines()
        assert (int(pid), float(created), marker) == (
            data[name]["pid"],
            data[name]["started"],
            data[name]["marker"],
        )
        process = psutil.Process(data[name]["pid"])
        assert process.cmdline() == data[name]["argv"]
        assert process.environ()["SWEEPFLOW_SERVICE"] == marker
        assert marker.startswith(f"{started.folder / '.sweepflow' / 'servers'}:{name}:")
    # It may hold a database password: the user's alone.
    record_file = started.folder / ".sweepflow" / "servers" / "servers.json"
    assert record_file.stat().st_mode & 0o777 == 0o600


def test_work_pool_and_worker_registered(started: Started) -> None:
    from prefect.client.orchestration import SyncPrefectClient

    name = record(started.folder)["worker"]["name"]
    with SyncPrefectClient(started.api_url) as client:
        assert client.read_work_pool("sweepflow").type == "process"
        # Without offset and limit this Prefect version sends nulls the server rejects.
        workers = client.read_workers_for_work_pool("sweepflow", offset=0, limit=100)
    assert [(w.name, w.status) for w in workers if w.name == name] == [(name, "ONLINE")]


def test_ui_serves_artifacts_of_the_store(started: Started, tmp_path: Path) -> None:
    import mlflow

    uri = default_tracking_uri(started.folder)
    client = mlflow.MlflowClient(uri)
    run = client.create_run(ensure_experiment(client, "ui check", uri))
    note = tmp_path / "note.txt"
    note.write_text("hello from the store")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)
    url = f"{started.mlflow_url}/get-artifact?path=note.txt&run_uuid={run.info.run_id}"
    assert get(url) == b"hello from the store"


def test_status_shows_running(started: Started, cli) -> None:
    code, out, _ = cli("status")
    assert code == 0
    rows = table_rows(out)
    pids = {name: record(started.folder)[name]["pid"] for name in ("prefect", "worker", "mlflow")}
    state = started.folder / ".sweepflow"
    assert rows["Prefect server"] == [
        "running",
        str(pids["prefect"]),
        "http://127.0.0.1:" + str(started.prefect_port),
        f"sqlite+aiosqlite:///{state / 'servers' / 'prefect.db'}",
    ]
    assert rows["Prefect worker"][:2] == ["running", str(pids["worker"])]
    assert rows["MLflow UI"] == [
        "running",
        str(pids["mlflow"]),
        started.mlflow_url,
        f"sqlite:///{state / 'mlflow.db'}",
    ]


def test_second_up_is_idempotent(started: Started, cli) -> None:
    before = record(started.folder)
    code, out, err = cli("up", *started.port_args())
    assert (code, err) == (0, "")
    for label in ("Prefect server", "Prefect worker", "MLflow UI"):
        assert any(line.startswith(f"{label}: already running") for line in out.splitlines()), out
    assert f"PREFECT_API_URL={started.api_url}" in out.splitlines()
    after = record(started.folder)
    assert {n: after[n]["pid"] for n in ("prefect", "worker", "mlflow")} == {
        n: before[n]["pid"] for n in ("prefect", "worker", "mlflow")
    }


def test_up_starts_only_what_is_missing(started: Started) -> None:
    before = record(started.folder)
    worker = psutil.Process(before["worker"]["pid"])
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=30)
    assert servers.status(started.folder)["worker"]["state"] == "stopped"

    result = servers.up(
        started.folder, prefect_port=started.prefect_port, mlflow_port=started.mlflow_port
    )
    assert {n: result[n]["state"] for n in ("prefect", "worker", "mlflow")} == {
        "prefect": "already running",
        "worker": "started",
        "mlflow": "already running",
    }
    assert result["prefect"]["pid"] == before["prefect"]["pid"]
    assert result["worker"]["pid"] != before["worker"]["pid"]
    assert servers.status(started.folder)["worker"]["state"] == "running"


# ---------------------------------------------------------------------------
# down (last: it stops the module's servers)
# ---------------------------------------------------------------------------


def test_down_stops_every_process(started: Started, cli) -> None:
    data = record(started.folder)
    processes = [psutil.Process(data[name]["pid"]) for name in ("prefect", "worker", "mlflow")]
    processes += [child for p in processes for child in p.children(recursive=True)]
    code, out, _ = cli("down")
    assert code == 0
    assert out.splitlines() == [
        "MLflow UI: stopped",
        "Prefect worker: stopped",
        "Prefect server: stopped",
    ]
    _, alive = psutil.wait_procs(processes, timeout=5)
    assert alive == []
    assert not list((started.folder / ".sweepflow" / "servers").glob("*.pid"))
    assert {row["state"] for row in servers.status(started.folder).values()} == {"stopped"}
    assert servers.configured_api_url(started.folder) is None


def test_down_twice_is_fine(started: Started, cli) -> None:
    code, out, err = cli("down")
    assert (code, out, err) == (0, "No server of this project was running.\n", "")


# ---------------------------------------------------------------------------
# Fresh projects: nothing may start
# ---------------------------------------------------------------------------


BUSY = [
    # id, the service whose port is taken, how its port is given
    ("prefect-flag", "prefect", "flag"),
    ("mlflow-flag", "mlflow", "flag"),
    ("prefect-env", "prefect", "env"),
    ("mlflow-env", "mlflow", "env"),
]


@pytest.mark.parametrize(("busy", "given"), [r[1:] for r in BUSY], ids=[r[0] for r in BUSY])
def test_busy_port_is_one_error_line(
    fresh: Path, cli, monkeypatch: pytest.MonkeyPatch, busy: str, given: str
) -> None:
    ports = dict(zip(("prefect", "mlflow"), free_ports(2), strict=True))
    args = ["up"]
    for name, port in ports.items():
        if given == "env":
            monkeypatch.setenv(f"SWEEPFLOW_{name.upper()}_PORT", str(port))
        else:
            args += [f"--{name}-port", str(port)]
    with socket.socket() as other:
        other.bind(("127.0.0.1", ports[busy]))
        other.listen()
        code, out, err = cli(*args)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: port {ports[busy]} on 127.0.0.1 is in use by another program; "
        f"choose another with --{busy}-port or stop that program"
    ]
    folder = fresh / ".sweepflow" / "servers"
    assert sorted(p.name for p in folder.iterdir()) == ["lock"]  # no pid, log or record


def test_port_from_environment_must_be_a_number(
    fresh: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWEEPFLOW_MLFLOW_PORT", "50o0")
    code, out, err = cli("up")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "error: SWEEPFLOW_MLFLOW_PORT='50o0' is not a port number (1-65535)"
    ]


FOREIGN = [
    # id, what the pid file holds ({pid}, {start}: the foreign process's), a servers.json
    ("bare pid, no servers.json", "{pid}\n", False),
    ("pid and start time, a marker it lacks", "{pid}\n{start}\n{marker}\n", False),
    ("pid, start time and marker also in servers.json", "{pid}\n{start}\n{marker}\n", True),
]


@pytest.mark.parametrize(
    ("text", "recorded"), [r[1:] for r in FOREIGN], ids=[r[0] for r in FOREIGN]
)
def test_down_never_signals_a_process_it_did_not_start(
    fresh: Path, cli, text: str, recorded: bool
) -> None:
    """A foreign process whose command line looks like a Prefect server (what the old
    command-line check matched) survives `down`; its pid file is dropped."""
    folder = fresh / ".sweepflow" / "servers"
    folder.mkdir(parents=True)
    sleeper = "import time; time.sleep(60)"
    other = subprocess.Popen(
        [sys.executable, "-c", sleeper, "-m", "prefect", "server", "start"],
        start_new_session=True,
    )
    try:
        marker = f"{folder}:prefect:0123456789abcdef"
        start = psutil.Process(other.pid).create_time()
        (folder / "prefect.pid").write_text(text.format(pid=other.pid, start=start, marker=marker))
        if recorded:
            entry = {"pid": other.pid, "argv": psutil.Process(other.pid).cmdline()}
            entry |= {"started": start, "marker": marker, "port": 1, "api_url": "http://x"}
            (folder / "servers.json").write_text(json.dumps({"prefect": entry}))
        assert servers.status(fresh)["prefect"]["state"] == "stopped"
        code, out, _ = cli("down")
        assert (code, out) == (0, "No server of this project was running.\n")
        assert other.poll() is None, "sweepflow down signalled a process it did not start"
        assert not (folder / "prefect.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_of_an_ended_process_is_removed(fresh: Path) -> None:
    folder = fresh / ".sweepflow" / "servers"
    folder.mkdir(parents=True)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (folder / "worker.pid").write_text(f"{ended.pid}\n1.0\n{folder}:worker:abc\n")
    assert servers.status(fresh)["worker"]["state"] == "stopped"
    assert not (folder / "worker.pid").exists()


def test_down_leaves_a_reused_pid_alone(fresh: Path, cli) -> None:
    folder = fresh / ".sweepflow" / "servers"
    folder.mkdir(parents=True)
    other = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        (folder / "prefect.pid").write_text(f"{other.pid}\n")
        code, out, _ = cli("down")
        assert (code, out) == (0, "No server of this project was running.\n")
        assert other.poll() is None
        assert not (folder / "prefect.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_failed_start_stops_what_it_started(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    prefect_port, mlflow_port = free_ports(2)
    with pytest.raises(servers.ServerStartError, match=r"MLflow UI exited") as caught:
        servers.up(
            fresh, prefect_port=prefect_port, mlflow_port=mlflow_port, worker=False, timeout=90
        )
    assert str(fresh / ".sweepflow" / "servers" / "mlflow.log") in str(caught.value)
    assert not list((fresh / ".sweepflow" / "servers").glob("*.pid"))
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(prefect_port) in (p.info["cmdline"] or []) and "prefect" in (p.info["cmdline"] or [])
    ]
    assert leftovers == []
    assert servers.status(fresh)["prefect"]["state"] == "stopped"
