"""A sweep's source of units: its trials, short ones grouped so a task run holds enough work."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Generic, TypeVar

from sweepflow.engine.scheduler import Outcome, Unit

__all__ = ["Feed"]

T = TypeVar("T")


class Feed(Generic[T]):
    """The trials still to submit, handed out in units (one task run each).

    ``chunk: N`` gives units of N trials. ``chunk: auto`` (the default) gives one trial
    per task until a few have finished, then groups trials shorter than
    ``SHORT_TRIAL`` seconds so a task run holds about ``TASK_SECONDS`` of work: a task
    run costs ~30 ms of API calls locally and ~200 ms on Dask, a lot next to a 50 ms
    trial. A unit holds at most that much work, so the last ones end within about
    ``TASK_SECONDS`` of each other, and no more than a slot's share of the trials left
    and in flight (so trivial trials make one unit per slot, not ever smaller ones).
    """

    SHORT_TRIAL = 1.0
    TASK_SECONDS = 2.0

    def __init__(self, todo: Sequence[T], chunk: int | str, window: int) -> None:
        self.todo, self.position, self.window = list(todo), 0, window
        self.fixed = chunk if isinstance(chunk, int) else None
        self.durations: list[float] = []

    def __bool__(self) -> bool:
        return self.position < len(self.todo)

    def observe(self, outcome: Outcome) -> None:
        """Record how long a finished trial ran (trials that did not run: ignored)."""
        if outcome.status == "done" and outcome.seconds is not None:
            self.durations.append(outcome.seconds)

    def size(self, inflight: int = 0) -> int:
        """Trials in the next unit, ``inflight`` trials being out in other units."""
        if self.fixed:
            return self.fixed
        if len(self.durations) < min(self.window, 4):
            return 1
        typical = statistics.median(self.durations[-50:])
        if typical >= self.SHORT_TRIAL:
            return 1
        by_time = math.ceil(self.TASK_SECONDS / max(typical, 1e-3))
        share = math.ceil((len(self.todo) - self.position + inflight) / self.window)
        return max(1, min(by_time, share))

    def take(self, inflight: int = 0) -> Unit[T] | None:
        """The next unit, or None when every trial has been handed out."""
        if not self:
            return None
        items = self.todo[self.position : self.position + self.size(inflight)]
        self.position += len(items)
        return Unit(items)

    def rest(self) -> list[T]:
        """Trials never handed out."""
        return self.todo[self.position :]
