"""MLflow's SQL tables written directly, many runs per transaction, without MLflow.

Two costs made the flow process slow. ``import mlflow`` and its SQL store take ~4 s
of CPU in every ``sweepflow run`` (pandas, the GenAI modules, the ORM models), and
MLflow's client spends ~25 ms per trial (``create_run``, ``log_batch``,
``set_terminated``: a session, a query and a commit each), more than a short trial.
For a SQL store (the default SQLite one, or PostgreSQL/MySQL) this module writes the
rows MLflow writes (experiment and its tags; run; its tags, params, metric history and
latest values; status and times) with SQLAlchemy Core, on the tables as they are in the
database (reflected), hundreds of runs per transaction. It writes records already put
under MLflow's rules (:mod:`sweepflow.tracking.rules`); ``tests/test_tracking.py``
checks that the rows equal those MLflow's client writes for the same records.

It is used only when the database's schema is the installed MLflow's (its Alembic
revision equals that of the per-user empty store MLflow made, see
:func:`sweepflow.tracking.uri.schema_head`) and has every column written here;
otherwise MLflow's client does everything. What users read (the UI, the analysis API)
goes through MLflow.
"""

from __future__ import annotations

import atexit
import math
import shutil
import threading
import time
from typing import Any
from urllib.parse import urlparse

from sweepflow.tracking import rules
from sweepflow.tracking.records import Finished, NewRun, Stale, new_run_id
from sweepflow.tracking.uri import local_path

__all__ = ["BulkStore", "Finished", "new_run_id"]

_SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
_TABLES = ("experiments", "experiment_tags", "runs", "tags", "params", "metrics", "latest_metrics")
_WRITTEN = {  # the columns written here: a schema without one of them is not ours
    "experiments": {"name", "artifact_location", "lifecycle_stage", "creation_time"},
    "experiment_tags": {"key", "value", "experiment_id"},
    "runs": {"run_uuid", "name", "experiment_id", "status", "start_time", "end_time"},
    "tags": {"key", "value", "run_uuid"},
    "params": {"key", "value", "run_uuid"},
    "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
    "latest_metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
}
_OPEN: dict[str, BulkStore | None] = {}
_OPEN_LOCK = threading.Lock()


def _now_ms() -> int:
    return int(time.time() * 1000)


class BulkStore:
    """Direct, batched writes to an MLflow SQL store (see the module docstring)."""

    def __init__(self, uri: str, engine: Any, tables: dict[str, Any]) -> None:
        self.uri, self.engine, self.t = uri, engine, tables
        self._locations: dict[str, str] = {}  # experiment id -> artifact location
        self._artifact_uris: dict[str, str] = {}  # run id -> its artifact URI

    @classmethod
    def open(cls, uri: str, head: str | None) -> BulkStore | None:
        """The store at ``uri`` (opened once per process), or None when it is not a SQL
        store at Alembic revision ``head`` with the expected tables."""
        with _OPEN_LOCK:
            if uri not in _OPEN:
                _OPEN[uri] = cls._connect(uri, head)
            return _OPEN[uri]

    @classmethod
    def _connect(cls, uri: str, head: str | None) -> BulkStore | None:
        if head is None or urlparse(uri).scheme.partition("+")[0] not in _SQL_SCHEMES:
            return None
        import sqlalchemy as sa

        if uri.startswith("sqlite"):  # wait up to 30 s for another writer's lock
            engine = sa.create_engine(uri, connect_args={"timeout": 30})
        else:
            # A database server: a bounded connect, and pooled connections checked
            # before reuse (a long sweep outlives idle ones a server or firewall drops).
            postgres = uri.startswith("postgresql")
            connect = {"connect_timeout": 10} if postgres else {}
            engine = sa.create_engine(uri, connect_args=connect, pool_pre_ping=True)
        try:
            with engine.connect() as connection:
                revision = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
                if [row[0] for row in revision] != [head]:
                    raise LookupError("another MLflow schema")
            metadata = sa.MetaData()
            metadata.reflect(engine, only=_TABLES)
        except Exception:  # not MLflow's schema of the installed version: MLflow decides
            engine.dispose()
            return None
        tables = {name: metadata.tables[name] for name in _TABLES}
        if any(not need <= set(tables[n].c.keys()) for n, need in _WRITTEN.items()):
            engine.dispose()
            return None
        # Closing the connections folds SQLite's write-ahead log into the database
        # file, so that file alone holds every run even when the process exits quickly.
        atexit.register(engine.dispose)
        return cls(uri, engine, tables)

    # -- experiments -----------------------------------------------------------------
    def experiment(self, name: str, location: str | None) -> str:
        """The id of the active experiment ``name``, created (artifacts at ``location``,
        else MLflow's default for the store) if missing."""
        import sqlalchemy as sa

        exp = self.t["experiments"]
        query = sa.select(exp.c.experiment_id, exp.c.lifecycle_stage).where(exp.c.name == name)
        with self.engine.begin() as db:
            found = db.execute(query).first()
            if found is None:
                now = _now_ms()
                row: dict[str, Any] = {"name": name, "artifact_location": location}
                row["lifecycle_stage"] = "active"
                row |= {"creation_time": now, "last_update_time": now}
                try:
                    new_id = db.execute(sa.insert(exp).values(row)).inserted_primary_key[0]
                except sa.exc.IntegrityError:  # another process made it meanwhile
                    db.rollback()
                    # This transaction is closed now (PostgreSQL aborts it at the error):
                    # read the other process's row through another connection.
                    with self.engine.connect() as other:
                        found = other.execute(query).first()
                else:
                    if location is None:
                        location = self._default_location(db, new_id)
                        update = sa.update(exp).where(exp.c.experiment_id == new_id)
                        db.execute(update.values(artifact_location=location))
                    self._locations[str(new_id)] = location
                    self._tag_experiment(db, new_id)
                    return str(new_id)
        if found.lifecycle_stage != "active":
            raise LookupError(
                f"MLflow experiment '{name}' is deleted: restore it (mlflow experiments "
                f"restore --experiment-id {found.experiment_id}) or name the job otherwise"
            )
        with self.engine.begin() as db:
            self._tag_experiment(db, found.experiment_id)
        return str(found.experiment_id)

    def _tag_experiment(self, db: Any, experiment_id: int) -> None:
        """Add :data:`rules.EXPERIMENT_TAGS` the experiment does not have yet."""
        import sqlalchemy as sa

        table = self.t["experiment_tags"]
        query = sa.select(table.c.key).where(table.c.experiment_id == int(experiment_id))
        have = {row[0] for row in db.execute(query)}
        rows = [
            {"key": k, "value": v, "experiment_id": int(experiment_id)}
            for k, v in rules.EXPERIMENT_TAGS.items()
            if k not in have
        ]
        if rows:
            db.execute(sa.insert(table), rows)

    def _default_location(self, db: Any, experiment_id: int) -> str:
        """MLflow's default: the Default experiment's folder with this id instead of 0."""
        import sqlalchemy as sa

        exp = self.t["experiments"]
        query = sa.select(exp.c.artifact_location).where(exp.c.experiment_id == 0)
        default = db.execute(query).scalar() or "./mlruns/0"
        return f"{default.rstrip('/').rpartition('/')[0]}/{experiment_id}"

    def artifact_uri(self, experiment_id: str, run_id: str) -> str:
        """Where the artifacts of ``run_id`` go (as MLflow's ``create_run`` sets it)."""
        if experiment_id not in self._locations:
            import sqlalchemy as sa

            exp = self.t["experiments"]
            query = sa.select(exp.c.artifact_location)
            with self.engine.connect() as db:
                location = db.execute(query.where(exp.c.experiment_id == int(experiment_id)))
                self._locations[experiment_id] = location.scalar() or ""
        return f"{self._locations[experiment_id].rstrip('/')}/{run_id}/artifacts"

    # -- runs ------------------------------------------------------------------------
    def create(self, experiment_id: str, runs: list[NewRun]) -> list[str]:
        """Create runs (RUNNING or SCHEDULED) with their tags and params in one
        transaction; their ids."""
        import sqlalchemy as sa

        run_rows, tag_rows, param_rows = [], [], []
        for run in runs:
            self._artifact_uris[run.run_id] = self.artifact_uri(experiment_id, run.run_id)
            run_rows.append(
                {
                    "run_uuid": run.run_id,
                    "name": run.name,
                    "artifact_uri": self._artifact_uris[run.run_id],
                    "experiment_id": int(experiment_id),
                    "source_type": "UNKNOWN",  # what MLflow's create_run stores
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": run.tags.get("mlflow.user", "unknown"),
                    "status": run.status,
                    "start_time": run.start_ms,
                    "end_time": None,
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                }
            )
            tag_rows += [
                {"key": k, "value": v, "run_uuid": run.run_id} for k, v in run.tags.items()
            ]
            param_rows += [
                {"key": k, "value": v, "run_uuid": run.run_id} for k, v in run.params.items()
            ]
        known = set(self.t["runs"].c.keys())
        run_rows = [{k: v for k, v in row.items() if k in known} for row in run_rows]
        with self.engine.begin() as db:
            db.execute(sa.insert(self.t["runs"]), run_rows)
            for name, rows in (("tags", tag_rows), ("params", param_rows)):
                if rows:
                    db.execute(sa.insert(self.t[name]), rows)
        return [run.run_id for run in runs]

    def finish(self, runs: list[Finished]) -> None:
        """Log ``runs`` (already :func:`~sweepflow.tracking.records.cleaned`) and set
        their status in one transaction.

        Params a run has already keep their value and tags are overwritten, as MLflow's
        client does. Raises if a row exists already (e.g. a metric point the program
        logged itself through MLflow); nothing is written then.
        """
        import sqlalchemy as sa

        ids = [run.run_id for run in runs]
        tags, metrics, latest_rows = [], [], []
        with self.engine.begin() as db:
            have = self._params_of(db, ids)
            params = [
                {"key": k, "value": v, "run_uuid": run.run_id}
                for run in runs
                for k, v in run.params.items()
                if k not in have.get(run.run_id, ())
            ]
            for run in runs:
                tags += [
                    {"key": k, "value": v, "run_uuid": run.run_id} for k, v in run.tags.items()
                ]
                metrics += [_metric_row(run.run_id, row) for row in run.metrics]
                latest = rules.latest_metrics(run.metrics).values()
                latest_rows += [_metric_row(run.run_id, row) for row in latest]
            table = self.t["tags"]
            for run in runs:
                if run.tags:  # overwrite, as MLflow's set_tag does
                    gone = sa.delete(table).where(
                        table.c.run_uuid == run.run_id, table.c.key.in_(list(run.tags))
                    )
                    db.execute(gone)
            for name, rows in (
                ("params", params),
                ("tags", tags),
                ("metrics", metrics),
                ("latest_metrics", latest_rows),
            ):
                if rows:
                    db.execute(sa.insert(self.t[name]), rows)
            ends: dict[tuple[str, int], list[str]] = {}
            for run in runs:
                if run.status is not None:
                    ends.setdefault((run.status, run.end_ms), []).append(run.run_id)
                if run.start_ms is not None:
                    self._set_start(db, run.run_id, run.start_ms)
            for (status, end_ms), same in ends.items():
                self._set_status(db, same, status, end_ms)
        for run in runs:
            self._copy_artifacts(run)

    def _params_of(self, db: Any, run_ids: list[str]) -> dict[str, set[str]]:
        import sqlalchemy as sa

        table = self.t["params"]
        found: dict[str, set[str]] = {}  # run id -> its param keys
        for start in range(0, len(run_ids), 500):
            query = sa.select(table.c.run_uuid, table.c.key)
            rows = db.execute(query.where(table.c.run_uuid.in_(run_ids[start : start + 500])))
            for run_id, key in rows:
                found.setdefault(run_id, set()).add(key)
        return found

    def set_start(self, run_id: str, start_ms: int) -> None:
        """Set a run's start time (the trial's own start, known when it ends)."""
        with self.engine.begin() as db:
            self._set_start(db, run_id, start_ms)

    def _set_start(self, db: Any, run_id: str, start_ms: int) -> None:
        import sqlalchemy as sa

        runs = self.t["runs"]
        db.execute(sa.update(runs).where(runs.c.run_uuid == run_id).values(start_time=start_ms))

    def mark_running(self, run_ids: list[str]) -> None:
        """SCHEDULED runs now RUNNING (their trials were submitted)."""
        import sqlalchemy as sa

        if not run_ids:
            return
        runs = self.t["runs"]
        query = sa.update(runs).where(runs.c.run_uuid.in_(run_ids), runs.c.status == "SCHEDULED")
        with self.engine.begin() as db:
            db.execute(query.values(status="RUNNING"))

    def set_status(self, run_ids: list[str], status: str, end_ms: int | None = None) -> None:
        """End runs (``KILLED``, ``FINISHED``...) without logging anything."""
        if not run_ids:
            return
        with self.engine.begin() as db:
            self._set_status(db, run_ids, status, end_ms or _now_ms())

    def _set_status(self, db: Any, run_ids: list[str], status: str, end_ms: int) -> None:
        import sqlalchemy as sa

        runs = self.t["runs"]
        query = sa.update(runs).where(runs.c.run_uuid.in_(run_ids))
        db.execute(query.values(status=status, end_time=end_ms))

    def running(
        self,
        experiment_id: str,
        key: str,
        value: str,
        statuses: tuple[str, ...] = ("RUNNING", "SCHEDULED"),
    ) -> list[Stale]:
        """The runs of an experiment with tag ``key`` = ``value`` in ``statuses``
        (default: not ended)."""
        import sqlalchemy as sa

        runs, tags, params = self.t["runs"], self.t["tags"], self.t["params"]
        query = (
            sa.select(runs.c.run_uuid, runs.c.status)
            .join(tags, tags.c.run_uuid == runs.c.run_uuid)
            .where(
                runs.c.experiment_id == int(experiment_id),
                runs.c.status.in_(statuses),
                runs.c.lifecycle_stage == "active",
                tags.c.key == key,
                tags.c.value == value,
            )
        )
        with self.engine.connect() as db:
            found = {i: Stale(i, {}, {}, status) for i, status in db.execute(query)}
            ids = list(found)
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                for table, attr in ((tags, "tags"), (params, "params")):
                    rows = db.execute(
                        sa.select(table.c.run_uuid, table.c.key, table.c.value).where(
                            table.c.run_uuid.in_(part)
                        )
                    )
                    for run_id, k, v in rows:
                        getattr(found[run_id], attr)[k] = v
        return list(found.values())

    def _copy_artifacts(self, run: Finished) -> None:
        if not run.artifacts:
            return
        root = local_path(self.artifact_uri_of(run.run_id))
        if root is None:  # a remote artifact store: MLflow's client uploads
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            for path, folder in run.artifacts:
                client.log_artifact(run.run_id, str(path), folder)
            return
        base = root.resolve()
        for path, folder in run.artifacts:
            target = (root / folder).resolve() if folder else base
            if not target.is_relative_to(base):
                continue  # a report line written by hand that leaves the run's artifacts
            target.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target / path.name, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, target / path.name)

    def artifact_uri_of(self, run_id: str) -> str:
        """The artifact URI recorded for ``run_id``."""
        if run_id not in self._artifact_uris:
            import sqlalchemy as sa

            runs = self.t["runs"]
            with self.engine.connect() as db:
                query = sa.select(runs.c.artifact_uri).where(runs.c.run_uuid == run_id)
                self._artifact_uris[run_id] = db.execute(query).scalar() or ""
        return self._artifact_uris[run_id]

    def write_artifact(self, run_id: str, name: str, text: str) -> None:
        """Write a text file among the artifacts of ``run_id``."""
        root = local_path(self.artifact_uri_of(run_id))
        if root is None:
            from mlflow import MlflowClient

            MlflowClient(tracking_uri=self.uri).log_text(run_id, text, name)
            return
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def _metric_row(run_id: str, row: tuple[str, float, int, int]) -> dict[str, Any]:
    """A metrics (or latest_metrics) row as MLflow's SQL store writes it."""
    key, value, step, timestamp = row
    is_nan = math.isnan(value)
    stored = 0.0 if is_nan else max(-rules.MAX_FLOAT, min(rules.MAX_FLOAT, value))
    return {
        "key": key,
        "value": stored,
        "timestamp": timestamp,
        "step": step,
        "is_nan": is_nan,
        "run_uuid": run_id,
    }
