"""The engine's runner on a Prefect task runner: one task run per unit of trial specs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flows._runtime import annotate
from sweepflow.engine.scheduler import Outcome
from sweepflow.execution.trial import TrialPruned, TrialResult, TrialSpec
from tasks.trials import Chunk, run_chunk

__all__ = ["ELSEWHERE", "TaskRunner", "not_pruned"]


def not_pruned(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed trial, but never one its pruner stopped (a ``retry_condition_fn``)."""
    try:
        state.result()
    except TrialPruned:
        return False
    except Exception:
        return True
    return True


class TaskRunner:
    """Submits units to a Prefect task runner (see :class:`sweepflow.engine.Runner`).

    A unit of one trial runs as ``single`` (the cached ``run_trial`` task with the job's
    options), unless ``chunked`` (a fixed ``chunk: N``); other units run as one
    ``run_chunk`` task with ``chunk_options``. ``resources`` become Dask annotations.
    """

    def __init__(
        self,
        runner: Any,
        single: Any,
        state: str,
        resources: dict[str, float] | None = None,
        chunked: bool = False,
        **chunk_options: Any,
    ) -> None:
        self.runner, self.single, self.chunked, self.state = runner, single, chunked, state
        self.resources, self.chunk_options = resources or {}, chunk_options

    def submit(self, payload: Sequence[TrialSpec]) -> _Pending:
        """Submit the trials of one unit as one task run."""
        with annotate(self.resources):
            if len(payload) == 1 and not self.chunked:
                future = self.runner.submit(self.single, {"spec": payload[0], "state": self.state})
            else:
                parameters = {"chunk": Chunk(list(payload)), "state": self.state}
                parameters |= self.chunk_options
                future = self.runner.submit(run_chunk, parameters)
        return _Pending(future, len(payload))


class _Pending:
    """A submitted unit: its Prefect future, read into one outcome per trial."""

    def __init__(self, future: Any, size: int) -> None:
        self.future, self.size = future, size

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self.future.add_done_callback(lambda _: fn(self))

    def outcomes(self) -> list[Outcome]:
        value = self.future.result(raise_on_failure=False)
        tags = {"prefect.task_run_id": str(self.future.task_run_id)}
        if isinstance(value, list):  # a chunk: one item per trial
            return [_outcome(item.result, item.error, tags) for item in value]
        if isinstance(value, TrialResult):
            return [_outcome(value, "", tags)]
        if isinstance(value, TrialPruned):
            return [Outcome("pruned", error=str(value), tags=tags)] * self.size
        error = str(value) if isinstance(value, BaseException) else "failed"
        return [_outcome(None, error, tags)] * self.size


ELSEWHERE = "ran in another sweepflow run at the same time; its result was taken"


def _outcome(result: TrialResult | None, error: str, tags: dict[str, str]) -> Outcome:
    if result is not None and result.elsewhere:
        return Outcome("cached", result, error=ELSEWHERE, seconds=result.duration, tags=tags)
    if result is not None:
        return Outcome("done", result, seconds=result.duration, tags=tags)
    return Outcome("cancelled" if error == "cancelled" else "failed", error=error, tags=tags)
