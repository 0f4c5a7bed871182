"""Benchmark: a 5,000-trial chunked sweep through `sweepflow up`, SQLite against PostgreSQL.

Run: ``.venv/bin/python bench/backends.py`` (about 4 minutes on 2 cores; ``--trials N``
for a quicker run). In one run, for each backend in turn:

- a fresh project with a trivial ``call:`` job of N trials (``chunk: auto``, the default:
  a few Prefect task runs of many trials each);
- ``sweepflow up --no-worker`` (Prefect server and MLflow UI; ``--database URL`` for
  PostgreSQL: Prefect's server in ``<name>_prefect``, the MLflow store in
  ``<name>_mlflow``);
- ``sweepflow run`` of the job, timed end to end (process start to exit), reporting to
  that server and tracking every trial as an MLflow run in that store;
- ``sweepflow down``.

It prints one row per backend: trials, wall time, errors (failed trials, or the run's
exit status), HTTP 503s (answers "service unavailable", counted in the servers' logs and
the run's output, where Prefect's client reports each retry of one; a SQLite server
answers 503 when its database is locked), trials/s.

PostgreSQL: ``--database URL``, else ``$SWEEPFLOW_TEST_POSTGRES``, else a throwaway
cluster that ``scripts/postgres-up`` starts in a temporary folder (stopped at the end).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sweepflow.services.database import Postgres

ROOT = Path(__file__).resolve().parents[1]
SWEEPFLOW = str(Path(sys.executable).with_name("sweepflow"))
WORK = """\
def trivial(args):
    x = int(args[0].split("=", 1)[1])
    return {"y": float(x % 7)}
"""
JOB = """\
jobs:
  trivial:
    call: work:trivial
    chunk: auto
    sets:
      - all: x=1:{trials}
"""
ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}
# An HTTP 503 as the servers (uvicorn's access log) and Prefect's client (its retry
# warning) write it; a bare "503" would also match trial labels such as x=503.
HTTP_503 = re.compile(
    r'HTTP/\d(?:\.\d)?"?\s+503\b|status[ _]code[^\n]{0,12}\b503\b|\b503 Service Unavailable',
    re.IGNORECASE,
)
# Prefect's client retries a 503 and says so only at DEBUG: shown for the timed run (a
# few lines; flow and task run records stay off the terminal).
CLIENT_RETRIES = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "DEBUG",
    "PREFECT_LOGGING_LOGGERS_PREFECT_CLIENT_LEVEL": "DEBUG",
}
COUNTS = re.compile(r"(\d+) done, (\d+) cached, (\d+) failed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _sweepflow(
    project: Path, *args: str, check: bool = True, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")
    }
    env |= ENV | (env_extra or {})
    env.pop("SWEEPFLOW_DATABASE", None)
    env.pop("SWEEPFLOW_HOME", None)
    done = subprocess.run(
        [SWEEPFLOW, *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        logs = [
            f"--- {path.name}:\n{path.read_text(errors='replace')[-3000:]}"
            for path in sorted((project / ".sweepflow" / "servers").glob("*.log"))
        ]
        sys.exit(
            f"sweepflow {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}\n"
            + "\n".join(logs)
        )
    return done


def _backend(root: Path, label: str, trials: int, database: str | None) -> dict[str, object]:
    """Up, one timed sweep, down: the row of one backend."""
    project = root / label
    project.mkdir()
    (project / "work.py").write_text(WORK)
    (project / "sweepflow.yaml").write_text(JOB.format(trials=trials))
    prefect_port, mlflow_port = _free_ports(2)
    up = ["up", "--no-worker", "--prefect-port", str(prefect_port)]
    up += ["--mlflow-port", str(mlflow_port), "--timeout", "300"]
    up += ["--database", database] if database else ["--database", "sqlite"]
    _sweepflow(project, *up)
    try:
        started = time.perf_counter()
        run = _sweepflow(project, "run", "trivial", check=False, env_extra=CLIENT_RETRIES)
        seconds = time.perf_counter() - started
    finally:
        _sweepflow(project, "down", check=False)
    output = run.stdout + run.stderr
    counts = COUNTS.findall(output)
    failed = int(counts[-1][2]) if counts else trials  # no summary: nothing is known done
    errors = failed + (1 if run.returncode and not failed else 0)
    logs = "".join(
        path.read_text(errors="replace")
        for path in (project / ".sweepflow" / "servers").glob("*.log*")
    )
    unavailable = len(HTTP_503.findall(logs)) + len(HTTP_503.findall(output))
    if run.returncode != 0:
        print(f"{label}: sweepflow run exited {run.returncode}:\n{run.stderr[-2000:]}")
    return {
        "backend": label,
        "trials": trials,
        "seconds": seconds,
        "errors": errors,
        "503s": unavailable,
        "rate": trials / seconds,
    }


def _postgres(given: str | None) -> tuple[str, dict[str, str] | None]:
    """A PostgreSQL server's URL, and the environment of the cluster this call started
    with ``scripts/postgres-up`` (None when the server was given)."""
    url = given or os.environ.get("SWEEPFLOW_TEST_POSTGRES")
    if url:
        return url, None
    folder = Path(tempfile.mkdtemp(prefix="sweepflow-bench-postgres-"))
    env = {**os.environ, "SWEEPFLOW_POSTGRES_DIR": str(folder)}
    env.pop("SWEEPFLOW_POSTGRES_PORT", None)
    done = subprocess.run(
        [str(ROOT / "scripts" / "postgres-up")], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"scripts/postgres-up failed (or pass --database URL):\n{done.stderr}")
    return done.stdout.strip(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5000, help="trials per sweep (5000)")
    parser.add_argument(
        "--database",
        help="PostgreSQL server URL (default: $SWEEPFLOW_TEST_POSTGRES, else scripts/postgres-up)",
    )
    args = parser.parse_args()
    from sweepflow.services.database import Postgres

    server, cluster = _postgres(args.database)
    # Databases of this run's own (<base>_prefect, <base>_mlflow), dropped at the end.
    base = Postgres.parse(server, "--database", base=False)
    url = base.url_of(f"sweepflow_bench_{secrets.token_hex(3)}")
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-backends-") as tmp:
        root = Path(tmp)
        try:
            rows = [
                _backend(root, "SQLite", args.trials, None),
                _backend(root, "PostgreSQL", args.trials, url),
            ]
        finally:
            _drop(base, Postgres.parse(url))
            if cluster is not None:
                stop = [str(ROOT / "scripts" / "postgres-down"), "--purge"]
                subprocess.run(stop, env=cluster, capture_output=True, check=False)
    print(f"{args.trials:,} trivial call: trials (chunk: auto) through `sweepflow up`, 2 cores")
    print("| backend | trials | wall time (s) | errors | HTTP 503s | trials/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['backend']} | {row['trials']:,} | {row['seconds']:.1f} | {row['errors']} "
            f"| {row['503s']} | {row['rate']:.1f} |"
        )


def _drop(server: Postgres, db: Postgres) -> None:
    """Drop the run's two databases, connected to the server's own (a shared server
    stays clean)."""
    import psycopg2

    try:
        connection = psycopg2.connect(server.url, connect_timeout=5)
    except psycopg2.Error:
        return
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in (db.prefect_database, db.mlflow_database):
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


if __name__ == "__main__":
    main()
