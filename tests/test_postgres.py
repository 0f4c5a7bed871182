"""PostgreSQL as the database of Prefect's server and of MLflow: real servers, no mocks.

The PostgreSQL server is ``$SWEEPFLOW_TEST_POSTGRES`` (``.ci/run`` starts one with
``scripts/postgres-up`` and sets it), else a throwaway cluster this module starts with
``scripts/postgres-up`` where PostgreSQL's binaries are installed, else the tests are
skipped (failed under CI). Each test uses databases of its own name, dropped at the end,
so that test sessions sharing one server never meet.

``sweepflow up --database URL`` runs in a child process, ``sweepflow run`` of a small
sweep in another; the runs are then read back from PostgreSQL with MLflow's client and
the flow run from the Prefect server (and from its tables in PostgreSQL). The URL and
precedence rules, and the errors for bad URLs, need no server but a refused password.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import sweepflow
from sweepflow.cli.main import main
from sweepflow.services import servers
from sweepflow.services.database import Postgres, chosen_database, masked_url
from sweepflow.services.files import free_ports
from sweepflow.tracking.uri import default_tracking_uri, sqlite_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
_ENV = (
    "SWEEPFLOW_HOME",
    "SWEEPFLOW_DATABASE",
    "MLFLOW_TRACKING_URI",
    "PREFECT_API_URL",
    "SWEEPFLOW_PREFECT_PORT",
    "SWEEPFLOW_MLFLOW_PORT",
)
JOB = """\
jobs:
  trivial:
    call: work:trivial
    sets:
      - all: x=1:12
"""
WORK = """\
def trivial(args):
    x = int(args[0].split("=", 1)[1])
    return {"y": float(x % 7)}
"""


def _has_postgres() -> bool:
    return bool(shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The URL of a PostgreSQL server whose user may create databases."""
    given = os.environ.get("SWEEPFLOW_TEST_POSTGRES")
    if given:
        yield given
        return
    if not _has_postgres():
        reason = (
            "no PostgreSQL: set SWEEPFLOW_TEST_POSTGRES=postgresql://USER:PASSWORD@HOST:PORT/DB "
            "or install PostgreSQL's server (apt-get install postgresql) for scripts/postgres-up"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide PostgreSQL ({reason})")
        pytest.skip(reason)
    # Not under pytest's temporary folder: that is private to this user, and as root the
    # cluster runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="sweepflow-test-postgres-"))
    env = {**os.environ, "SWEEPFLOW_POSTGRES_DIR": str(folder)}
    env.pop("SWEEPFLOW_POSTGRES_PORT", None)
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "postgres-up")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"scripts/postgres-up failed:\n{done.stderr}"
        yield done.stdout.strip()
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "postgres-down"), "--purge"],
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database(server: str) -> Iterator[Postgres]:
    """``server`` with a base name of this test's own; its databases dropped after."""
    import psycopg2

    base = Postgres.parse(server, "SWEEPFLOW_TEST_POSTGRES", base=False)
    db = Postgres.parse(f"{base.url_of(f'sweepflow_test_{secrets.token_hex(4)}')}")
    yield db
    with contextlib.closing(psycopg2.connect(base.url, connect_timeout=5)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in (db.prefect_database, db.mlflow_database):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (a space in its path) with a ``call:`` job, as the working
    directory, without the settings that would point elsewhere."""
    folder = tmp_path / "pg project"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(JOB)
    (folder / "work.py").write_text(WORK)
    monkeypatch.chdir(folder)
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    return folder


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV}
    source_root = str(Path(sweepflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "300"}
    return env


def sweepflow_cli(folder: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        cwd=folder,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# ---------------------------------------------------------------------------
# Real servers on PostgreSQL
# ---------------------------------------------------------------------------


@pytest.mark.servers
def test_up_on_postgres_then_a_sweep_lands_in_it(project: Path, database: Postgres) -> None:
    import psycopg2
    from mlflow import MlflowClient
    from prefect.client.orchestration import SyncPrefectClient

    prefect_port, mlflow_port = free_ports(2)
    ports = ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
    up = sweepflow_cli(project, "up", "--database", database.url, "--no-worker", *ports)
    try:
        assert up.returncode == 0, f"sweepflow up failed:\n{up.stdout}\n{up.stderr}"
        assert f"Database: {database.display} (Prefect and MLflow)" in up.stdout.splitlines()
        assert ":***@" in up.stdout and database.url not in up.stdout  # no password shown
        record = json.loads((project / ".sweepflow" / "servers" / "servers.json").read_text())
        pids = [record[name]["pid"] for name in ("prefect", "mlflow")]
        # The password stays out of every command line (`ps` shows them to all users).
        assert all(database.mlflow_url not in " ".join(psutil.Process(p).cmdline()) for p in pids)
        assert default_tracking_uri(project) == database.mlflow_url

        run = sweepflow_cli(project, "run", "trivial")
        assert run.returncode == 0, f"sweepflow run failed:\n{run.stdout}\n{run.stderr}"
        status = sweepflow_cli(project, "status", timeout=60)
        assert masked_url(database.prefect_url) in status.stdout, status.stdout
        assert masked_url(database.mlflow_url) in status.stdout, status.stdout

        # MLflow: the parent and twelve trial runs, in PostgreSQL.
        client = MlflowClient(database.mlflow_url)
        experiment = client.get_experiment_by_name("trivial")
        assert experiment is not None
        found = client.search_runs([experiment.experiment_id], max_results=100)
        trials = [r for r in found if r.data.tags.get("sweepflow.role") == "trial"]
        assert len(trials) == 12 and {r.info.status for r in trials} == {"FINISHED"}
        assert sorted(r.data.metrics["y"] for r in trials) == sorted(
            float(x % 7) for x in range(1, 13)
        )
        assert len(found) == 13

        # Prefect: the flow run on the server, and in its PostgreSQL tables.
        api_url = f"http://127.0.0.1:{prefect_port}/api"
        with SyncPrefectClient(api_url) as prefect:
            flow_runs = prefect.read_flow_runs()
        assert [(r.flow_id is not None, r.state_type.value) for r in flow_runs] == [
            (True, "COMPLETED")
        ]
        dsn = database.url_of(database.prefect_database)
        with contextlib.closing(psycopg2.connect(dsn)) as connection, connection.cursor() as cur:
            cur.execute("SELECT id::text, state_type FROM flow_run")
            rows = cur.fetchall()
        assert rows == [(str(flow_runs[0].id), "COMPLETED")]

        # A second `up` keeps the database the servers run on; another one is refused.
        again = sweepflow_cli(project, "up", "--no-worker", *ports)
        assert again.returncode == 0 and f"Database: {database.display}" in again.stdout
        moved = sweepflow_cli(project, "up", "--database", "sqlite", "--no-worker", *ports)
        assert (moved.returncode, moved.stderr.splitlines()) == (
            2,
            [
                f"error: the servers of this project already run on {database.display}; run "
                "`sweepflow down` first to move them to SQLite (from --database)"
            ],
        )
    finally:
        processes = []
        record_file = project / ".sweepflow" / "servers" / "servers.json"
        if record_file.exists():
            data = json.loads(record_file.read_text())
            for name in ("prefect", "mlflow"):
                with contextlib.suppress(KeyError, psutil.Error):
                    parent = psutil.Process(data[name]["pid"])
                    processes += [parent, *parent.children(recursive=True)]
        down = sweepflow_cli(project, "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert down.stdout.splitlines() == ["MLflow UI: stopped", "Prefect server: stopped"]
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == []
    assert default_tracking_uri(project) == sqlite_tracking_uri(project)  # servers.json gone


@pytest.mark.servers
def test_the_sql_route_writes_what_it_writes_to_sqlite(database: Postgres, tmp_path: Path) -> None:
    """The direct SQL route on PostgreSQL stores the rows it stores on SQLite (which
    ``tests/test_tracking.py`` compares with MLflow's client row for row)."""
    from test_tracking import _sweep

    from sweepflow.tracking.uri import prepare_store
    from sweepflow.tracking.writer import Tracker

    tables = {}
    for name, uri in (
        ("sqlite", f"sqlite:///{tmp_path / 'sqlite' / 'mlflow.db'}"),
        ("postgres", database.mlflow_url),
    ):
        prepare_store(uri, tmp_path / name / "mlartifacts")
        tracker = Tracker(uri, "train", "train", route="sql")
        _sweep(tracker, tmp_path / name)
        tables[name] = _rows(uri)
    assert tables["postgres"] == tables["sqlite"]


def _rows(uri: str) -> dict[str, list[tuple]]:
    """What the SQL route wrote, in a form both dialects give alike (run ids replaced
    by run names, the writing moment's times dropped)."""
    import sqlalchemy as sa

    engine = sa.create_engine(uri)
    try:
        with engine.connect() as db:
            names = dict(db.execute(sa.text("SELECT run_uuid, name FROM runs")).all())
            found: dict[str, list[tuple]] = {}
            columns = "name, status, lifecycle_stage, user_id, source_type"
            found["runs"] = sorted(db.execute(sa.text(f"SELECT {columns} FROM runs")).all())
            for table in ("tags", "params"):
                rows = db.execute(sa.text(f"SELECT run_uuid, key, value FROM {table}"))
                found[table] = sorted((names[r], k, names.get(v, v)) for r, k, v in rows)
            for table in ("metrics", "latest_metrics"):
                query = f"SELECT run_uuid, key, value, step, is_nan, timestamp FROM {table}"
                found[table] = sorted(
                    (names[r], k, v, s, bool(n), None if k.startswith("trials_") else t)
                    for r, k, v, s, n, t in db.execute(sa.text(query))
                )
            experiment_tags = "SELECT key, value FROM experiment_tags"
            found["experiment_tags"] = sorted(db.execute(sa.text(experiment_tags)).all())
    finally:
        engine.dispose()
    return {table: [tuple(row) for row in rows] for table, rows in found.items()}


# ---------------------------------------------------------------------------
# Errors: one line, nothing started
# ---------------------------------------------------------------------------


def _refused_port() -> int:
    (port,) = free_ports(1)
    return port  # nobody listens there


BAD = [
    # id, the URL, what the one error line says
    ("not-postgres", "mysql://me:pw@db:3306/x", "is not a PostgreSQL URL"),
    ("no-host", "postgresql:///sweeps", "names no host"),
    ("bad-port", "postgresql://me:pw@127.0.0.1:99999/x", "is not a URL (Port out of range"),
    ("bad-name", "postgresql://me:pw@127.0.0.1/my-sweeps", "database name 'my-sweeps'"),
    ("nobody-listens", "postgresql://me:pw@127.0.0.1:{port}/x", "connection refused"),
]


@pytest.mark.parametrize(("url", "expected"), [r[1:] for r in BAD], ids=[r[0] for r in BAD])
def test_a_bad_url_is_one_error_line(
    project: Path, capsys: pytest.CaptureFixture[str], url: str, expected: str
) -> None:
    url = url.format(port=_refused_port())
    code = main(["up", "--database", url, *_ports()])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert expected in err and ":pw@" not in err
    assert "scripts/postgres-up" in err or "postgresql://USER:PASSWORD@HOST:5432/NAME" in err
    _nothing_started(project)


def test_a_refused_password_is_one_error_line(
    project: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    real = Postgres.parse(server, base=False)
    user = real.user
    wrong = f"postgresql://{user}:not-the-password@{real.where}/sweepflow_never_made"
    code = main(["up", "--database", wrong, *_ports()])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: PostgreSQL at {real.where} (from --database: postgresql://{user}:***@"
        f"{real.where}/sweepflow_never_made) refused user '{user}': wrong or missing "
        "password; fix the user and password in the URL"
    ]
    _nothing_started(project)


def test_a_bad_environment_url_names_the_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWEEPFLOW_DATABASE", "postgres:/nohost")
    assert main(["up", *_ports()]) == 2
    assert capsys.readouterr().err.startswith("error: $SWEEPFLOW_DATABASE: 'postgres:/nohost'")
    _nothing_started(project)


def _ports() -> list[str]:
    prefect_port, mlflow_port = free_ports(2)
    return ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]


def _nothing_started(project: Path) -> None:
    folder = project / ".sweepflow" / "servers"
    assert not folder.exists() or sorted(p.name for p in folder.iterdir()) == ["lock"]


# ---------------------------------------------------------------------------
# Precedence (pure)
# ---------------------------------------------------------------------------

PG = "postgresql://me:pw@db.example:5432/sweeps"
OTHER = "postgresql://me:pw@db.example:5432/other"
CHOSEN = [
    # id, --database, $SWEEPFLOW_DATABASE, expected (url or None, source)
    ("default", None, None, (None, "default")),
    ("env", None, PG, (PG, "$SWEEPFLOW_DATABASE")),
    (
        "flag-over-env",
        OTHER,
        PG,
        (OTHER, "--database"),
    ),
    ("flag-sqlite-over-env", "sqlite", PG, (None, "--database")),
    ("postgres-scheme", "postgres://me:pw@db.example/sweeps", None, (PG, "--database")),
    ("driver-ignored", "postgresql+psycopg2://me:pw@db.example/sweeps", None, (PG, "--database")),
]


@pytest.mark.parametrize(
    ("flag", "env", "expected"), [r[1:] for r in CHOSEN], ids=[r[0] for r in CHOSEN]
)
def test_database_precedence(
    monkeypatch: pytest.MonkeyPatch, flag: str | None, env: str | None, expected: tuple
) -> None:
    if env is None:
        monkeypatch.delenv("SWEEPFLOW_DATABASE", raising=False)
    else:
        monkeypatch.setenv("SWEEPFLOW_DATABASE", env)
    db, source = chosen_database(flag)
    assert ((db.url if db else None), source) == expected


def test_tracking_uri_precedence(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$MLFLOW_TRACKING_URI > the servers' store (servers.json) > $SWEEPFLOW_DATABASE >
    SQLite in the state folder."""
    assert default_tracking_uri(project) == sqlite_tracking_uri(project)
    monkeypatch.setenv("SWEEPFLOW_DATABASE", PG)
    assert default_tracking_uri(project) == "postgresql://me:pw@db.example:5432/sweeps_mlflow"
    folder = project / ".sweepflow" / "servers"
    folder.mkdir(parents=True)
    store = "postgresql://me:pw@other:5432/x_mlflow"
    record = {"tracking_uri": store, "prefect": {"pid": 1}, "database": "postgresql://x"}
    (folder / "servers.json").write_text(json.dumps(record))
    assert default_tracking_uri(project) == store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert default_tracking_uri(project) == "sqlite:///elsewhere.db"


def test_up_refuses_a_tracking_uri_that_contradicts_the_database(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with pytest.raises(sweepflow.SweepflowError, match="unset MLFLOW_TRACKING_URI"):
        servers.up(project, database=PG, prefect_port=free_ports(1)[0], mlflow=False)
    _nothing_started(project)
