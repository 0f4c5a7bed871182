"""The trial task: one unit of a job, cached by sweepflow's own key."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE, CachePolicy
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultRecord, ResultRecordMetadata, ResultStore
from prefect.serializers import JSONSerializer
from pydantic import BaseModel

from sweepflow.cache.results import read_result
from sweepflow.execution.trial import TrialFailed, TrialResult, TrialSpec, execute

__all__ = [
    "Chunk",
    "ChunkItem",
    "TrialCachePolicy",
    "cached_result",
    "result_store",
    "run_chunk",
    "run_trial",
    "save_result",
]


class TrialCachePolicy(CachePolicy):
    """Key = the spec's cache key (command, parameters, code fingerprint, format);
    never the run id, so results are found across processes and after crashes."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: Any, **kw: Any):
        spec = inputs.get("spec")
        return spec.cache_key if isinstance(spec, TrialSpec) else None


@task(
    name="run-trial",
    task_run_name="{spec.job}[{spec.index}]",
    cache_policy=TrialCachePolicy(),
    persist_result=True,
    result_serializer="json",
)
def run_trial(spec: TrialSpec) -> TrialResult:
    """Run one trial (or batch, or submit handler); raise if it fails."""
    logger = get_run_logger()
    return execute(spec, log=logger.info)


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
    store = result_store(Path(state))
    folder = Path(state, "results").resolve()
    folder.mkdir(parents=True, exist_ok=True)
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
        save_result(store, folder, result, spec.cache_key)
        items.append(ChunkItem(result=result))
    return items


def result_store(state: Path) -> ResultStore:
    """The store the trial task persists its results in (``<state>/results``)."""
    storage = LocalFileSystem(basepath=str(state / "results"))
    return ResultStore(result_storage=storage, serializer=JSONSerializer())


def save_result(store: ResultStore, folder: Path, result: TrialResult, key: str) -> None:
    """Persist ``result`` under ``key`` in ``folder`` (the store's resolved base path)
    as ``store.write`` does: one file with Prefect's result record, which run_trial's
    cache policy and :func:`cached_result` read. Written directly (and atomically):
    ``store.write`` resolves the path and hands the write to Prefect's event loop
    thread, ~4 ms per trial on a busy Dask worker, more than a short trial."""
    path = folder / key
    record = ResultRecord(
        result=result,
        metadata=ResultRecordMetadata(serializer=store.serializer, storage_key=str(path)),
    )
    partial = path.with_name(f".{key}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(record.serialize())
    os.replace(partial, path)


def cached_result(store: ResultStore, key: str) -> TrialResult | None:
    """The cached result for ``key``, read without creating a task run; or None."""
    if not key:
        return None
    return read_result(Path(store.result_storage.basepath, key))  # type: ignore[union-attr]
