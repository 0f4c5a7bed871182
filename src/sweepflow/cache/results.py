"""A sweep whose every trial is cached, answered without starting anything.

``sweepflow run`` checks the result files first: when every trial of the sweep has a
cached result and no run of the job is in progress (or was killed and left runs to
tidy up), it prints the summary from those results and exits, without Prefect, MLflow
or a flow run (like ``make`` with nothing to do). Anything else goes through the flow.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from sweepflow.execution.trial import TrialResult, TrialSpec
from sweepflow.tracking.writer import _pid_alive  # the same liveness check as for stale MLflow runs

__all__ = ["all_cached", "read_result", "running"]

_RESULT_CLASS = f"{TrialResult.__module__}.{TrialResult.__qualname__}"


def _active(state: Path, job: str) -> Path:
    return state / "runs" / job / "active"


@contextlib.contextmanager
def running(state: Path, job: str) -> Iterator[None]:
    """Mark ``job`` as being run by this process while the block runs.

    A marker left by a killed process stays until the next run of the job, which goes
    through the flow (it reaps what the killed run left) and then clears it.
    """
    folder = _active(state, job)
    folder.mkdir(parents=True, exist_ok=True)
    for marker in folder.iterdir():
        if marker.name.isdigit() and not _pid_alive(int(marker.name)):
            marker.unlink(missing_ok=True)  # this run reaps what that one left
    mine = folder / str(os.getpid())
    mine.touch()
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


def read_result(path: Path) -> TrialResult | None:
    """A result file as Prefect's result store wrote it (JSON serializer), or None."""
    try:
        record = json.loads(path.read_bytes())
        payload = json.loads(record["result"])
        if payload.get("__class__") != _RESULT_CLASS:
            return None
        return TrialResult.model_validate(payload["data"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def all_cached(specs: list[TrialSpec], state: Path, job: str) -> list[TrialResult] | None:
    """Every trial's cached result, in order; None if one is missing or a run of
    ``job`` is active (or was killed)."""
    active = _active(state, job)
    if active.is_dir() and any(active.iterdir()):
        return None
    results = []
    folder = state / "results"
    for spec in specs:
        result = read_result(folder / spec.cache_key) if spec.cache_key else None
        if result is None or result.cache_key != spec.cache_key:
            return None
        results.append(result)
    return results
