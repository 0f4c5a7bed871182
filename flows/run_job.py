"""The run-job flow: every trial of a job as a cached Prefect task, tracked in MLflow."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from flows._llc import (
    llc_all_stored,
    llc_analyst,
    llc_matrix,
    llc_options,
    llc_specs,
    llc_workflow,
    publish_llc,
)
from flows._record import Record, open_parent
from flows._runner import TaskRunner
from flows._runtime import capacity, end_with_worker, json_flow, start_cluster, task_runner
from flows._workflows import WorkflowRunner, workflow_tracking
from sweepflow.cache.results import cached_results, lookup, running
from sweepflow.engine import Callbacks, Feed, schedule
from sweepflow.errors import IncompleteRun
from sweepflow.execution.trial import accept, terminate_all
from sweepflow.faults import disk_full, is_disk_full, reserve
from sweepflow.plan.expansion import MAX_TRIALS, check_size, compile_job
from sweepflow.plan.specs import build_specs
from sweepflow.reporting.plots import publish_sweep_plot
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import find_job_file, load_jobs
from sweepflow.spec.profiles import load_profile
from sweepflow.tracking.records import varying
from sweepflow.tracking.writer import default_tracking_uri
from sweepflow.workflow.jobs import check_job
from tasks.trials import run_trial

__all__ = ["run_job"]


# Tasks are submitted to the run's profile's task runner (flows._runtime.task_runner),
# not to the flow's; the flow's own runner is left unused.
@json_flow("run-job")
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
    max_trials: int = MAX_TRIALS,
    outputs_check: bool = True,
    promote: str | None = None,
) -> dict[str, Any]:
    """Run every trial of ``job`` (with command-line style ``overrides``).

    Cached trials (same command, parameters and code) are not run again and create no
    task run. ``profile`` (a name or path; default: the job's ``profile:``, else
    ``local``) says where tasks run, with ``profile_set`` items (``key=value``)
    overriding its fields. Returns the counts and one row per trial.

    A job with ``optimize:`` runs its search instead (see ``flows.optimize``), with
    ``n_trials`` and ``storage`` overriding the job's. A sweep of more than
    ``max_trials`` trials is refused before anything is expanded. A cached trial whose
    folder is gone runs again unless ``outputs_check`` is False.

    An ``llc:`` job (or an LLC experiments file as ``job_file``) runs one trial per
    (target, sampler) pair, its ``overrides`` being ``--set`` items; ``promote`` is the
    folder its gallery is written to.
    """
    end_with_worker()
    jobfile = load_jobs(_existing(job_file) if job_file else find_job_file())
    the_job = jobfile.job(job)
    project = jobfile.path.parent.resolve()
    options = {"profile": profile, "profile_set": profile_set, "refresh": refresh}
    options |= {"extra": extra, "max_parallel": max_parallel, "fail_fast": fail_fast}
    reserve(state_dir(project))  # room for the last writes should the disk fill up
    with running(state_dir(project), the_job.key):
        if the_job.optimize is None:
            return _sweep(
                jobfile, the_job, overrides, max_trials=max_trials, outputs_check=outputs_check,
                promote=promote, **options,
            )  # fmt: skip
        from flows._search import search  # a search: the same flow runs it (deployments)

        return search(
            job, overrides, job_file=job_file, n_trials=n_trials, storage=storage, **options
        )


def _existing(job_file: str) -> str:
    """``job_file`` unchanged if it is a file; else one error line saying where it was
    looked for (a deployment run starts in the folder that holds ``flows/``)."""
    from pathlib import Path

    from sweepflow.errors import JobFileError

    if not Path(job_file).expanduser().is_file():
        raise JobFileError(
            [
                f"no job file at {Path(job_file).expanduser().resolve()} (job_file="
                f"{job_file!r}, relative to the flow run's folder {Path.cwd()}): pass an "
                "existing job file, absolute or relative to that folder"
            ]
        )
    return job_file


def _sweep(
    jobfile: Any,
    the_job: Any,
    overrides: list[str] | None,
    *,
    profile: str | None,
    profile_set: list[str] | None,
    refresh: bool,
    extra: list[str] | None,
    max_parallel: int | None,
    fail_fast: bool,
    max_trials: int,
    outputs_check: bool,
    promote: str | None = None,
) -> dict[str, Any]:
    """The sweep of ``the_job``: every trial, cached ones told without a task run."""
    project = jobfile.path.parent.resolve()
    state = state_dir(project)
    chosen = load_profile(profile or the_job.profile, profile_set or [], project)
    retries = max(the_job.retries, chosen.retries)  # a flaky cluster's profile may ask more
    matrix = llc_matrix(the_job, overrides) if the_job.kind == "llc" else None
    if matrix is not None:
        specs = llc_specs(matrix, the_job, project)
    else:
        plan = compile_job(the_job, overrides or [])
        check_size(plan, max_trials)
        specs = build_specs(plan, project, extra)
    enabled = not refresh and the_job.cache
    workflow = the_job.kind in ("workflow", "llc")  # its steps are cached, not its trials
    looked = time.time()  # results stored after this were made by another run
    cached = lookup(state, enabled=enabled and not workflow)
    hits, notes = cached_results(
        specs, state, enabled=enabled and not workflow, outputs_check=outputs_check
    )
    todo = [s for s in specs if s.index not in hits]
    window = max(1, max_parallel or capacity(chosen))
    # A workflow job's every trial config is loaded before anything starts.
    steps, options = None, dict[str, Any]()
    if matrix is not None:
        steps = llc_workflow()
    elif workflow:
        steps, configs = check_job(the_job, project, (s.items for s in specs))
        by_trial = {s.index: c for s, c in zip(specs, configs, strict=True)}
        options["configs"] = lambda spec: by_trial[spec.index]
    uri = default_tracking_uri(project)
    # Nothing to run (all cached): no cluster to start. Otherwise the cluster starts (its
    # workers importing what trials need) while this process opens MLflow.
    # Every pair of an LLC matrix stored: its steps run nowhere, no cluster to start.
    idle = not todo or (matrix is not None and llc_all_stored(matrix, project, state, enabled))
    runner = ThreadPoolTaskRunner(1) if idle else task_runner(chosen, window, state, uri)
    stack = contextlib.ExitStack()
    stack.enter_context(runner)
    cluster_ready = start_cluster(runner)
    try:
        asked = {"overrides": " ".join(overrides or []), "extra": " ".join(extra or [])}
        tracker, parent = open_parent(the_job, uri, chosen, state, cached, asked, size=len(specs))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            cluster_ready()
        stack.close()
        if isinstance(exc, Exception) and is_disk_full(exc):
            raise disk_full(state) from exc
        raise
    record = Record(
        the_job, tracker, parent, uri, len(specs), len(hits), todo, notes, state, looked,
        varying=varying([s.params for s in specs]),  # what names a trial's run
    )  # fmt: skip
    for spec in specs:
        if spec.index in hits:
            record.cached(spec, hits[spec.index])
    feed = Feed(todo, 1 if workflow else the_job.chunk, window)
    resources = dict(the_job.resources) if chosen.type != "local" else {}
    units: TaskRunner | WorkflowRunner
    analyst = llc_analyst(matrix, state, tracker) if matrix is not None else None
    if workflow:
        units = WorkflowRunner(
            runner, the_job, project, state, window, retries=retries, resources=resources,
            no_cache=not enabled, on_run=workflow_tracking(tracker, state), workflow=steps,
            **(options if matrix is None else llc_options(matrix, analyst, resources, chosen)),
        )  # fmt: skip
        stack.callback(units.close)
    else:
        single = run_trial.with_options(retries=retries)
        chunking = {"fail_fast": fail_fast, "retries": retries}
        fixed = feed.fixed is not None
        units = TaskRunner(runner, single, str(state), resources, fixed, **chunking)
    callbacks = Callbacks(record.start, record.finish, record.abort, record.sink.running)
    try:
        cluster_ready()
        accept()  # a stop of an earlier run in this process is over
        schedule(feed, units, window, callbacks, fail_fast)
    except BaseException:
        terminate_all()
        with contextlib.suppress(Exception):
            cluster_ready()
        stack.close()
        record.close("KILLED")
        raise
    stack.close()
    counts = record.close()
    summary = record.publish([record.outcomes[s.index] for s in specs], counts)
    rows = [record.outcomes[s.index] for s in specs]
    publish_sweep_plot(tracker, parent, the_job.key, specs, rows, state)  # never raises
    if analyst is not None:
        summary |= publish_llc(analyst, Path(promote) if promote else None)
    if failed := counts["failed"] + counts["cancelled"]:
        raise IncompleteRun(
            f"{failed} of {len(specs)} trials of job '{the_job.key}' did not finish"
        )
    return summary
