"""Progress events from a running job to whoever shows them (the CLI's live bar).

The flow emits events to the current sink; the CLI installs a rich progress bar as the
sink around its flow call. Without a sink (a deployment run), events are dropped and
the Prefect logs and trial table artifact tell the story.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "ProgressSink",
    "TrialOutcome",
    "count_outcomes",
    "current_sink",
    "metric_columns",
    "outcome_of",
    "sink",
]


@dataclass(frozen=True)
class TrialOutcome:
    """How one trial ended, for the progress bar and the summary table.

    Attributes:
        status: ``done``, ``cached``, ``failed``, ``cancelled`` or ``pruned`` (a search
            trial its pruner stopped).
        error: Why it did not finish, or a note on how it did (it ran again because
            its cached result was corrupt; another run ran it); empty if none.
        params: The trial's parameters by key, as its program received them (the
            summary's parameter columns); empty for a trial named by its items alone.
    """

    index: int
    label: str
    status: str
    duration: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    workdir: str = ""
    run_id: str = ""
    params: dict[str, str] = field(default_factory=dict)


class ProgressSink(Protocol):
    """Receives the events of one job execution."""

    def start(self, job: str, total: int, cached: int) -> None:
        """The job starts: ``total`` trials, of which ``cached`` are cache hits."""

    def running(self, count: int) -> None:
        """``count`` trials are in flight now."""

    def finished(self, outcome: TrialOutcome) -> None:
        """A trial ended (done, failed, cancelled) or was a cache hit."""

    def note(self, text: str) -> None:
        """Something the user should read now (e.g. a corrupt cached result)."""


class _NullSink:
    def start(self, job: str, total: int, cached: int) -> None:
        pass

    def running(self, count: int) -> None:
        pass

    def finished(self, outcome: TrialOutcome) -> None:
        pass

    def note(self, text: str) -> None:
        pass


_current: list[ProgressSink] = [_NullSink()]


def current_sink() -> ProgressSink:
    """The sink events go to now."""
    return _current[-1]


@contextmanager
def sink(target: ProgressSink) -> Iterator[ProgressSink]:
    """Send progress events to ``target`` inside the ``with`` block."""
    _current.append(target)
    try:
        yield target
    finally:
        _current.remove(target)


def outcome_of(spec: Any, status: str, result: Any = None, error: str = "") -> TrialOutcome:
    """The outcome of a trial spec with its result (a ``TrialResult``) if it has one."""
    return TrialOutcome(
        index=spec.index,
        label=spec.label,
        status=status,
        duration=result.duration if result else None,
        metrics=dict(result.metrics) if result else {},
        error=error,
        workdir=spec.workdir,
        params=dict(spec.params),
    )


def count_outcomes(outcomes: Iterable[TrialOutcome], total: int) -> dict[str, int]:
    """Trials by status (done, cached, failed, cancelled, pruned) and the total."""
    counts = dict.fromkeys(("done", "cached", "failed", "cancelled", "pruned"), 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    counts["total"] = total
    return counts


def metric_columns(
    rows: list[TrialOutcome], target: str | None = None, limit: int = 8
) -> list[str]:
    """The metric columns of a trial table: the target metric first (a search's
    objective; else the first metric a trial reported), then the others by name."""
    seen: list[str] = []
    for o in rows:
        seen.extend(name for name in o.metrics if name not in seen)
    first = target if target in seen else (seen[0] if seen else None)
    rest = sorted(name for name in seen if name != first)
    return ([first] if first else []) + rest[: limit - 1]
