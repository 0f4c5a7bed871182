"""The one scheduling loop: units from a source, ``window`` of them in flight on a runner.

Sweeps and searches (and workflow steps) are *units* of one or more *items* (trials).
The loop knows nothing of Prefect, Optuna or MLflow: a :class:`Source` hands out units,
a :class:`Runner` runs them and says when each is done, and :class:`Callbacks` hear
what happens (``started`` before a unit is submitted, ``finished`` once per item,
``aborted`` when the loop is left by an exception). Unit-tested with fake runners.
"""

from __future__ import annotations

import itertools
import queue
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "Callbacks",
    "Outcome",
    "Pending",
    "Report",
    "Runner",
    "Source",
    "Unit",
    "schedule",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """How one item ended.

    Attributes:
        status: ``done``, ``cached`` (settled without running), ``failed``,
            ``cancelled`` (never ran) or ``pruned`` (a search trial its pruner stopped).
        result: What the item produced (``None`` unless done or cached).
        error: Why it did not finish (empty when it did).
        seconds: How long it ran, if known (chunking reads it).
        tags: Runner facts worth recording (e.g. ``prefect.task_run_id``).
    """

    status: str
    result: Any = None
    error: str = ""
    seconds: float | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit(Generic[T]):
    """Items that run together (one task run). ``settled`` holds one outcome per item
    when the unit needs no run at all (a cache hit): it is started, then finished at
    once, never submitted."""

    items: Sequence[T]
    settled: Sequence[Outcome] | None = None


class Pending(Protocol):
    """A submitted unit (a future, say)."""

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn`` (from any thread) once the unit has ended, at once if it has."""

    def outcomes(self) -> Sequence[Outcome]:
        """One outcome per item, in order; called on the loop's thread after done."""


class Runner(Protocol):
    """Runs units somewhere (threads, processes, a cluster)."""

    def submit(self, payload: Any) -> Pending:
        """Start a unit (``payload``: what ``Callbacks.started`` returned for it)."""


class Source(Protocol[T]):
    """Where units come from: a sweep's list of trials, a study's asks."""

    def take(self, inflight: int) -> Unit[T] | None:
        """The next unit, ``inflight`` items being out; ``None``: nothing more."""

    def observe(self, outcome: Outcome) -> None:
        """An item ended (its outcome as settled by ``Callbacks.finished``)."""

    def rest(self) -> list[T]:
        """Items never handed out."""


def _notify(done: queue.Queue[int], key: int) -> Callable[[Any], None]:
    return lambda _: done.put(key)


def _same(items: Sequence[Any]) -> Any:
    return items


def _nothing(*args: Any) -> None:
    return None


@dataclass(frozen=True)
class Callbacks(Generic[T]):
    """What the loop tells its caller; each one is optional.

    Attributes:
        started: Called with a unit's items before it is submitted (e.g. to create
            their tracking runs); returns the payload handed to ``Runner.submit``.
        finished: Called once per item with its outcome; may return a revised outcome
            (e.g. a search trial that reported no objective is failed).
        aborted: Called once, when an exception (KeyboardInterrupt included) leaves the
            loop, with the items in flight and those never handed out; then the
            exception propagates.
        running: Called with the number of items in flight whenever it may change.
    """

    started: Callable[[Sequence[T]], Any] = _same
    finished: Callable[[T, Outcome], Outcome | None] = _nothing
    aborted: Callable[[list[T]], None] = _nothing
    running: Callable[[int], None] = _nothing


@dataclass(frozen=True)
class Report(Generic[T]):
    """What the loop did: every item it finished with its outcome, in finishing order,
    and whether it stopped taking units at a failure (``fail_fast``)."""

    outcomes: list[tuple[T, Outcome]]
    stopped: bool


def schedule(
    source: Source[T],
    runner: Runner,
    window: int,
    callbacks: Callbacks[T] | None = None,
    fail_fast: bool = False,
) -> Report[T]:
    """Run every unit of ``source`` on ``runner``, at most ``window`` units in flight.

    Each item is finished exactly once. With ``fail_fast`` the first failed item stops
    the taking of units; the units in flight end, and the items never handed out are
    finished as ``cancelled``. On any exception the in-flight and never-handed-out
    items go to ``callbacks.aborted`` and the exception is raised again.
    """
    calls = callbacks or Callbacks()
    done: queue.Queue[int] = queue.Queue()
    inflight: dict[int, Sequence[T]] = {}
    pending: dict[int, Pending] = {}
    unsettled: list[T] = []  # items of the unit being finished, not finished yet
    report: list[tuple[T, Outcome]] = []
    keys = itertools.count()
    stopped = exhausted = False

    def finish(items: Sequence[T], outcomes: Sequence[Outcome]) -> None:
        nonlocal stopped
        if len(outcomes) != len(items):
            raise ValueError(f"{len(outcomes)} outcomes for a unit of {len(items)} items")
        unsettled[:] = items
        for item, outcome in zip(items, outcomes, strict=True):
            settled = calls.finished(item, outcome) or outcome
            unsettled.pop(0)  # finished only once its callback returned
            report.append((item, settled))
            source.observe(settled)
            stopped = stopped or (fail_fast and settled.status == "failed")

    try:
        while True:
            while not (stopped or exhausted) and len(inflight) < window:
                unit = source.take(sum(len(items) for items in inflight.values()))
                if unit is None:
                    exhausted = True
                    break
                key = next(keys)
                inflight[key] = unit.items  # started: aborted() hears of it from here on
                payload = calls.started(unit.items)
                if unit.settled is not None:
                    del inflight[key]
                    finish(unit.items, unit.settled)
                    continue
                pending[key] = runner.submit(payload)
                pending[key].add_done_callback(_notify(done, key))
            calls.running(sum(len(items) for items in inflight.values()))
            if not inflight:
                break
            key = done.get()
            items = inflight.pop(key)
            finish(items, pending.pop(key).outcomes())
    except BaseException:
        left = unsettled + [item for items in inflight.values() for item in items]
        calls.aborted(left + source.rest())
        raise
    never = source.rest()
    finish(never, [Outcome("cancelled") for _ in never])
    calls.running(0)
    return Report(report, stopped)
