"""The run-job flow: every trial of a job as a cached Prefect task, tracked in MLflow."""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import signal
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow, runtime
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from sweepflow.execute import TrialResult, TrialSpec, terminate_all
from sweepflow.jobs import find_job_file, load_jobs
from sweepflow.profiles import Profile, load_profile
from sweepflow.progress import TrialOutcome, count_outcomes, current_sink, outcome_of
from sweepflow.settings import state_dir
from sweepflow.tracking import RunWriter, Tracker, default_tracking_uri, trial_tags, versions
from sweepflow.trials import build_specs
from tasks.trials import cached_result, result_store, run_chunk, run_trial

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
) -> dict[str, Any]:
    """Run every trial of ``job`` (with command-line style ``overrides``).

    Cached trials (same command, parameters and code) are not run again and create no
    task run. ``profile`` (a name or path; default: the job's ``profile:``, else
    ``local``) says where tasks run, with ``profile_set`` items (``key=value``)
    overriding its fields. Returns the counts and one row per trial.
    """
    _end_with_worker()
    jobfile = load_jobs(job_file or find_job_file())
    the_job = jobfile.job(job)
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
    uri = default_tracking_uri(project)
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
    _save_profile(chosen, state, the_job.key, flow_run_id, tracker, parent)
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
    todo = [s for s in specs if s.index not in hits]
    window = max(1, max_parallel or _capacity(chosen))
    # Nothing to run (all cached): no cluster to start.
    runner = _task_runner(chosen, window, state, uri) if todo else ThreadPoolTaskRunner(1)
    resources = dict(the_job.resources) if chosen.type != "local" else {}
    feed = _Feed(todo, the_job.chunk, window)
    writer = RunWriter(tracker, parent)
    prepared = 0  # MLflow runs are created ahead of submission, off the scheduling loop

    def prepare_ahead() -> None:
        nonlocal prepared
        end = min(len(todo), feed.position + 2 * window * feed.size())
        for spec in todo[prepared:end]:
            writer.prepare(spec.index, trial_tags(spec, flow_run_id))
        prepared = max(prepared, end)

    done: queue.Queue = queue.Queue()
    inflight: dict[Any, list[TrialSpec]] = {}
    stop = False
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": tracker.experiment_id}
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(runner)
        while feed or inflight:
            while feed and len(inflight) < window and not stop:
                prepare_ahead()
                unit = feed.take()
                ready = [
                    s.model_copy(update={"env": {**env, "MLFLOW_RUN_ID": writer.run_id(s.index)}})
                    for s in unit
                ]
                with _annotate(resources):
                    if len(unit) == 1 and not feed.fixed:
                        future = runner.submit(single, {"spec": ready[0]})
                    else:
                        parameters = {"specs": ready, "state": str(state), "fail_fast": fail_fast}
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
            for spec, result, error in _results(future, unit):
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
                        tags=task_run | _placement(result),
                    )
                outcome = outcome_of(spec, status, result, "" if result else error)
                outcomes[spec.index] = replace(outcome, run_id=writer.run_id(spec.index))
                sink.finished(outcomes[spec.index])
                stop = stop or (fail_fast and status == "failed")
    except BaseException:
        terminate_all()
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
    _table(the_job.key, rows)
    summary = {"job": the_job.key, "experiment": the_job.experiment, "tracking_uri": uri}
    summary |= {"counts": counts, "trials": [vars(o) for o in rows], "parent_run": parent}
    if failed:
        raise RuntimeError(f"{failed} of {len(specs)} trials of job '{job}' did not finish")
    return summary


def _capacity(profile: Profile) -> int:
    """Tasks the profile can run at once: what the flow keeps in flight."""
    settings = profile.resolved()
    cores = os.cpu_count() or 1
    if profile.type == "local":
        return int(settings["cores"])
    if profile.type == "dask-local":
        workers = settings.get("workers") or cores
        if settings.get("adapt"):
            workers = settings["adapt"]["maximum"]
        return max(1, int(workers) * int(settings.get("threads_per_worker") or 1))
    jobs = (settings.get("adapt") or {}).get("maximum") or 1
    return max(1, int(jobs) * int(settings.get("cores") or 1))


def _task_runner(profile: Profile, window: int, state: Path, uri: str) -> Any:
    """The task runner of ``profile``, its Dask workers pointed at this run's services.

    Dask workers are other processes (SLURM jobs, perhaps on other nodes): they get the
    Prefect API this flow reports to (never an ephemeral server of their own), the
    MLflow store, and quiet logging. Paths are absolute; on a cluster the state folder
    must be on a shared file system.
    """
    if profile.type == "local":
        return profile.task_runner(window)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url).rstrip("/")
    env = {
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": uri,
    }
    worker_env = {**env, **profile.worker_env}  # type: ignore[attr-defined]
    profile = profile.model_copy(update={"worker_env": worker_env})
    import dask

    # A worker lost with its SLURM job (scancel, preemption, walltime) is given up
    # after this long; its tasks go to another worker (adapt starts a new job).
    dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"})
    return profile.task_runner(window, state_dir=state)


def _placement(result: TrialResult | None) -> dict[str, str]:
    """MLflow tags saying where a trial ran (host; SLURM job, node and GPUs if any)."""
    if result is None:
        return {}
    tags = {"sweepflow.trial_host": result.host} if result.host else {}
    names = {"SLURM_JOB_ID": "slurm_job_id", "SLURMD_NODENAME": "node"}
    names["CUDA_VISIBLE_DEVICES"] = "cuda_visible_devices"
    return tags | {f"sweepflow.{names[k]}": v for k, v in result.placement.items() if k in names}


def _annotate(resources: dict[str, float]) -> Any:
    """Dask annotations for a task that needs ``resources`` (e.g. ``{"gpu": 1}``)."""
    if not resources:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources=resources)


def _save_profile(
    profile: Profile, state: Path, job: str, flow_run_id: str, tracker: Any, parent: str
) -> None:
    """Keep the fully resolved profile with the run: state folder and MLflow parent run."""
    resolved = profile.resolved()
    folder = state / "runs" / job / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{flow_run_id or int(time.time())}.json"
    (folder / name).write_text(json.dumps(resolved, indent=2, default=str) + "\n")
    tracker.client.log_dict(parent, resolved, "profile.json")


class _Feed:
    """The trials still to submit, handed out in units (one task run each).

    ``chunk: N`` gives units of N trials. ``chunk: auto`` (the default) gives one trial
    per task until a few have finished, then groups trials shorter than
    ``SHORT_TRIAL`` seconds so a task run holds about ``TASK_SECONDS`` of work: a task
    run costs ~30 ms of API calls locally and ~200 ms on Dask, a lot next to a 50 ms
    trial. A unit holds at most that much work, so the last ones end within about
    ``TASK_SECONDS`` of each other, and no more than its share of what is left (every
    slot gets one).
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

    def size(self) -> int:
        """Trials in the next unit."""
        if self.fixed:
            return self.fixed
        if len(self.durations) < min(self.window, 4):
            return 1
        typical = statistics.median(self.durations[-50:])
        if typical >= self.SHORT_TRIAL:
            return 1
        left = len(self.todo) - self.position
        by_time = math.ceil(self.TASK_SECONDS / max(typical, 1e-3))
        return max(1, min(by_time, math.ceil(left / self.window)))

    def take(self) -> list[TrialSpec]:
        """The next unit."""
        unit = self.todo[self.position : self.position + self.size()]
        self.position += len(unit)
        return unit

    def rest(self) -> list[TrialSpec]:
        """Trials never handed out."""
        return self.todo[self.position :]


def _end_with_worker() -> None:
    """Under a worker, end this flow run when the worker process dies.

    The worker starts each flow run as a child process; without this, a killed worker
    leaves its flow runs going on unsupervised. A watchdog thread notices the parent is
    gone, points stdout/stderr (pipes to the dead worker) at /dev/null so that logging
    cannot fail, and sends this process SIGTERM, which Prefect reports as Crashed; the
    trials are stopped and the next run of the deployment resumes through the cache.
    """
    if not runtime.deployment.id:
        return
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="sweepflow-worker-watch", daemon=True).start()


def _results(future: Any, unit: list[TrialSpec]) -> list[tuple[TrialSpec, Any, str]]:
    """(spec, result or None, error) of every trial of a finished task."""
    value = future.result(raise_on_failure=False)
    if isinstance(value, list):  # a chunk: one item per trial
        return [(spec, item.result, item.error) for spec, item in zip(unit, value, strict=True)]
    if isinstance(value, TrialResult):
        return [(unit[0], value, "")]
    error = str(value) if isinstance(value, BaseException) else "failed"
    return [(spec, None, error) for spec in unit]


def _table(job: str, rows: list[TrialOutcome]) -> None:
    """The trial table on the flow run (shown in the Prefect UI)."""
    table = [
        {
            "trial": o.index,
            "parameters": o.label,
            "status": o.status,
            "seconds": round(o.duration, 3) if o.duration is not None else None,
            "mlflow run": o.run_id,
            **{f"metric.{k}": v for k, v in sorted(o.metrics.items())[:8]},
        }
        for o in rows
    ]
    create_table_artifact(table, key=f"trials-{job.lower().replace('_', '-')}"[:64])
