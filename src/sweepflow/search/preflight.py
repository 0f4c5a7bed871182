"""What ``sweepflow run`` checks of a search before anything starts: a ``--storage``
Optuna cannot open, a database whose Python driver is missing, and a study that
already holds its ``n_trials`` (nothing to run, so no flow starts)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sweepflow.errors import JobError
from sweepflow.search.complete import complete_study
from sweepflow.search.locations import ACCEPTED, shown, storage_file, storage_problem

if TYPE_CHECKING:
    from sweepflow.plan.space import SearchSpace
    from sweepflow.spec.jobs import Job

__all__ = ["check_search"]

# The pip package of a database driver module, where the names differ.
_PACKAGES = {
    "psycopg2": "psycopg2-binary",
    "psycopg": "'psycopg[binary]'",
    "MySQLdb": "mysqlclient",
    "pymysql": "PyMySQL",
    "cx_Oracle": "cx_Oracle",
}


def check_search(
    job: Job,
    space: SearchSpace,
    state: Path,
    storage: str | None = None,
    n_trials: int | None = None,
    look: bool = True,
) -> str | None:
    """Raise if the search of ``job`` cannot reach its storage; with ``look``, return
    the line to print when its study already holds its trials (else None).

    ``storage`` and ``n_trials`` are ``--storage`` and ``--n-trials``. Only a study in
    a file (journal, SQLite) that exists is looked at: nothing is created, and no
    database server is reached before the flow starts.

    Raises:
        JobError: ``--storage`` is not a storage (the accepted forms listed), or the
            storage is a database whose driver is not installed.
    """
    from sweepflow.search.study import study_location

    settings = job.optimize
    if settings is None:
        return None
    if storage is not None and (problem := storage_problem(storage)):
        raise JobError(f"--storage {problem}")
    name, location = study_location(settings, job.key, state, storage)
    missing = _driver_problem(location)
    if missing and storage is not None:
        raise JobError(f"--storage {missing}")
    if missing:
        raise job.error(f"cannot open its optimize.storage: {missing}", "optimize", "storage")
    total = n_trials or settings.n_trials or space.grid_size() or 20
    if not look:
        return None
    done = complete_study(job.key, location, name, total, settings.metrics)
    return None if done is None else done.message()


def _driver_problem(location: str) -> str | None:
    """Why a database URL cannot be opened here (SQLAlchemy cannot read it, or its
    driver is not installed), else None. Drivers are imported, databases not reached."""
    if storage_file(location) is not None:
        return None  # a journal or SQLite file: nothing to install
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(location).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        return f"{shown(location)!r} is not a database URL ({exc}): give {ACCEPTED}"
    except ImportError as exc:
        module = exc.name or str(exc)
        return (
            f"{shown(location)!r} needs the database driver '{module}', which is not "
            f"installed: pip install {_PACKAGES.get(module, module)}, or name an installed "
            "driver after '+' (postgresql+psycopg://...)"
        )
    return None
