"""One MLflow trial run as a frozen snapshot: params, metrics, status, config, artifacts.

Built by :func:`sweepflow.analysis.runs`; MLflow is imported only to read a remote
``config.yaml``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from sweepflow.reporting.channel import unflatten
from sweepflow.tracking.uri import local_path

__all__ = ["Run", "unflatten"]  # unflatten: re-exported for analysis


def _time(millis: int | None) -> datetime | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000).astimezone()


@dataclass(frozen=True, eq=False)
class Run:
    """One trial run, as recorded in MLflow (a snapshot; fields do not refresh).

    Attributes:
        id: The MLflow run id.
        job: The job (tag ``sweepflow.job``).
        trial: The trial digest (tag ``sweepflow.trial``).
        params: Params as MLflow stores them (strings), keys as written (``model.depth``).
        metrics: The latest value of each metric.
        status: ``FINISHED``, ``FAILED``, ``KILLED``, ``RUNNING`` or ``SCHEDULED``.
        start_time: When the run started (local time zone), or None.
        end_time: When it ended, or None while it runs.
        tags: Every tag of the run.
        name: The MLflow run name.
        experiment_id: The MLflow experiment id.
        artifact_uri: Where its artifacts live.
        tracking_uri: The MLflow store it was read from.
    """

    id: str
    job: str | None
    trial: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    status: str
    start_time: datetime | None
    end_time: datetime | None
    tags: dict[str, str] = field(repr=False)
    name: str = field(default="", repr=False)
    experiment_id: str = field(default="", repr=False)
    artifact_uri: str = field(default="", repr=False)
    tracking_uri: str = field(default="", repr=False)

    @classmethod
    def from_mlflow(cls, run: Any, tracking_uri: str) -> Run:
        """Build from an ``mlflow.entities.Run``."""
        info, data = run.info, run.data
        return cls(
            id=info.run_id,
            job=data.tags.get("sweepflow.job"),
            trial=data.tags.get("sweepflow.trial"),
            params=dict(data.params),
            metrics=dict(data.metrics),
            status=info.status,
            start_time=_time(info.start_time),
            end_time=_time(info.end_time),
            tags=dict(data.tags),
            name=info.run_name or "",
            experiment_id=info.experiment_id,
            artifact_uri=info.artifact_uri or "",
            tracking_uri=tracking_uri,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Run):
            return NotImplemented
        return (self.id, self.tracking_uri) == (other.id, other.tracking_uri)

    def __hash__(self) -> int:
        return hash((self.id, self.tracking_uri))

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while it runs."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    @property
    def parent_id(self) -> str | None:
        """The id of the parent run (one ``sweepflow run`` invocation)."""
        return self.tags.get("mlflow.parentRunId")

    @property
    def artifact_dir(self) -> Path | None:
        """The local folder of the run's artifacts; None when they are not file-based."""
        return local_path(self.artifact_uri)

    @cached_property
    def config(self) -> dict[str, Any]:
        """The ``config.yaml`` artifact if the program used ``sweepflow.main``, else the
        params nested by their dotted keys (values stay strings)."""
        text = self._config_text()
        if text is not None:
            loaded = yaml.safe_load(text)
            if isinstance(loaded, dict):
                return loaded
        return unflatten(self.params)

    def _config_text(self) -> str | None:
        folder = self.artifact_dir
        if folder is not None:
            path = folder / "config.yaml"
            return path.read_text(encoding="utf-8") if path.is_file() else None
        if not self.artifact_uri:
            return None
        from mlflow.artifacts import download_artifacts
        from mlflow.exceptions import MlflowException

        try:
            with tempfile.TemporaryDirectory() as scratch:
                local = download_artifacts(
                    run_id=self.id,
                    artifact_path="config.yaml",
                    dst_path=scratch,
                    tracking_uri=self.tracking_uri,
                )
                return Path(local).read_text(encoding="utf-8")
        except (MlflowException, OSError):
            return None
