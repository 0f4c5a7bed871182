"""Checks before ``sweepflow run`` starts anything: the state folder can be written, and
a SQLite MLflow store opens, is sound, and is not locked.

Each failure is one line that names the file or folder and says what to do, before
Prefect, MLflow or any trial starts, and before anything is written. Standard library
only (``sqlite3``, not MLflow): cheap enough for every run.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs

from sweepflow.errors import SweepflowError

__all__ = ["StateFolderError", "StoreError", "check_before_run", "check_state", "check_store"]

# How long a write lock held by another process is waited for: MLflow's writers here
# wait as long (``timeout=30`` in sweepflow.tracking), so a lock that this check gives
# up on would have failed the run. ``?timeout=S`` on a ``sqlite:`` URI changes it.
LOCK_TIMEOUT = 30.0
# A full ``PRAGMA quick_check`` reads every page; beyond this size only the schema and
# MLflow's version table are read (they hold what a truncated or overwritten header
# breaks).
_QUICK_CHECK_BYTES = 256 * 2**20


class StateFolderError(SweepflowError, PermissionError):
    """The state folder (or the MLflow store in it) cannot be created or written."""


class StoreError(SweepflowError, OSError):
    """A SQLite MLflow store that is damaged, unreadable, or locked by another process."""


def check_before_run(project: Path | None) -> None:
    """Both checks below for a run of a job in ``project`` (default: the working folder):
    its state folder, then its MLflow store.

    Raises:
        StateFolderError: See :func:`check_state`.
        StoreError: See :func:`check_store`.
    """
    from sweepflow.settings import state_dir
    from sweepflow.tracking.uri import default_tracking_uri

    check_state(state_dir(project))
    check_store(default_tracking_uri(project))


def _writable(folder: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=effective)


def check_state(state: Path) -> None:
    """The state folder exists and can be written, or can be created.

    Nothing is created: where ``state`` is missing, its nearest existing parent must be
    a writable folder.

    Raises:
        StateFolderError: It (or that parent) is read-only for this user, or not a folder.
    """
    existing = state
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    other = "or choose another state folder with SWEEPFLOW_HOME=/a/writable/folder"
    if existing == state:
        problem = f"the state folder {state}"
    else:
        problem = f"cannot create the state folder {state}: {existing}"
    if not existing.is_dir():
        raise StateFolderError(f"{problem} is not a folder: move that file away, {other}")
    if not _writable(existing):
        raise StateFolderError(
            f"{problem} is read-only for this user: make it writable "
            f"(chmod u+w {shlex.quote(str(existing))}), {other}"
        )


def _sqlite_path(uri: str) -> tuple[Path, float] | None:
    """The file and lock timeout of a ``sqlite:///`` URI; None for other stores.

    >>> _sqlite_path("sqlite:////tmp/s/mlflow.db?timeout=2")
    (PosixPath('/tmp/s/mlflow.db'), 2.0)
    >>> _sqlite_path("http://127.0.0.1:5000") is None
    True
    """
    if not uri.startswith("sqlite:///"):
        return None
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    if not path or path == ":memory:":
        return None
    try:
        timeout = float(parse_qs(query).get("timeout", [LOCK_TIMEOUT])[0])
    except ValueError:
        timeout = LOCK_TIMEOUT
    return Path(os.path.abspath(path)), timeout


def check_store(uri: str) -> None:
    """A SQLite MLflow store that exists opens, is sound, and can be written.

    Other stores (a server, PostgreSQL) and a store not made yet pass. The check reads
    the schema and MLflow's version table (a full ``PRAGMA quick_check`` for files up
    to 256 MiB) and takes the write lock for an empty transaction, waiting for another
    process that holds it as long as MLflow would (``?timeout=S`` on the URI, else 30 s).
    Nothing is written.

    Raises:
        StateFolderError: The file is read-only for this user.
        StoreError: It is damaged, or another process held its lock all that time.
    """
    found = _sqlite_path(uri)
    if found is None:
        return
    path, timeout = found
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot read the MLflow store {path}: {exc.strerror}") from None
    if size == 0:
        return  # sweepflow makes the store in it
    quoted = shlex.quote(str(path))
    if not os.access(path, os.R_OK | os.W_OK) or not _writable(path.parent):
        raise StateFolderError(
            f"the MLflow store {path} (or its folder) is read-only for this user: make both "
            f"writable (chmod u+w {quoted} {shlex.quote(str(path.parent))})"
        )
    started = time.monotonic()
    try:
        with contextlib.closing(
            sqlite3.connect(path.as_uri() + "?mode=rw", uri=True, timeout=timeout)
        ) as connection:
            connection.isolation_level = None  # transactions as written below
            connection.execute("SELECT name FROM sqlite_master").fetchall()
            if size <= _QUICK_CHECK_BYTES:
                problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems))
            with contextlib.suppress(sqlite3.OperationalError):  # no such table: not MLflow's
                connection.execute("SELECT version_num FROM alembic_version").fetchall()
            connection.execute("BEGIN IMMEDIATE")  # the write lock, released unused
            connection.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            waited = time.monotonic() - started
            raise StoreError(
                f"the MLflow store {path} is locked by another process (waited {waited:.0f} "
                f"s): let it finish, or find it with `fuser {quoted}` and stop it"
            ) from None
        if "unable to open" in str(exc):
            raise StoreError(f"cannot open the MLflow store {path} ({exc})") from None
        raise _damaged(path, exc) from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(path, exc) from None


def _damaged(path: Path, exc: Exception) -> StoreError:
    """The error for a damaged store: move it aside, with its WAL files (a new store with
    the old write-ahead log beside it would take in the old pages)."""
    files = [path, *(p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())]
    aside = shlex.quote(f"{path}.damaged")
    move = " ".join(shlex.quote(str(f)) for f in files)
    why = " ".join(str(exc).split())  # quick_check's report spans lines
    return StoreError(
        f"the MLflow store {path} is damaged ({why}): move it aside (mkdir {aside} && mv "
        f"{move} {aside}/) and run again: sweepflow keeps its cached results, so finished "
        "trials do not run again"
    )
