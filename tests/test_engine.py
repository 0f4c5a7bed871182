"""The scheduling engine with fake in-memory runners: window, chunking, fail-fast, aborts."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sweepflow.engine import Callbacks, Feed, Outcome, Unit, schedule


class _Done:
    """A finished unit (the synchronous runner's handle)."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        self._outcomes = outcomes

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def outcomes(self) -> list[Outcome]:
        return self._outcomes


def _run(item: Any, seconds: float = 0.0) -> Outcome:
    """A fake item: a negative number fails, others are squared."""
    if isinstance(item, int) and item < 0:
        return Outcome("failed", error=f"{item} is negative", seconds=seconds)
    return Outcome("done", result=item * item, seconds=seconds)


class SyncRunner:
    """Runs each unit when submitted; items take ``seconds`` (as reported, not slept)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.units: list[list[Any]] = []

    def submit(self, payload: Sequence[Any]) -> _Done:
        self.units.append(list(payload))
        return _Done([_run(item, self.seconds) for item in payload])


class _Future:
    def __init__(self, future: Any) -> None:
        self.future = future

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self.future.add_done_callback(lambda _: fn(self))

    def outcomes(self) -> list[Outcome]:
        return self.future.result()


class ThreadRunner:
    """Runs units on a thread pool and records the most units ever running at once."""

    def __init__(self, workers: int = 8) -> None:
        self.pool = ThreadPoolExecutor(workers)
        self.lock = threading.Lock()
        self.running = self.most = 0

    def _unit(self, payload: Sequence[Any]) -> list[Outcome]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.002)
        with self.lock:
            self.running -= 1
        return [_run(item) for item in payload]

    def submit(self, payload: Sequence[Any]) -> _Future:
        return _Future(self.pool.submit(self._unit, payload))


class Recorder:
    """Callbacks that remember what they heard."""

    def __init__(self) -> None:
        self.started: list[list[Any]] = []
        self.finished: list[tuple[Any, Outcome]] = []
        self.aborted: list[list[Any]] = []

    def callbacks(self, **override: Any) -> Callbacks:
        hooks = {
            "started": lambda items: self.started.append(list(items)) or items,
            "finished": lambda item, outcome: self.finished.append((item, outcome)),
            "aborted": lambda items: self.aborted.append(list(items)),
        }
        return Callbacks(**(hooks | override))

    def statuses(self) -> dict[Any, str]:
        return {item: outcome.status for item, outcome in self.finished}


def test_never_more_than_window_units_in_flight_and_each_item_finishes_once() -> None:
    runner, seen = ThreadRunner(), Recorder()
    report = schedule(Feed(range(40), 1, 3), runner, 3, seen.callbacks())
    assert runner.most <= 3
    assert Counter(item for item, _ in seen.finished) == Counter(range(40))
    assert {item: o.result for item, o in report.outcomes} == {i: i * i for i in range(40)}
    assert not report.stopped and not seen.aborted


def test_short_items_are_chunked_after_a_few_are_measured() -> None:
    runner = SyncRunner(seconds=0.01)
    schedule(Feed(range(100), "auto", 2), runner, 2)
    sizes = [len(unit) for unit in runner.units]
    assert sizes[:2] == [1, 1]  # measured one at a time first
    assert max(sizes) > 1 and len(runner.units) < 20
    assert sorted(item for unit in runner.units for item in unit) == list(range(100))


def test_long_items_are_never_chunked() -> None:
    runner = SyncRunner(seconds=5.0)
    schedule(Feed(range(20), "auto", 2), runner, 2)
    assert [len(unit) for unit in runner.units] == [1] * 20


def test_a_fixed_chunk_size_is_kept() -> None:
    runner = SyncRunner(seconds=0.01)
    schedule(Feed(range(10), 4, 2), runner, 2)
    assert [len(unit) for unit in runner.units] == [4, 4, 2]


def test_fail_fast_stops_submitting_and_cancels_the_rest() -> None:
    runner, seen = SyncRunner(), Recorder()
    items = [0, 1, -2, 3, 4]
    report = schedule(Feed(items, 1, 1), runner, 1, seen.callbacks(), fail_fast=True)
    assert report.stopped
    assert runner.units == [[0], [1], [-2]]
    assert seen.statuses() == {0: "done", 1: "done", -2: "failed", 3: "cancelled", 4: "cancelled"}
    assert seen.started == [[0], [1], [-2]]  # never-started items are not started


def test_without_fail_fast_a_failure_does_not_stop_the_rest() -> None:
    seen = Recorder()
    report = schedule(Feed([0, -1, 2], 1, 1), SyncRunner(), 1, seen.callbacks())
    assert seen.statuses() == {0: "done", -1: "failed", 2: "done"} and not report.stopped


def test_finished_may_revise_an_outcome_and_fail_fast_sees_it() -> None:
    def finished(item: int, outcome: Outcome) -> Outcome | None:
        return Outcome("failed", error="no metric") if item == 1 else None

    report = schedule(
        Feed(range(4), 1, 1), SyncRunner(), 1, Callbacks(finished=finished), fail_fast=True
    )
    assert [(i, o.status) for i, o in report.outcomes] == [
        (0, "done"),
        (1, "failed"),
        (2, "cancelled"),
        (3, "cancelled"),
    ]


def test_an_interrupt_from_a_callback_reports_in_flight_and_unstarted_items() -> None:
    seen = Recorder()

    def finished(item: int, outcome: Outcome) -> None:
        seen.finished.append((item, outcome))
        if item == 1:
            raise KeyboardInterrupt

    # Units of two: [0, 1] in flight ends first, [2, 3] is in flight, 4.. never started.
    with pytest.raises(KeyboardInterrupt):
        schedule(Feed(range(8), 2, 2), SyncRunner(), 2, seen.callbacks(finished=finished))
    assert [item for item, _ in seen.finished] == [0, 1]
    # An item whose finished() did not return is not finished: it is reported too.
    assert len(seen.aborted) == 1 and sorted(seen.aborted[0]) == [1, 2, 3, 4, 5, 6, 7]


def test_an_interrupt_inside_a_unit_reports_its_unfinished_items() -> None:
    def finished(item: int, outcome: Outcome) -> None:
        if item == 0:
            raise KeyboardInterrupt

    seen = Recorder()
    with pytest.raises(KeyboardInterrupt):
        schedule(Feed(range(3), 3, 1), SyncRunner(), 1, seen.callbacks(finished=finished))
    assert seen.aborted == [[0, 1, 2]]  # its callback did not return: not finished


def test_an_error_from_the_runner_reports_the_unit_and_the_rest() -> None:
    class Broken(SyncRunner):
        def submit(self, payload: Sequence[Any]) -> _Done:
            if 2 in payload:
                raise RuntimeError("cluster gone")
            return super().submit(payload)

    seen = Recorder()
    with pytest.raises(RuntimeError, match="cluster gone"):
        schedule(Feed(range(5), 1, 1), Broken(), 1, seen.callbacks())
    assert seen.statuses() == {0: "done", 1: "done"}
    assert seen.aborted == [[2, 3, 4]]


class Asks:
    """A search-like source: n asks, each a trial; even asks are cache hits."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0
        self.observed: list[str] = []

    def take(self, inflight: int) -> Unit[int] | None:
        if self.asked >= self.n:
            return None
        self.asked += 1
        trial = self.asked
        if trial % 2 == 0:
            return Unit([trial], settled=[Outcome("cached", result=trial * trial)])
        return Unit([trial])

    def observe(self, outcome: Outcome) -> None:
        self.observed.append(outcome.status)

    def rest(self) -> list[int]:
        return []


def test_a_search_source_settles_cache_hits_without_submitting() -> None:
    runner, seen, source = SyncRunner(), Recorder(), Asks(7)
    report = schedule(source, runner, 2, seen.callbacks())
    assert runner.units == [[1], [3], [5], [7]]
    assert seen.started == [[i] for i in range(1, 8)]  # a cache hit is started too
    assert seen.statuses() == {i: "cached" if i % 2 == 0 else "done" for i in range(1, 8)}
    assert source.asked == 7 and len(source.observed) == 7 and len(report.outcomes) == 7


def test_a_threaded_search_keeps_its_window() -> None:
    runner, source = ThreadRunner(), Asks(30)
    report = schedule(source, runner, 4)
    assert runner.most <= 4 and sorted(i for i, _ in report.outcomes) == list(range(1, 31))


def test_started_returns_the_payload_to_submit() -> None:
    runner = SyncRunner()
    schedule(
        Feed([1, 2], 1, 1), runner, 1, Callbacks(started=lambda items: [i + 10 for i in items])
    )
    assert runner.units == [[11], [12]]


def test_an_empty_source_runs_nothing() -> None:
    runs: list[int] = []
    report = schedule(Feed([], "auto", 4), SyncRunner(), 4, Callbacks(running=runs.append))
    assert report.outcomes == [] and runs == [0, 0]


def test_a_study_is_asked_n_times_and_told_every_outcome() -> None:
    """The search's source and tell on a real in-memory Optuna study: cache hits are
    told without running, a trial without its objective metric is failed."""
    import optuna

    from sweepflow.execution.trial import TrialResult
    from sweepflow.plan.space import Dimension, SearchSpace
    from sweepflow.search.loop import StudySource, tell

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace((Dimension("x", "int", 0, 9),), {}, ())

    class Spec:  # what the source reads of a trial spec
        def __init__(self, index: int, params: dict[str, str]) -> None:
            self.index, self.cache_key = index, params["x"]

    def result(x: int, metrics: dict[str, float] | None = None) -> TrialResult:
        values = {"loss": x} if metrics is None else metrics
        fields = {"digest": "", "cache_key": str(x), "index": x, "workdir": "/nowhere"}
        return TrialResult(**fields, metrics=values, started=0.0, ended=0.01)

    store = {"3": result(3), "4": result(4)}  # cached results, by key
    source = StudySource(study, space, 6, Spec, store.get, "host:1:1")

    class Runner:
        def __init__(self) -> None:
            self.runs: list[str] = []

        def submit(self, payload: Sequence[Any]) -> _Done:
            x = payload[0].spec.cache_key
            self.runs.append(x)
            metrics = {} if x == "7" else None  # reports no objective
            return _Done([Outcome("done", result(int(x), metrics), seconds=0.01)])

    runner = Runner()
    finished = Callbacks(finished=lambda a, o: tell(study, a.trial, o, ("loss",)))
    report = schedule(source, runner, 2, finished)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and source.asked == 6
    assert all(t.user_attrs["sweepflow:driver"] == "host:1:1" for t in trials)
    keys = [str(t.params["x"]) for t in trials]
    assert sorted(runner.runs) == sorted(k for k in keys if k not in store)
    outcomes = {item.trial.number: outcome for item, outcome in report.outcomes}
    assert sorted(outcomes) == [t.number for t in trials]
    for trial in trials:
        outcome, x = outcomes[trial.number], str(trial.params["x"])
        if x == "7":
            assert outcome.status == "failed" and trial.state.name == "FAIL"
            assert "reported no 'loss'" in trial.user_attrs["error"]
        else:
            assert outcome.status == ("cached" if x in store else "done")
            assert trial.state.name == "COMPLETE" and trial.value == int(x)
