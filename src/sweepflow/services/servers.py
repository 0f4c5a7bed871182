"""Local servers for a project: a Prefect server, a process worker, and the MLflow UI.

``sweepflow up`` starts them on 127.0.0.1, detached, each in its own session with its
output in ``<state>/servers/<name>.log``; ``sweepflow down`` stops exactly those
processes (by pid file, and only a process it can prove it started: its start time
and a marker in its environment, see :mod:`sweepflow.services.files`); ``sweepflow
status`` says which answer. Layout of ``<state>/servers``:

- ``<name>.pid`` (pid, start time, marker) and ``<name>.log`` for ``prefect``,
  ``worker`` and ``mlflow``;
- ``servers.json``: ports, URLs, pids, command lines, start times, markers, the
  database and the MLflow store (mode 0600: it may hold a database password);
- ``env``: ``export PREFECT_API_URL=...`` and ``export MLFLOW_TRACKING_URI=...``
  for a shell to ``source``;
- ``prefect.db``: the Prefect server's own SQLite database, unless ``--database``
  names PostgreSQL (see :mod:`sweepflow.services.database`);
- ``lock``: held by ``up`` and ``down`` so that two of them never race.

How each server is started and checked lives in :mod:`sweepflow.services.launch`;
this module decides what to start, on which ports and database, and stops it. Prefect
and MLflow are imported only inside the functions that need them; the
health checks use ``urllib`` so that :func:`configured_api_url` and :func:`status`
stay cheap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweepflow.errors import SweepflowError
from sweepflow.services.database import (
    Postgres,
    chosen_database,
    ensure_database,
    masked_url,
)
from sweepflow.services.files import (
    HOST,
    ServerStartError,
    _answers,
    _last_line,
    _Layout,
    _locked,
    _port_free,
    _process,
    _read_record,
    _started_here,
    _terminate,
    _write_env,
    _write_json,
)
from sweepflow.services.launch import (
    POOL,
    _online,
    _prefect_healthy,
    _start_mlflow,
    _start_prefect,
    _start_worker,
    ensure_pool,
)
from sweepflow.tracking.uri import sqlite_tracking_uri

__all__ = [
    "DEFAULT_MLFLOW_PORT",
    "DEFAULT_PREFECT_PORT",
    "HOST",
    "POOL",
    "PortInUseError",
    "ServerStartError",
    "configured_api_url",
    "down",
    "ensure_pool",
    "status",
    "up",
]

DEFAULT_PREFECT_PORT = 4200
DEFAULT_MLFLOW_PORT = 5000

SERVICES = ("prefect", "worker", "mlflow")  # start order; stopped in reverse
LABELS = {"prefect": "Prefect server", "worker": "Prefect worker", "mlflow": "MLflow UI"}
LABELS["warm"] = "Prefect (warm)"  # the one runs start without `up`: warm_server
_PORT_OPTION = {"prefect": "--prefect-port", "mlflow": "--mlflow-port"}
_PORT_ENV = {"prefect": "SWEEPFLOW_PREFECT_PORT", "mlflow": "SWEEPFLOW_MLFLOW_PORT"}
_DEFAULT_PORT = {"prefect": DEFAULT_PREFECT_PORT, "mlflow": DEFAULT_MLFLOW_PORT}


class PortInUseError(SweepflowError, OSError):
    """A port that ``sweepflow up`` needs is taken by another program."""


def configured_api_url(project_dir: str | Path | None = None) -> str | None:
    """The API URL of this project's Prefect server if it runs and answers, else None.

    Reads ``<state>/servers/servers.json`` and asks ``/api/health`` (1 s timeout);
    imports no Prefect.

    Args:
        project_dir: Folder of the job file (default: the working directory).
    """
    entry = _read_record(_Layout.of(project_dir)).get("prefect")
    if not entry or not entry.get("api_url"):
        return None
    return entry["api_url"] if _prefect_healthy(entry["api_url"]) else None


def up(
    project_dir: str | Path | None = None,
    *,
    prefect_port: int | None = None,
    mlflow_port: int | None = None,
    worker: bool = True,
    mlflow: bool = True,
    timeout: float = 120.0,
    database: str | None = None,
) -> dict[str, Any]:
    """Start what is missing of the project's servers; wait until each answers.

    Ports: the argument, else ``$SWEEPFLOW_PREFECT_PORT`` / ``$SWEEPFLOW_MLFLOW_PORT``,
    else the port of the running server, else 4200 / 5000. Database: the argument, else
    ``$SWEEPFLOW_DATABASE``, else that of the running servers, else SQLite files in the
    state folder. Every port to open and the database are checked before anything
    starts. A server that does not come up stops everything this call started.

    Args:
        project_dir: Folder of the job file (default: the working directory).
        prefect_port: Port of the Prefect server.
        mlflow_port: Port of the MLflow UI.
        worker: Start a process worker on the ``sweepflow`` work pool.
        mlflow: Start the MLflow UI on the project's tracking store.
        timeout: Seconds each server may take to answer.
        database: ``postgresql://USER:PASSWORD@HOST:PORT/NAME`` (Prefect's server in
            database ``NAME_prefect``, the MLflow store in ``NAME_mlflow``, both created
            if missing), or ``sqlite``.

    Returns:
        The content of ``servers.json`` (``prefect``, ``worker``, ``mlflow`` entries
        with ``pid``, ``url`` …), each entry with a ``state``: ``started`` or
        ``already running``; ``env_file``, ``tracking_uri`` and ``database`` (None for
        SQLite).

    Raises:
        PortInUseError: A port is taken by another program (nothing was started).
        DatabaseURLError: ``database`` is not a PostgreSQL URL (nothing was started).
        DatabaseUnreachableError: Its server does not answer, refuses the user, or the
            databases cannot be created (nothing was started).
        ServerStartError: A server did not come up in time (the message names its log).
    """
    project = Path(project_dir or ".").resolve()
    layout = _Layout.of(project)
    db, source = chosen_database(database)  # a bad URL stops here, before the lock
    if db is None:  # the warm server's database is the one this server takes over
        from sweepflow.services.warm_server import stop_if_unused

        stop_if_unused(project)
    with _locked(layout):
        return _up(layout, project, prefect_port, mlflow_port, worker, mlflow, timeout, db, source)


def _up(
    layout: _Layout,
    project: Path,
    prefect_port: int | None,
    mlflow_port: int | None,
    worker: bool,
    mlflow: bool,
    timeout: float,
    db: Postgres | None,
    source: str,
) -> dict[str, Any]:
    old = _read_record(layout)
    # A process without its entry in servers.json has no known port: not reused.
    running = {name: _process(layout, name) if old.get(name) else None for name in SERVICES}
    running = {n: p if p and p.pid == old[n].get("pid") else None for n, p in running.items()}
    wanted = ["prefect", *(["worker"] if worker else []), *(["mlflow"] if mlflow else [])]
    db = _database(db, source, old, running)
    ports = {"prefect": _port("prefect", prefect_port, old, running)}
    if mlflow:
        ports["mlflow"] = _port("mlflow", mlflow_port, old, running)
    if ports["prefect"] == ports.get("mlflow"):
        raise SweepflowError(
            f"--prefect-port and --mlflow-port are both {ports['prefect']}; choose two ports"
        )
    uri = old["mlflow"]["tracking_uri"] if running["mlflow"] else _store(project, db, source)
    if mlflow and not running["mlflow"] and uri.split(":")[0] in ("http", "https", "databricks"):
        raise SweepflowError(
            f"MLFLOW_TRACKING_URI={masked_url(uri)} is a server, not a store the MLflow UI can "
            "open; unset it or pass --no-mlflow"
        )
    for name in SERVICES:  # ours, but servers.json lost its entry: no known port
        if not running[name] and (orphan := _process(layout, name)) is not None:
            _terminate(orphan)
            layout.pid(name).unlink(missing_ok=True)
    for name in ("prefect", "mlflow"):
        if name in wanted and running[name] is None and not _port_free(ports[name]):
            raise PortInUseError(
                f"port {ports[name]} on {HOST} is in use by another program; choose another "
                f"with {_PORT_OPTION[name]} or stop that program"
            )
    if db is not None and not running["prefect"]:
        ensure_database(db, db.prefect_database, source)
    if db is not None and uri == db.mlflow_url and not running["mlflow"]:
        ensure_database(db, db.mlflow_database, source)  # its schema: the MLflow server

    record: dict[str, Any] = {"project": str(project), "env_file": str(layout.env)}
    record |= {"tracking_uri": uri, "database": db.url if db else None}
    record |= {name: old[name] for name in SERVICES if running[name]}
    started: list[str] = []
    try:
        api_url = f"http://{HOST}:{ports['prefect']}/api"
        if not running["prefect"]:
            _start_prefect(layout, record, ports["prefect"], project, db)
            started.append("prefect")
        if "mlflow" in wanted and not running["mlflow"]:
            _start_mlflow(layout, record, ports["mlflow"], uri, project)
            started.append("mlflow")
        _wait(layout, "prefect", record, started, timeout, lambda: _prefect_healthy(api_url))
        if worker:
            ensure_pool(api_url)
            if running["worker"] and "prefect" in started:
                # A worker of the previous server: attach a fresh one to this server.
                _terminate(running["worker"])
                running["worker"] = None
            if not running["worker"]:
                name = _start_worker(layout, record, api_url, uri, project)
                started.append("worker")
                _wait(layout, "worker", record, started, timeout, lambda: _online(api_url, name))
        if "mlflow" in wanted:
            health = f"{record['mlflow']['url']}/health"
            _wait(layout, "mlflow", record, started, timeout, lambda: _answers(health))
    except BaseException:
        for name in reversed(started):
            pid = record.get(name, {}).get("pid", -1)
            if proc := _process(layout, name) or _started_here(pid):
                _terminate(proc)
            layout.pid(name).unlink(missing_ok=True)
            record.pop(name, None)
        _write_json(layout.record, record)
        raise
    _write_json(layout.record, record)
    _write_env(layout, record)
    result = json.loads(json.dumps(record))
    for name in SERVICES:
        if name in result:
            result[name]["state"] = "started" if name in started else "already running"
    return result


def down(project_dir: str | Path | None = None, *, grace: float = 10.0) -> dict[str, str]:
    """Stop the servers ``up`` started for this project: worker first, then servers.

    Only a process that sweepflow can prove it started (the pid file's pid, start time
    and marker, see :mod:`sweepflow.services.files`) is signalled: SIGTERM to its
    process group, SIGKILL after ``grace`` seconds. Pid files, ``servers.json`` and the
    ``env`` file are removed. Nothing running is fine.

    Args:
        project_dir: Folder of the job file (default: the working directory).
        grace: Seconds to wait after SIGTERM before SIGKILL.

    Also stops the warm Prefect server that runs start without ``up``
    (:mod:`sweepflow.services.warm_server`), even while a run uses it.

    Returns:
        For each service with a pid file: ``stopped`` or ``not running``.
    """
    layout = _Layout.of(project_dir)
    if not layout.folder.is_dir():
        return {}
    outcome: dict[str, str] = {}
    with _locked(layout):
        for name in reversed(SERVICES):
            if not layout.pid(name).exists():
                continue
            proc = _process(layout, name)
            if proc is not None:
                _terminate(proc, grace)
            outcome[name] = "stopped" if proc is not None else "not running"
            layout.pid(name).unlink(missing_ok=True)
        layout.record.unlink(missing_ok=True)
        layout.env.unlink(missing_ok=True)
    from sweepflow.services.warm_server import stop as stop_warm

    if (warm := stop_warm(project_dir, grace)) is not None:
        outcome["warm"] = warm
    return outcome


def status(project_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The state of each service: ``running``, ``stopped`` or ``not answering``.

    Args:
        project_dir: Folder of the job file (default: the working directory).

    Returns:
        For ``prefect``, ``worker`` and ``mlflow``: ``state``, ``pid`` (None when
        stopped), ``url`` (None when unknown) and ``database``: where the Prefect
        server and the MLflow UI keep their data, password hidden (None for the
        worker, or when unknown). Also ``warm`` once a run started the warm Prefect
        server (:func:`sweepflow.services.warm_server.warm_status`).
    """
    layout = _Layout.of(project_dir)
    record = _read_record(layout)
    api_url = (record.get("prefect") or {}).get("api_url")
    rows: dict[str, dict[str, Any]] = {}
    for name in SERVICES:
        entry = record.get(name) or {}
        proc = _process(layout, name)
        if name == "worker":
            url = f"pool {POOL} on {api_url}" if entry and api_url else None
            answers = bool(proc and api_url and _online(api_url, entry.get("name", "")))
        else:
            url = entry.get("url")
            health = f"{entry.get('api_url') if name == 'prefect' else url}/health"
            answers = bool(proc and _answers(health))
        state = "stopped" if proc is None else ("running" if answers else "not answering")
        rows[name] = {"state": state, "pid": proc.pid if proc else None, "url": url}
        store = entry.get("database") if name == "prefect" else entry.get("tracking_uri")
        rows[name]["database"] = masked_url(store) if store else None
    from sweepflow.services.warm_server import warm_status

    if (warm := warm_status(project_dir)) is not None:
        rows["warm"] = warm
    return rows


def _database(
    db: Postgres | None, source: str, old: dict[str, Any], running: dict[str, Any]
) -> Postgres | None:
    """The database to use: the one asked for, else that of the running servers.

    Raises:
        SweepflowError: The servers run on another database (``down`` first).
    """
    if not (running["prefect"] or running["mlflow"]):
        return db
    current = old.get("database")
    if source == "default":
        return Postgres.parse(current, "servers.json") if current else None
    if (db.url if db else None) != current:
        now = masked_url(current) if current else "SQLite"
        asked = db.display if db else "SQLite"
        raise SweepflowError(
            f"the servers of this project already run on {now}; run `sweepflow down` "
            f"first to move them to {asked} (from {source})"
        )
    return db


def _store(project: Path, db: Postgres | None, source: str) -> str:
    """The MLflow store of new servers: ``$MLFLOW_TRACKING_URI``, else the database's
    MLflow database, else SQLite in the state folder.

    Raises:
        SweepflowError: ``$MLFLOW_TRACKING_URI`` names another store than the database.
    """
    chosen = os.environ.get("MLFLOW_TRACKING_URI")
    if db is None:
        return chosen or sqlite_tracking_uri(project)
    if chosen and chosen != db.mlflow_url:
        raise SweepflowError(
            f"MLFLOW_TRACKING_URI={masked_url(chosen)} is set, but {source} puts the MLflow "
            f"store in {masked_url(db.mlflow_url)}; unset MLFLOW_TRACKING_URI (or drop the "
            "database to keep that store)"
        )
    return db.mlflow_url


def _wait(
    layout: _Layout,
    name: str,
    record: dict[str, Any],
    started: list[str],
    timeout: float,
    answers: Callable[[], object],
) -> None:
    """Wait until ``answers()``; fail early when a process this call started exits."""
    deadline = time.monotonic() + timeout
    missing: dict[str, int] = {}
    while not answers():
        for other in started:
            # Gone on four checks in a row (~1 s): one failed read of /proc under load
            # is not an exit.
            gone = _process(layout, other) is None
            missing[other] = missing.get(other, 0) + 1 if gone else 0
            if missing[other] >= 4:
                raise ServerStartError(
                    f"the {LABELS[other]} exited while starting; read {layout.log(other)}"
                    + _last_line(layout.log(other))
                )
        if time.monotonic() > deadline:
            where = record[name].get("url") or f"pool {POOL}"
            hint = "" if name in started else " (restart it: sweepflow down; sweepflow up)"
            raise ServerStartError(
                f"the {LABELS[name]} (pid {record[name]['pid']}) did not answer at {where} "
                f"within {timeout:g} s; read {layout.log(name)}{hint}"
                + _last_line(layout.log(name))
            )
        time.sleep(0.25)


def _port(name: str, given: int | None, record: dict[str, Any], running: dict[str, Any]) -> int:
    """The port to use: argument > ``$SWEEPFLOW_*_PORT`` > running server > default."""
    variable = _PORT_ENV[name]
    if given is None and os.environ.get(variable):
        text = os.environ[variable]
        if not (text.isdigit() and 0 < int(text) < 65536):
            raise SweepflowError(f"{variable}={text!r} is not a port number (1-65535)")
        given = int(text)
    current = record[name]["port"] if running[name] else None
    if current is not None and given is not None and given != current:
        raise SweepflowError(
            f"the {LABELS[name]} of this project already runs on port {current}; "
            f"run `sweepflow down` first to move it to port {given}"
        )
    return given or current or _DEFAULT_PORT[name]
