"""The trial tasks: one trial, or a chunk of short ones, per task run; results stored
under each trial's own cache key."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from sweepflow.cache.results import results_dir, save_result
from sweepflow.execution.trial import TrialFailed, TrialResult, TrialSpec, execute

__all__ = ["Chunk", "ChunkItem", "run_chunk", "run_trial"]


# Not Prefect's result persistence or cache policy: sweepflow.cache.results owns the
# stored results (one format, checked on read), and the engine skips cache hits
# before any task run is created.
@task(
    name="run-trial",
    task_run_name="{spec.job}[{spec.index}]",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def run_trial(spec: TrialSpec, state: str) -> TrialResult:
    """Run one trial (or batch, or submit handler) and store its result under its
    cache key in ``<state>/results``; raise if it fails."""
    logger = get_run_logger()
    result = execute(spec, log=logger.info)
    if spec.cache_key:
        save_result(results_dir(state), result)
    return result


class ChunkItem(BaseModel):
    """How one trial of a chunk ended: its result, or why not (``cancelled``: not run)."""

    result: TrialResult | None = None
    error: str = ""


class Chunk:
    """The trials of one task run. A plain object, not a model or a list: Prefect walks
    a task's parameters several times per submission (looking for futures), which for a
    list of hundreds of specs cost more than running them."""

    __slots__ = ("first", "job", "specs")

    def __init__(self, specs: list[TrialSpec]) -> None:
        self.specs = specs
        self.job, self.first = specs[0].job, specs[0].index


@task(name="run-trials", task_run_name="{chunk.job}[{chunk.first}+]", cache_policy=NO_CACHE)
def run_chunk(
    chunk: Chunk, state: str, fail_fast: bool = False, retries: int = 0
) -> list[ChunkItem]:
    """Run short trials one after another in one task run (a task run costs ~30 ms of
    API calls); each successful trial's result is cached under its own key, as
    :func:`run_trial` would, so caching, tracking and status stay per trial. A failed
    trial is tried up to ``retries`` more times, as the job's ``retries`` asks."""
    logger = get_run_logger()
    folder = results_dir(state)
    items: list[ChunkItem] = []
    for spec in chunk.specs:
        if fail_fast and any(item.result is None for item in items):
            items.append(ChunkItem(error="cancelled"))
            continue
        for attempt in range(retries + 1):
            try:
                result = execute(spec, log=logger.info)
                break
            except TrialFailed as exc:
                error = str(exc)
                if attempt < retries:
                    logger.warning("trial %s failed (%s); retrying", spec.label, error)
        else:
            items.append(ChunkItem(error=error))
            continue
        if spec.cache_key:
            save_result(folder, result)
        items.append(ChunkItem(result=result))
    return items
