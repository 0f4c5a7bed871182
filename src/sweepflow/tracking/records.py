"""What the writer hands to a route: new runs, finished runs, runs left RUNNING.

Records are plain data. :func:`new_run` and :func:`cleaned` apply
:mod:`sweepflow.tracking.rules` once, so both routes write exactly the same thing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweepflow.tracking import rules

__all__ = ["Finished", "NewRun", "Stale", "cleaned", "new_run", "new_run_id"]


def new_run_id() -> str:
    """A run id as MLflow makes them (32 hex digits)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class NewRun:
    """A run to create, with its tags and params from the first moment: RUNNING, or
    SCHEDULED (a trial queued to run; :meth:`mark_running` when it is submitted)."""

    run_id: str
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    start_ms: int
    status: str = "RUNNING"


@dataclass
class Finished:
    """A finished run: how it ended and what it logged.

    ``params`` already in the run are kept as they are (MLflow refuses to change a
    param); ``tags`` overwrite; ``start_ms`` (the trial's own start) replaces the
    run's creation time where the route can change it.
    """

    run_id: str
    status: str | None  # FINISHED, FAILED or KILLED; None leaves the run as it is
    end_ms: int
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, ts
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # file, folder in run
    start_ms: int | None = None


@dataclass
class Stale:
    """A run found by status (e.g. left RUNNING): its id, tags, params and status."""

    run_id: str
    tags: dict[str, str]
    params: dict[str, str]
    status: str = "RUNNING"


def new_run(
    run_id: str,
    name: str,
    tags: dict[str, Any],
    params: dict[str, Any] | None,
    start_ms: int,
    parent_id: str | None = None,
    status: str = "RUNNING",
) -> NewRun:
    """A new run under MLflow's rules (default tags, valid keys, cut values)."""
    clean, notes = rules.clean_params(params or {})
    merged = rules.run_tags(name, {**tags, **notes}, parent_id)
    return NewRun(run_id, merged["mlflow.runName"], merged, clean, start_ms, status)


def cleaned(record: Finished) -> Finished:
    """``record`` under MLflow's rules (valid keys, cut values, no repeated points)."""
    params, notes = rules.clean_params(record.params)
    return replace(
        record,
        params=params,
        tags=rules.clean_tags({**record.tags, **notes}),
        metrics=rules.clean_metrics(record.metrics),
    )
