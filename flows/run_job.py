"""The run-job flow: every trial of a job as a cached Prefect task, tracked in MLflow."""

from __future__ import annotations

import contextlib
import math
import queue
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, runtime
from prefect.task_runners import ThreadPoolTaskRunner

from flows._runtime import (
    annotate,
    capacity,
    end_with_worker,
    placement_tags,
    save_profile,
    start_cluster,
    task_runner,
    trials_table,
    unit_results,
)
from sweepflow.cache.results import running
from sweepflow.engine.progress import TrialOutcome, count_outcomes, current_sink, outcome_of
from sweepflow.execution.trial import TrialSpec, terminate_all
from sweepflow.plan.specs import build_specs
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import find_job_file, load_jobs
from sweepflow.spec.profiles import load_profile
from sweepflow.tracking.writer import RunWriter, Tracker, default_tracking_uri, trial_tags, versions
from tasks.trials import Chunk, cached_result, result_store, run_chunk, run_trial

__all__ = ["run_job"]


# Tasks are submitted to the run's profile's task runner (see _task_runner), not to the
# flow's; the flow's own runner is left unused.
@flow(name="run-job", task_runner=ThreadPoolTaskRunner(max_workers=1))
def run_job(
    job: str,
    overrides: list[str] | None = None,
    job_file: str | None = None,
    profile: str | None = None,
    refresh: bool = False,
    extra: list[str] | None = None,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    profile_set: list[str] | None = None,
    n_trials: int | None = None,
    storage: str | None = None,
) -> dict[str, Any]:
    """Run every trial of ``job`` (with command-line style ``overrides``).

    Cached trials (same command, parameters and code) are not run again and create no
    task run. ``profile`` (a name or path; default: the job's ``profile:``, else
    ``local``) says where tasks run, with ``profile_set`` items (``key=value``)
    overriding its fields. Returns the counts and one row per trial.

    A job with ``optimize:`` runs its search instead (see ``flows.optimize``), with
    ``n_trials`` and ``storage`` overriding the job's.
    """
    end_with_worker()
    jobfile = load_jobs(job_file or find_job_file())
    the_job = jobfile.job(job)
    project = jobfile.path.parent.resolve()
    with running(state_dir(project), the_job.key):
        if the_job.optimize is None:
            return _sweep(
                jobfile,
                the_job,
                overrides,
                profile,
                refresh,
                extra,
                max_parallel,
                fail_fast,
                profile_set,
            )
        from flows._search import search  # a search: the same flow runs it (deployments)

        return search(
            job,
            overrides,
            job_file=job_file,
            profile=profile,
            profile_set=profile_set,
            refresh=refresh,
            extra=extra,
            max_parallel=max_parallel,
            n_trials=n_trials,
            storage=storage,
            fail_fast=fail_fast,
        )


def _sweep(
    jobfile: Any,
    the_job: Any,
    overrides: list[str] | None,
    profile: str | None,
    refresh: bool,
    extra: list[str] | None,
    max_parallel: int | None,
    fail_fast: bool,
    profile_set: list[str] | None,
) -> dict[str, Any]:
    """The sweep of ``the_job``: every trial, cached ones told without a task run."""
    plan = the_job.plan(overrides or [])
    project = jobfile.path.parent.resolve()
    state = state_dir(project)
    chosen = load_profile(profile or the_job.profile, profile_set or [], project)
    retries = max(the_job.retries, chosen.retries)  # a flaky cluster's profile may ask more
    specs = build_specs(plan, project, extra)
    store = result_store(state)
    refresh = refresh or not the_job.cache
    hits = (
        {} if refresh else {s.index: r for s in specs if (r := cached_result(store, s.cache_key))}
    )
    todo = [s for s in specs if s.index not in hits]
    window = max(1, max_parallel or capacity(chosen))
    uri = default_tracking_uri(project)
    # Nothing to run (all cached): no cluster to start. Otherwise the cluster starts (its
    # workers importing what trials need) while this process opens MLflow.
    runner = task_runner(chosen, window, state, uri) if todo else ThreadPoolTaskRunner(1)
    stack = contextlib.ExitStack()
    stack.enter_context(runner)
    cluster_ready = start_cluster(runner)
    try:
        tracker = Tracker(uri, the_job.experiment, the_job.key)
        tracker.reap_stale(lambda key: None if refresh else cached_result(store, key))
        flow_run_id = str(runtime.flow_run.id or "")
        parent = tracker.start_parent(
            {
                "overrides": " ".join(overrides or []),
                "extra": " ".join(extra or []),
                "profile": chosen.name,
            },
            {"prefect.flow_run_id": flow_run_id, "sweepflow.versions": versions()},
        )
        save_profile(chosen, state, the_job.key, flow_run_id, tracker, parent)
    except BaseException:
        with contextlib.suppress(Exception):
            cluster_ready()
        stack.close()
        raise
    sink = current_sink()
    sink.start(the_job.key, len(specs), len(hits))
    outcomes: dict[int, TrialOutcome] = {}
    for spec in specs:
        if spec.index in hits:
            outcomes[spec.index] = outcome_of(spec, "cached", hits[spec.index])
            sink.finished(outcomes[spec.index])
    single = run_trial.with_options(
        result_storage=state / "results", refresh_cache=refresh, retries=retries
    )
    resources = dict(the_job.resources) if chosen.type != "local" else {}
    feed = _Feed(todo, the_job.chunk, window)
    writer = RunWriter(tracker, parent)
    prepared = 0  # MLflow runs are created ahead of submission, off the scheduling loop

    def prepare_ahead(inflight: int) -> None:
        nonlocal prepared
        end = min(len(todo), feed.position + 2 * window * feed.size(inflight))
        for spec in todo[prepared:end]:
            writer.prepare(spec.index, trial_tags(spec, flow_run_id))
        prepared = max(prepared, end)

    done: queue.Queue = queue.Queue()
    inflight: dict[Any, list[TrialSpec]] = {}
    stop = False
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": tracker.experiment_id}
    try:
        cluster_ready()
        while feed or inflight:
            while feed and len(inflight) < window and not stop:
                busy = sum(len(u) for u in inflight.values())
                prepare_ahead(busy)
                unit = feed.take(busy)
                ready = [
                    s.model_copy(update={"env": {**env, "MLFLOW_RUN_ID": writer.run_id(s.index)}})
                    for s in unit
                ]
                with annotate(resources):
                    if len(unit) == 1 and not feed.fixed:
                        future = runner.submit(single, {"spec": ready[0]})
                    else:
                        parameters = {"chunk": Chunk(ready), "state": str(state)}
                        parameters["fail_fast"] = fail_fast
                        parameters["retries"] = retries
                        future = runner.submit(run_chunk, parameters)
                inflight[future] = unit
                future.add_done_callback(done.put)
            sink.running(sum(len(u) for u in inflight.values()))
            if not inflight:
                break
            future = done.get()
            unit = inflight.pop(future)
            task_run = {"prefect.task_run_id": str(future.task_run_id)}
            for spec, result, error in unit_results(future, unit):
                status = "done" if result else "cancelled" if error == "cancelled" else "failed"
                if result:
                    feed.observe(result.duration)
                if status == "cancelled":
                    writer.kill(spec.index)
                else:
                    writer.finish(
                        spec.index,
                        Path(spec.workdir),
                        params=spec.params,
                        metrics=result.metrics if result else None,
                        ok=result is not None,
                        tags=task_run | placement_tags(result),
                    )
                outcome = outcome_of(spec, status, result, "" if result else error)
                outcomes[spec.index] = replace(outcome, run_id=writer.run_id(spec.index))
                sink.finished(outcomes[spec.index])
                stop = stop or (fail_fast and status == "failed")
    except BaseException:
        terminate_all()
        with contextlib.suppress(Exception):
            cluster_ready()
        stack.close()
        for spec in [s for u in inflight.values() for s in u] + feed.rest():
            writer.kill(spec.index)
        writer.close()
        tracker.finish_parent(parent, count_outcomes(outcomes.values(), len(specs)), "KILLED")
        raise
    stack.close()
    for spec in feed.rest():  # not started (--fail-fast)
        writer.kill(spec.index)
        outcomes[spec.index] = outcome_of(spec, "cancelled", None)
        sink.finished(outcomes[spec.index])
    sink.running(0)
    writer.close()
    counts = count_outcomes(outcomes.values(), len(specs))
    failed = counts["failed"] + counts["cancelled"]
    tracker.finish_parent(parent, counts, "FAILED" if failed else "FINISHED")
    rows = [outcomes[s.index] for s in specs]
    trials_table(the_job.key, rows)
    summary = {"job": the_job.key, "experiment": the_job.experiment, "tracking_uri": uri}
    summary |= {"counts": counts, "trials": [vars(o) for o in rows], "parent_run": parent}
    if failed:
        raise RuntimeError(f"{failed} of {len(specs)} trials of job '{the_job.key}' did not finish")
    return summary


class _Feed:
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

    def __init__(self, todo: list[TrialSpec], chunk: int | str, window: int) -> None:
        self.todo, self.position, self.window = todo, 0, window
        self.fixed = chunk if isinstance(chunk, int) else None
        self.durations: list[float] = []

    def __bool__(self) -> bool:
        return self.position < len(self.todo)

    def observe(self, seconds: float) -> None:
        """Record how long a finished trial ran."""
        self.durations.append(seconds)

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

    def take(self, inflight: int = 0) -> list[TrialSpec]:
        """The next unit."""
        unit = self.todo[self.position : self.position + self.size(inflight)]
        self.position += len(unit)
        return unit

    def rest(self) -> list[TrialSpec]:
        """Trials never handed out."""
        return self.todo[self.position :]
