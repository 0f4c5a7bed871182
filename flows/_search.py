"""The ask/tell loop of a search: Optuna asks, trial tasks evaluate, the study is told.

Called inside a flow (``optimize``, or ``run-job`` for a job with ``optimize:``). It
keeps ``parallel`` trials in flight: each is asked from the study (TPE with
``constant_liar`` spreads parallel asks), run as the sweep's trial task (caching,
MLflow child run, logs), and told as soon as it ends. A trial whose parameters and code
have a cached result is told that value without a task run.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from prefect import runtime
from prefect.task_runners import ThreadPoolTaskRunner

from flows._runtime import (
    annotate,
    capacity,
    placement_tags,
    save_profile,
    task_runner,
    trials_table,
)
from sweepflow.engine.progress import TrialOutcome, count_outcomes, current_sink, outcome_of
from sweepflow.execution.trial import TrialPruned, TrialResult, stop_orphan, terminate_all
from sweepflow.plan.space import search_space
from sweepflow.plan.specs import spec_maker
from sweepflow.search.pruning import study_env
from sweepflow.search.report import best_summary, publish_study
from sweepflow.search.study import (
    DRIVER_ATTR,
    counted,
    distributions,
    driver_id,
    open_storage,
    open_study,
    params_text,
    recover_stale,
    study_location,
)
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import find_job_file, load_jobs
from sweepflow.spec.profiles import load_profile
from sweepflow.tracking.writer import RunWriter, Tracker, default_tracking_uri, trial_tags, versions
from tasks.trials import cached_result, result_store, run_trial

__all__ = ["search"]


def _not_pruned(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed trial, but never one its pruner stopped."""
    try:
        state.result()
    except TrialPruned:
        return False
    except Exception:
        return True
    return True


def objective_values(metrics: dict[str, float], names: tuple[str, ...]) -> list[float] | str:
    """The objective values a trial reported, or why they are missing."""
    missing = [name for name in names if name not in metrics]
    if not missing:
        return [float(metrics[name]) for name in names]
    name = missing[0]
    reported = ", ".join(sorted(metrics)) or "nothing"
    return (
        f"the trial reported no '{name}' metric (it reported: {reported}): return "
        f"{{'{name}': value}} from the function, or call "
        f"sweepflow.log_metrics({{'{name}': value}}) in the program"
    )


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
    """Run (or resume) the search of ``job`` until its study has ``n_trials`` trials."""
    jobfile = load_jobs(job_file or find_job_file())
    the_job = jobfile.job(job)
    plan = the_job.plan(overrides or [])
    settings = the_job.optimize
    if settings is None:
        raise the_job.error("has no optimize: section: run it with run_job", "optimize")
    space = search_space(plan)
    project = jobfile.path.parent.resolve()
    state = state_dir(project)
    chosen = load_profile(profile or the_job.profile, profile_set or [], project)
    retries = max(the_job.retries, chosen.retries)
    make_spec = spec_maker(plan, project, extra)
    store = result_store(state)
    refresh = refresh or not the_job.cache
    name, location = study_location(settings, the_job.key, state, storage)
    study = open_study(
        settings, space, open_storage(location), name, lambda m: the_job.error(m, "optimize")
    )
    names = settings.metrics

    def stale_values(trial: Any) -> list[float] | None:
        """A dead driver's trial: its cached values, else stop what it left running."""
        if any(dim.key not in trial.params for dim in space.dimensions):
            return None  # died while asking: nothing ran
        spec = make_spec(trial.number, params_text(trial, space))
        hit = None if refresh else cached_result(store, spec.cache_key)
        values = objective_values(hit.metrics, names) if hit else None
        if not isinstance(values, list):
            stop_orphan(Path(spec.workdir))  # its slot is asked again
            return None
        return values

    recover_stale(study, stale_values)
    before = sum(counted(t) for t in study.get_trials(deepcopy=False))
    total = n_trials or settings.n_trials or space.grid_size() or 20
    remaining = max(0, total - before)

    uri = default_tracking_uri(project)
    tracker = Tracker(uri, the_job.experiment, the_job.key)
    tracker.reap_stale(lambda key: None if refresh else cached_result(store, key))
    flow_run_id = str(runtime.flow_run.id or "")
    parent = tracker.start_parent(
        {"overrides": " ".join(overrides or []), "extra": " ".join(extra or [])}
        | {"profile": chosen.name, "n_trials": str(total), "sampler": settings.sampler},
        {
            "prefect.flow_run_id": flow_run_id,
            "sweepflow.versions": versions(),
            "sweepflow.search": "optuna",
            "optuna.study_name": name,
            "optuna.storage": location,
        },
    )
    save_profile(chosen, state, the_job.key, flow_run_id, tracker, parent)
    sink = current_sink()
    sink.start(the_job.key, remaining, 0)
    window = max(1, max_parallel or settings.parallel or capacity(chosen))
    runner = task_runner(chosen, window, state, uri) if remaining else ThreadPoolTaskRunner(1)
    resources = dict(the_job.resources) if chosen.type != "local" else {}
    single = run_trial.with_options(
        result_storage=state / "results",
        refresh_cache=refresh,
        retries=retries,
        retry_condition_fn=_not_pruned,
    )
    driver = driver_id()
    dists = distributions(space)
    writer = RunWriter(tracker, parent)
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": tracker.experiment_id}
    outcomes: dict[int, TrialOutcome] = {}
    done: queue.Queue = queue.Queue()
    inflight: dict[Any, tuple[Any, Any]] = {}
    asked, stop = 0, False

    def settle(trial: Any, spec: Any, result: TrialResult | None, error: str, status: str) -> None:
        nonlocal stop
        values: list[float] | str | None = None
        if result is not None:
            values = objective_values(result.metrics, names)
            if isinstance(values, str):  # logged to its MLflow run by the program itself?
                logged = tracker.client.get_run(writer.run_id(trial.number)).data.metrics
                values = objective_values({**logged, **result.metrics}, names)
            if isinstance(values, str):
                status, error = "failed", values
        if status in ("done", "cached"):
            study.tell(trial.number, values)
        elif status == "pruned":
            study.tell(trial.number, state=TrialState.PRUNED)
        else:
            study._storage.set_trial_user_attr(trial._trial_id, "error", error[:2000])
            study.tell(trial.number, state=TrialState.FAIL)
        optuna_state = {"done": "COMPLETE", "cached": "COMPLETE", "pruned": "PRUNED"}
        tags = {"optuna.trial_number": str(trial.number), "optuna.study_name": name}
        tags["optuna.state"] = optuna_state.get(status, "FAIL")
        tags |= placement_tags(result) | {"sweepflow.cached": str(status == "cached").lower()}
        writer.finish(
            trial.number,
            Path(spec.workdir),
            params=spec.params,
            metrics=result.metrics if result else None,
            ok=status in ("done", "cached"),
            tags=tags,
        )
        outcome = outcome_of(spec, status, result, error)
        outcomes[trial.number] = replace(outcome, run_id=writer.run_id(trial.number))
        sink.finished(outcomes[trial.number])
        stop = stop or (fail_fast and status == "failed")

    # The history plot at the end needs matplotlib: import it while trials run.
    plotting = threading.Thread(target=_import_plotting, name="sweepflow-plots", daemon=True)
    plotting.start()
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(runner)
        while (asked < remaining and not stop) or inflight:
            while asked < remaining and len(inflight) < window and not stop:
                trial = study.ask(dists)
                study._storage.set_trial_system_attr(trial._trial_id, DRIVER_ATTR, driver)
                spec = make_spec(trial.number, params_text(trial, space))
                asked += 1
                writer.prepare(trial.number, trial_tags(spec, flow_run_id))
                run_id = writer.run_id(trial.number)
                study._storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", run_id)
                hit = None if refresh else cached_result(store, spec.cache_key)
                if hit is not None:
                    settle(trial, spec, hit, "", "cached")
                    continue
                trial_env = env | {"MLFLOW_RUN_ID": run_id}
                if settings.pruner != "none":
                    trial_env |= study_env(
                        location, name, trial._trial_id, names[0], settings.pruner
                    )
                with annotate(resources):
                    future = runner.submit(
                        single, {"spec": spec.model_copy(update={"env": trial_env})}
                    )
                inflight[future] = (trial, spec)
                future.add_done_callback(done.put)
            sink.running(len(inflight))
            if not inflight:
                continue
            future = done.get()
            trial, spec = inflight.pop(future)
            value = future.result(raise_on_failure=False)
            if isinstance(value, TrialResult):
                settle(trial, spec, value, "", "done")
            elif isinstance(value, TrialPruned):
                settle(trial, spec, None, str(value), "pruned")
            else:
                error = str(value) if isinstance(value, BaseException) else "failed"
                settle(trial, spec, None, error, "failed")
    except BaseException:
        terminate_all()
        stack.close()
        for trial, _ in inflight.values():
            writer.kill(trial.number)
        writer.close()
        tracker.finish_parent(parent, count_outcomes(outcomes.values(), remaining), "KILLED")
        raise
    stack.close()
    sink.running(0)
    writer.close()
    counts = count_outcomes(outcomes.values(), remaining)
    best = best_summary(study, names)
    plotting.join()
    publish_study(study, tracker, parent, the_job.key, state, best)
    status = "FINISHED" if best else "FAILED"
    tracker.finish_parent(parent, counts, status)
    rows = [outcomes[k] for k in sorted(outcomes)]
    trials_table(the_job.key, rows)
    summary = {"job": the_job.key, "experiment": the_job.experiment, "tracking_uri": uri}
    summary |= {"counts": counts, "trials": [vars(o) for o in rows], "parent_run": parent}
    summary |= {"study": name, "storage": location, "best": best, "finished_before": before}
    if not best:
        raise RuntimeError(f"no trial of the search '{job}' completed ({counts['failed']} failed)")
    if stop:
        raise RuntimeError(f"the search '{job}' stopped at a failed trial (--fail-fast)")
    return summary


def _import_plotting() -> None:
    with contextlib.suppress(Exception):
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import optuna.visualization.matplotlib  # noqa: F401
