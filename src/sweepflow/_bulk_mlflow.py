"""Many MLflow runs per database transaction, for SQL tracking stores.

MLflow's client spends ~25 ms per trial (``create_run``, ``log_batch``,
``set_terminated``: a session, a query and a commit each), which is more than a short
trial. For a SQL store (the default SQLite one, or PostgreSQL/MySQL) this module writes
the same rows through MLflow's own SQLAlchemy models and session, for hundreds of runs
in one transaction. The rows are exactly those MLflow writes (run, ``mlflow.runName``
and ``mlflow.user`` tags, params, metric history and latest values); everything else
(reading, the UI, the analysis API) goes through MLflow's public API. Pinned to the
MLflow versions in ``pyproject.toml``; other stores use the public API.
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

__all__ = ["BulkStore", "Finished", "new_run_id"]

_MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +/- infinity


def new_run_id() -> str:
    """A run id as MLflow makes them (32 hex digits)."""
    return uuid.uuid4().hex


@dataclass
class Finished:
    """A finished trial's run: how it ended and what it logged."""

    run_id: str
    status: str  # FINISHED, FAILED or KILLED
    end_ms: int
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, ts
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # file, folder in run


class BulkStore:
    """Batched writes of runs to a SQL tracking store (see the module docstring)."""

    def __init__(self, store: Any, experiment_id: str, artifact_location: str) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.artifact_location = artifact_location.rstrip("/")

    @classmethod
    def for_client(cls, client: Any, experiment_id: str) -> BulkStore | None:
        """A bulk writer for ``client``'s store, or None when it is not a SQL store."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = getattr(getattr(client, "_tracking_client", None), "store", None)
        if not isinstance(store, SqlAlchemyStore):
            return None
        location = client.get_experiment(experiment_id).artifact_location
        return cls(store, experiment_id, location)

    def artifact_uri(self, run_id: str) -> str:
        return f"{self.artifact_location}/{run_id}/artifacts"

    def create(self, runs: Iterable[tuple[str, str, dict[str, str]]], start_ms: int) -> None:
        """Create RUNNING runs ``(run_id, name, tags)`` in one transaction."""
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

        run_rows, tag_rows = [], []
        for run_id, name, tags in runs:
            run_rows.append(
                {
                    "run_uuid": run_id,
                    "name": name,
                    "artifact_uri": self.artifact_uri(run_id),
                    "experiment_id": int(self.experiment_id),
                    "source_type": "UNKNOWN",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": tags.get("mlflow.user", "unknown"),
                    "status": "RUNNING",
                    "start_time": start_ms,
                    "end_time": None,
                    "deleted_time": None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                }
            )
            tag_rows += [
                {"key": k, "value": str(v)[:8000], "run_uuid": run_id}
                for k, v in {**tags, "mlflow.runName": name}.items()
            ]
        with self.store.ManagedSessionMaker(read_only=False) as session:
            session.execute(sa.insert(SqlRun.__table__), run_rows)
            if tag_rows:
                session.execute(sa.insert(SqlTag.__table__), tag_rows)

    def finish(self, runs: list[Finished]) -> None:
        """Log and close ``runs`` in one transaction (raises if a row exists already,
        e.g. a param the program logged itself; nothing is written then)."""
        import sqlalchemy as sa
        from mlflow.store.tracking.dbmodels.models import (
            SqlLatestMetric,
            SqlMetric,
            SqlParam,
            SqlRun,
            SqlTag,
        )

        params, tags, metrics, latest_rows = [], [], [], []
        for run in runs:
            params += [
                {"key": k, "value": str(v)[:8000], "run_uuid": run.run_id}
                for k, v in run.params.items()
            ]
            tags += [
                {"key": k, "value": str(v)[:8000], "run_uuid": run.run_id}
                for k, v in run.tags.items()
            ]
            latest: dict[str, dict[str, Any]] = {}
            for key, value, step, ts in run.metrics:
                is_nan = math.isnan(value)
                stored = 0.0 if is_nan else max(-_MAX_FLOAT, min(_MAX_FLOAT, value))
                row = {
                    "key": key,
                    "value": stored,
                    "timestamp": ts,
                    "step": step,
                    "is_nan": is_nan,
                    "run_uuid": run.run_id,
                }
                metrics.append(row)
                old = latest.get(key)
                if old is None or (step, ts, stored) >= (
                    old["step"],
                    old["timestamp"],
                    old["value"],
                ):
                    latest[key] = row
            latest_rows += latest.values()
        with self.store.ManagedSessionMaker(read_only=False) as session:
            for model, rows in (
                (SqlParam, params),
                (SqlTag, tags),
                (SqlMetric, metrics),
                (SqlLatestMetric, latest_rows),
            ):
                if rows:
                    session.execute(sa.insert(model.__table__), rows)
            ends: dict[tuple[str, int], list[str]] = {}
            for run in runs:
                ends.setdefault((run.status, run.end_ms), []).append(run.run_id)
            for (status, end_ms), ids in ends.items():
                session.execute(
                    sa.update(SqlRun.__table__)
                    .where(SqlRun.__table__.c.run_uuid.in_(ids))
                    .values(status=status, end_time=end_ms)
                )
        for run in runs:
            self._copy_artifacts(run)

    def _copy_artifacts(self, run: Finished) -> None:
        if not run.artifacts:
            return
        root = _local_path(self.artifact_uri(run.run_id))
        if root is None:  # a remote artifact store: MLflow's client uploads
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.store.db_uri)
            for path, folder in run.artifacts:
                client.log_artifact(run.run_id, str(path), folder)
            return
        for path, folder in run.artifacts:
            target = root / folder if folder else root
            target.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target / path.name, dirs_exist_ok=True)
            else:
                shutil.copyfile(path, target / path.name)


def _local_path(uri: str) -> Path | None:
    """The folder of a ``file:`` (or plain path) artifact URI; None for remote ones."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None
