"""The trial tasks: one trial, or a chunk of short ones, per task run; results stored
under each trial's own cache key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from sweepflow.cache.results import load_result, results_dir, save_result
from sweepflow.execution.claims import claim
from sweepflow.execution.trial import TrialFailed, TrialResult, TrialSpec, execute
from sweepflow.faults import disk_full, is_disk_full

__all__ = ["Chunk", "ChunkItem", "run_chunk", "run_trial"]


def _run(spec: TrialSpec, folder: Path, log: Callable[[str], None]) -> TrialResult:
    """Run ``spec`` once across processes and store its result.

    While another ``sweepflow run`` has the trial in flight (same state folder), this
    one waits for it instead of running it too; a result that run stored after this
    one looked up the cache (``spec.since``) is taken (marked ``elsewhere``); if that
    run failed or died, the trial runs here.
    """

    def waiting() -> None:
        log(f"trial {spec.label} is running in another sweepflow run; waiting for it")

    with claim(Path(spec.workdir), waiting):
        if spec.since and spec.cache_key:
            done = load_result(folder, spec.cache_key)
            if done is not None and done.ended >= spec.since:
                return done.model_copy(update={"elsewhere": True})
        result = execute(spec, log=log)
        if spec.cache_key:
            try:
                save_result(folder, result)
            except OSError as exc:
                if is_disk_full(exc):
                    raise TrialFailed(str(disk_full(folder))) from exc
                raise
    return result


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
    return _run(spec, results_dir(state), get_run_logger().info)


def _attempts(spec: TrialSpec, folder: Path, retries: int, logger: Any) -> ChunkItem:
    """Run one trial of a chunk, up to ``retries`` more times if it fails (not when the
    disk is full: that fails every attempt)."""
    error = ""
    for attempt in range(retries + 1):
        try:
            return ChunkItem(result=_run(spec, folder, logger.info))
        except (TrialFailed, OSError) as exc:
            if isinstance(exc, OSError) and not is_disk_full(exc):
                raise
            error = str(disk_full(folder.parent) if isinstance(exc, OSError) else exc)
            if is_disk_full(error):
                break
            if attempt < retries:
                logger.warning("trial %s failed (%s); retrying", spec.label, error)
    return ChunkItem(error=error)


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
        full = any(is_disk_full(item.error) for item in items)
        if full or (fail_fast and any(item.result is None for item in items)):
            items.append(ChunkItem(error="cancelled"))  # a full disk fails every trial
            continue
        items.append(_attempts(spec, folder, retries, logger))
    return items
