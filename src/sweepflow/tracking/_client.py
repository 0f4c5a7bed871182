"""The same records as :mod:`sweepflow.tracking._bulk` writes, through MLflow's client.

Used for stores that are not a SQL database of the installed MLflow's schema (an
``http://`` tracking server, a ``file:`` store, another schema version), and as the
fallback for a run the direct route could not write. Records arrive already under
:mod:`sweepflow.tracking.rules`, so MLflow's own checks pass them unchanged.

One difference MLflow's API imposes: it cannot move a run's start time, so a run
keeps its creation time here (the writer creates it when the trial starts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sweepflow.tracking import rules
from sweepflow.tracking.records import Finished, NewRun, Stale
from sweepflow.tracking.uri import ensure_experiment

__all__ = ["ClientStore"]


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ClientStore:
    """Writes records with an ``MlflowClient`` (the same interface as ``BulkStore``)."""

    def __init__(self, uri: str, client: Any) -> None:
        self.uri, self.client = uri, client

    def experiment(self, name: str, location: str | None = None) -> str:
        """The id of experiment ``name`` (created, tagged, if missing)."""
        return ensure_experiment(self.client, name, self.uri)

    def create(self, experiment_id: str, runs: list[NewRun]) -> list[str]:
        """Create runs (RUNNING or SCHEDULED) with their tags and params; their ids
        (MLflow's own)."""
        from mlflow.entities import Param

        ids = []
        for run in runs:
            created = self.client.create_run(
                experiment_id, start_time=run.start_ms, tags=run.tags, run_name=run.name
            )
            run_id = created.info.run_id
            if run.status != "RUNNING":
                self.client.update_run(run_id, status=run.status)
            params = [Param(k, v) for k, v in run.params.items()]
            for chunk in _chunks(params, rules.MAX_PARAMS_TAGS_PER_BATCH):
                self.client.log_batch(run_id, params=chunk)
            ids.append(run_id)
        return ids

    def finish(self, runs: list[Finished]) -> None:
        """Log each run (already cleaned) and set its status, one run at a time."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        for run in runs:
            metrics = [Metric(k, v, ts, step) for k, v, step, ts in run.metrics]
            params = [Param(k, v) for k, v in run.params.items()]
            tags = [RunTag(k, v) for k, v in run.tags.items()]
            limit = rules.MAX_PARAMS_TAGS_PER_BATCH
            if len(params) <= limit and len(tags) <= limit and len(metrics) <= 800:
                try:
                    self.client.log_batch(run.run_id, metrics, params, tags)
                    params, metrics, tags = [], [], []
                except MlflowException:
                    pass  # a param the run has with another value: item by item below
            for chunk in _chunks(metrics, rules.MAX_METRICS_PER_BATCH - 100):
                self.client.log_batch(run.run_id, metrics=chunk)
            for chunk in _chunks(tags, limit):
                self.client.log_batch(run.run_id, tags=chunk)
            for param in params:
                try:
                    self.client.log_batch(run.run_id, params=[param])
                except MlflowException:
                    continue  # the value the run has stands (MLflow never changes a param)
            for path, folder in run.artifacts:
                self.client.log_artifact(run.run_id, str(path), folder)
            if run.status is not None:
                self.client.set_terminated(run.run_id, status=run.status, end_time=run.end_ms)

    def mark_running(self, run_ids: list[str]) -> None:
        """SCHEDULED runs now RUNNING (their trials were submitted)."""
        for run_id in run_ids:
            self.client.update_run(run_id, status="RUNNING")

    def set_status(self, run_ids: list[str], status: str, end_ms: int | None = None) -> None:
        """End runs without logging anything."""
        for run_id in run_ids:
            self.client.set_terminated(run_id, status=status, end_time=end_ms)

    def running(
        self,
        experiment_id: str,
        key: str,
        value: str,
        statuses: tuple[str, ...] = ("RUNNING", "SCHEDULED"),
    ) -> list[Stale]:
        """The runs of an experiment with tag ``key`` = ``value`` in ``statuses``
        (default: not ended)."""
        found = [
            run
            for status in statuses
            for run in self.client.search_runs(
                [experiment_id],
                f"attributes.status = '{status}' and tags.`{key}` = '{value}'",
                max_results=50_000,
            )
        ]
        return [
            Stale(r.info.run_id, dict(r.data.tags), dict(r.data.params), r.info.status)
            for r in found
        ]

    def write_artifact(self, run_id: str, name: str, text: str) -> None:
        """Write a text file among the artifacts of ``run_id``."""
        self.client.log_text(run_id, text, name)
