"""Where MLflow records live: the default tracking URI, artifact root and experiments.

Shared by the flow, the by-hand paths of :mod:`sweepflow.reporting.channel` and
:mod:`sweepflow.reporting.program`, and :mod:`sweepflow.analysis`. MLflow is imported only inside
the functions that need a client.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from sweepflow.settings import state_dir

__all__ = [
    "ARTIFACT_DIR_NAME",
    "artifact_root",
    "by_hand_experiment",
    "default_tracking_uri",
    "ensure_experiment",
    "experiment_location",
    "fast_commits",
    "local_path",
    "prepare_store",
    "schema_head",
    "sqlite_tracking_uri",
]

ARTIFACT_DIR_NAME = "mlartifacts"


def default_tracking_uri(project_dir: str | Path | None = None) -> str:
    """The MLflow store of a project, first found of:

    1. ``$MLFLOW_TRACKING_URI``;
    2. the store of the project's servers (``servers.json`` of ``sweepflow up``, until
       ``sweepflow down``), so runs land where the MLflow UI looks;
    3. the MLflow database of ``$SWEEPFLOW_DATABASE`` (``<name>_mlflow`` on that
       PostgreSQL server, see :mod:`sweepflow.services.database`);
    4. SQLite in the state folder: :func:`sqlite_tracking_uri`.

    Args:
        project_dir: Folder of the job file (anchors the state folder; default: cwd).

    Raises:
        DatabaseURLError: ``$SWEEPFLOW_DATABASE`` is not a PostgreSQL URL.
    """
    from sweepflow.services.database import chosen_database
    from sweepflow.services.files import recorded_tracking_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or recorded_tracking_uri(project_dir)
    if uri:
        return uri
    database, _ = chosen_database(None)
    return database.mlflow_url if database else sqlite_tracking_uri(project_dir)


def sqlite_tracking_uri(project_dir: str | Path | None = None) -> str:
    """The default store: ``sqlite:///<absolute state folder>/mlflow.db``.

    The state folder is :func:`sweepflow.settings.state_dir` (``$SWEEPFLOW_HOME`` or
    ``<project>/.sweepflow``).
    """
    return f"sqlite:///{(state_dir(project_dir) / 'mlflow.db').as_posix()}"


def artifact_root(tracking_uri: str) -> Path | None:
    """The folder that holds artifacts of a SQLite store: ``mlartifacts`` beside the db.

    For the default URI this is ``<state>/mlartifacts``. Other stores (a server, a
    database) choose their own artifact location, so this returns None for them.

    >>> artifact_root("sqlite:////tmp/s/mlflow.db").as_posix()
    '/tmp/s/mlartifacts'
    >>> artifact_root("http://127.0.0.1:5000") is None
    True
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = tracking_uri.removeprefix("sqlite:///").partition("?")[0]
    if not database or database == ":memory:":
        return None
    return Path(os.path.abspath(database)).parent / ARTIFACT_DIR_NAME


def local_path(uri: str | None) -> Path | None:
    """The local path of a ``file:`` URI or plain path; None for remote URIs.

    >>> local_path("file:///tmp/a%20b/artifacts").as_posix()
    '/tmp/a b/artifacts'
    >>> local_path("mlflow-artifacts:/1/abc/artifacts") is None
    True
    """
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(uri)
    return None


def ensure_experiment(client: Any, name: str, tracking_uri: str) -> str:
    """The id of the experiment ``name``, created if missing; return its id.

    The experiment carries :data:`sweepflow.tracking.rules.EXPERIMENT_TAGS` (added if
    missing), so MLflow 3's UI opens it as model training rather than GenAI.

    A new experiment of a SQLite store puts its artifacts under
    ``<artifact_root>/<name>`` (MLflow's own default, ``./mlruns`` relative to the
    working directory of whoever creates it, would scatter them).

    Args:
        client: An ``mlflow.MlflowClient`` for ``tracking_uri``.
        name: The experiment name.
        tracking_uri: The store's URI (decides the artifact location).
    """
    from mlflow.exceptions import MlflowException

    from sweepflow.tracking.rules import EXPERIMENT_TAGS

    found = client.get_experiment_by_name(name)
    if found is None:
        location = experiment_location(name, tracking_uri)
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException:
            # Another process created it between our lookup and our create.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    for key, value in EXPERIMENT_TAGS.items():
        if key not in found.tags:
            client.set_experiment_tag(found.experiment_id, key, value)
    return found.experiment_id


def experiment_location(name: str, tracking_uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts:
    ``<artifact_root>/<name>`` (created); None for other stores (their default).

    MLflow's own default, ``./mlruns`` relative to the working directory of whoever
    creates the experiment, would scatter them.
    """
    root = artifact_root(tracking_uri)
    if root is None:
        return None
    # The name is free text (MLflow's); its folder is a safe slug inside the root.
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"
    folder = root / slug
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve().as_uri()


@functools.cache
def schema_head() -> str | None:
    """The Alembic revision of the installed MLflow's schema (read once per process from
    the empty template store, made once per user); None if it cannot be read."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(_template())) as connection:
            return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    except Exception:
        return None


def prepare_store(tracking_uri: str, artifacts: Path | None = None) -> None:
    """Create a SQLite or PostgreSQL store and its schema before anyone else uses it.

    Call it once before fanning out (concurrent first use corrupts the schema). A new
    store gets its ``Default`` experiment under ``<artifact_root>/0`` rather than
    MLflow's ``./mlruns/0`` relative to the working directory; for SQLite the root is
    beside the file, for PostgreSQL ``artifacts`` (default: ``mlartifacts`` in the
    state folder). A PostgreSQL database is created if missing. Other stores: no-op.

    Raises:
        DatabaseUnreachableError: A PostgreSQL server that does not answer, refuses
            the user, or where the database cannot be created.
    """
    if urlparse(tracking_uri).scheme.partition("+")[0] in ("postgresql", "postgres"):
        _prepare_postgres(tracking_uri, artifacts or state_dir() / ARTIFACT_DIR_NAME)
        return
    root = artifact_root(tracking_uri)
    if root is None:
        return
    database = Path(tracking_uri.removeprefix("sqlite:///").partition("?")[0])
    if not (database.is_file() and database.stat().st_size > 0):
        database.parent.mkdir(parents=True, exist_ok=True)
        _from_template(database, root)
    _write_ahead_log(database)


_PREPARED: set[str] = set()


def _prepare_postgres(uri: str, artifacts: Path) -> None:
    """Create the database of ``uri`` if missing, then MLflow's schema if missing.

    Done once per process and URI. The schema is made by MLflow itself (every
    migration, a few seconds) under a PostgreSQL advisory lock, so that concurrent
    first uses (many workers, a server starting) wait for one another.
    """
    if uri in _PREPARED or not urlparse(uri).path.strip("/"):
        return  # done, or no database named (the server's default for the user)
    import psycopg2

    from sweepflow.services.database import Postgres, ensure_database

    database = Postgres.parse(uri, "the MLflow tracking URI", base=False)
    ensure_database(database, database.name, "the MLflow tracking URI")
    dsn = database.url_of(database.name)
    with contextlib.closing(psycopg2.connect(dsn, connect_timeout=5)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
            if not cursor.fetchone()[0]:
                cursor.execute("SELECT pg_advisory_lock(hashtext('sweepflow: mlflow schema'))")
                try:
                    cursor.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
                    if not cursor.fetchone()[0]:
                        _create_schema(uri, artifacts)
                finally:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(hashtext('sweepflow: mlflow schema'))"
                    )
    _PREPARED.add(uri)


def _create_schema(uri: str, artifacts: Path) -> None:
    """MLflow's schema in the empty database of ``uri``, its ``Default`` experiment's
    artifacts under ``artifacts/0``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, artifacts.resolve().as_uri()).engine.dispose()


def _template() -> Path:
    """An empty store of the installed MLflow version, made once per user.

    Creating MLflow's schema runs every migration (~3.5 s here); a new project's store
    is a copy of this file instead (milliseconds).
    """
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sweepflow"
    template = cache / f"mlflow-{version('mlflow')}-empty.db"
    if template.is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f".{template.name}.{os.getpid()}.tmp"
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = f"sqlite:///{building.as_posix()}"
    SqlAlchemyStore(uri, (cache / "unused-artifacts").as_uri()).engine.dispose()
    os.replace(building, template)  # atomic: a concurrent builder's copy is as good
    return template


def _from_template(database: Path, root: Path) -> None:
    """Create ``database`` as a copy of the empty template store, its ``Default``
    experiment's artifacts under ``root/0``."""
    import shutil
    import sqlite3

    building = database.with_name(f".{database.name}.{os.getpid()}.tmp")
    shutil.copyfile(_template(), building)
    with contextlib.closing(sqlite3.connect(building)) as connection, connection:
        connection.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (f"{root.as_uri()}/0",),
        )
    os.replace(building, database)


def _write_ahead_log(database: Path) -> None:
    """Put the database in WAL mode (a property of the file, kept across processes).

    Each MLflow call commits; in the default rollback-journal mode every commit costs
    an fsync of the journal and the database, in WAL mode one append: measured here,
    create + log + close of a run fell from 16.6 ms to 11.1 ms (9.2 ms with
    ``synchronous=NORMAL``, see :func:`fast_commits`). WAL needs every process that
    opens the file to be on one host, which is the case for a local SQLite store.
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


_FAST: set[str] = set()


def fast_commits(tracking_uri: str) -> None:
    """In this process, commit to the SQLite store without an fsync per commit.

    ``synchronous=NORMAL`` in WAL mode cannot corrupt the database; a power loss may
    drop the last transactions (a killed process loses nothing). Other stores: no-op.
    """
    if not tracking_uri.startswith("sqlite:///") or tracking_uri in _FAST:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    target = str(Path(tracking_uri.removeprefix("sqlite:///").partition("?")[0]).resolve())

    def _on_connect(connection: Any, _record: Any) -> None:
        import sqlite3

        if not isinstance(connection, sqlite3.Connection):
            return
        files = {row[2] for row in connection.execute("PRAGMA database_list")}
        if target in files:
            connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(Engine, "connect", _on_connect)
    _FAST.add(tracking_uri)


def by_hand_experiment() -> str:
    """Point MLflow's fluent API at the by-hand store; return the experiment id to use.

    The store is the URI the program chose (``mlflow.set_tracking_uri`` or
    ``$MLFLOW_TRACKING_URI``), else :func:`default_tracking_uri`. The experiment is
    ``$MLFLOW_EXPERIMENT_ID``, else ``$MLFLOW_EXPERIMENT_NAME``, else ``Default``.
    """
    import mlflow

    if mlflow.is_tracking_uri_set():
        uri = mlflow.get_tracking_uri()
    else:  # pin the default for this process; a URI the program chose stays unpinned
        uri = default_tracking_uri()
        mlflow.set_tracking_uri(uri)
    prepare_store(uri)
    if os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
    return ensure_experiment(mlflow.MlflowClient(uri), name, uri)
