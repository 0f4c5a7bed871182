"""The ask/tell loop of a search: Optuna asks, trial tasks evaluate, the study is told.

Called inside a flow (``optimize``, or ``run-job`` for a job with ``optimize:``). The
engine keeps ``parallel`` trials in flight: each is asked from the study (TPE with
``constant_liar`` spreads parallel asks), run as the sweep's trial task (caching,
MLflow child run, logs), and told as soon as it ends. A trial whose parameters and code
have a cached result is told that value without a task run.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from flows._record import Record, open_parent
from flows._runner import TaskRunner, not_pruned
from flows._runtime import capacity, task_runner
from flows._workflows import WorkflowRunner, workflow_tracking
from sweepflow.cache.results import lookup
from sweepflow.engine import Callbacks, Outcome, schedule
from sweepflow.errors import IncompleteRun
from sweepflow.execution.trial import TrialSpec, accept, terminate_all
from sweepflow.plan.expansion import compile_job
from sweepflow.plan.space import search_space
from sweepflow.plan.specs import spec_maker
from sweepflow.search.locations import shown
from sweepflow.search.loop import Asked, import_plotting, run_tags, start_search, tell
from sweepflow.search.pruning import study_env
from sweepflow.search.report import best_summary, publish_study
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import find_job_file, load_jobs
from sweepflow.spec.profiles import load_profile
from sweepflow.tracking.writer import default_tracking_uri
from tasks.trials import run_trial

__all__ = ["search"]


def search(
    job: str,
    overrides: list[str] | None = None,
    job_file: str | None = None,
    profile: str | None = None,
    profile_set: list[str] | None = None,
    refresh: bool = False,
    extra: list[str] | None = None,
    max_parallel: int | None = None,
    n_trials: int | None = None,
    storage: str | None = None,
    fail_fast: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the search of ``job`` until its study has ``n_trials`` trials.

    Other drivers of the study (another ``sweepflow run`` of the job) may run at once:
    they share the ``n_trials``, each asking under the study's ask lock.
    """
    jobfile = load_jobs(job_file or find_job_file())
    the_job = jobfile.job(job)
    plan = compile_job(the_job, overrides or [])
    settings = the_job.optimize
    if settings is None:
        raise the_job.error("has no optimize: section: run it with run_job", "optimize")
    space = search_space(plan)
    project = jobfile.path.parent.resolve()
    state = state_dir(project)
    chosen = load_profile(profile or the_job.profile, profile_set or [], project)
    make_spec = spec_maker(plan, project, extra)
    cached = lookup(state, enabled=not refresh and the_job.cache)
    found = start_search(the_job, space, state, make_spec, cached, n_trials, storage)
    study, name, location, names = found.study, found.name, found.location, settings.metrics
    total, remaining = found.total, found.remaining

    uri = default_tracking_uri(project)
    asked = {"overrides": " ".join(overrides or []), "extra": " ".join(extra or [])}
    asked |= {"n_trials": str(total), "sampler": settings.sampler}
    tags = {"sweepflow.search": "optuna", "optuna.study_name": name}
    tags["optuna.storage"] = shown(location)
    tracker, parent = open_parent(the_job, uri, chosen, state, cached, asked, tags)
    record = Record(the_job, tracker, parent, uri, remaining)
    window = max(1, max_parallel or settings.parallel or capacity(chosen))
    runner = task_runner(chosen, window, state, uri) if remaining else ThreadPoolTaskRunner(1)
    retries = max(the_job.retries, chosen.retries)
    single = run_trial.with_options(retries=retries, retry_condition_fn=not_pruned)
    resources = dict(the_job.resources) if chosen.type != "local" else {}
    channel = (names[0], settings.pruner)  # what a trial reports, and who judges it

    def started(items: list[Asked]) -> list[TrialSpec]:
        specs = record.start([a.spec for a in items])
        for item, spec in zip(items, specs, strict=True):
            item.trial.set_user_attr("mlflow_run_id", spec.env["MLFLOW_RUN_ID"])
        if settings.pruner == "none":
            return specs
        # The pruning channel opens the trial by its storage id, which Optuna's public
        # API does not expose (see sweepflow.search.pruning).
        return [
            s.model_copy(
                update={"env": s.env | study_env(location, name, a.trial._trial_id, *channel)}
            )
            for a, s in zip(items, specs, strict=True)
        ]

    def finished(item: Asked, outcome: Outcome) -> Outcome:
        told = tell(study, item.trial, outcome, names, lambda: record.logged(item.spec.index))
        record.finish(item.spec, told, run_tags(item.trial.number, name, told.status))
        return told

    def aborted(items: list[Asked]) -> None:
        record.abort([a.spec for a in items])

    plotting = threading.Thread(target=import_plotting, name="sweepflow-plots", daemon=True)
    plotting.start()
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(runner)
        units: TaskRunner | WorkflowRunner = TaskRunner(runner, single, str(state), resources)
        if the_job.kind == "workflow":  # a trial is a workflow run: its steps are cached
            units = WorkflowRunner(
                runner, the_job, project, state, window, retries=retries, resources=resources,
                no_cache=refresh or not the_job.cache, on_run=workflow_tracking(tracker, state),
            )  # fmt: skip
            stack.callback(units.close)
        callbacks = Callbacks(started, finished, aborted, record.sink.running)
        accept()  # a stop of an earlier run in this process is over
        report = schedule(found.source, units, window, callbacks, fail_fast)
    except BaseException:
        terminate_all()
        stack.close()
        record.close("KILLED")
        raise
    stack.close()
    record.drain()
    plotting.join()
    with found.source.lock():  # one driver of the study at a time tags the best run
        best = best_summary(study, names)
        publish_study(study, tracker, parent, the_job.key, state, best)
    counts = record.close("FINISHED" if best else "FAILED")
    summary = record.publish([record.outcomes[k] for k in sorted(record.outcomes)], counts)
    summary |= {"study": name, "storage": shown(location), "best": best}
    summary |= {"finished_before": found.before}
    if not best:
        raise IncompleteRun(f"no trial of the search '{job}' completed ({counts['failed']} failed)")
    if report.stopped:
        raise IncompleteRun(f"the search '{job}' stopped at a failed trial (--fail-fast)")
    return summary
