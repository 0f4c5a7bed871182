"""The engine's runner for ``workflow:`` jobs: each trial one run of the workflow.

A trial's workflow run is driven on the flow's machine, in a thread of its own: each
step is keyed there (config, input digests, code), a hit is taken from the store with
no task run, and a step that missed runs as a Prefect task on the profile's task
runner (threads, Dask workers, SLURM jobs). The catalog is written here only. Runs of
one sweep that need the same step at once make it once (:class:`Flight`): a sweep over
a late step's parameter runs the early steps once.

One flow run for the sweep, a task run per step that runs: a subflow per trial would
add a flow run (about a second, and an API load that backs up a SQLite server) to
every trial for nothing a user sees.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel

from flows._runtime import annotate
from sweepflow.engine.scheduler import Outcome
from sweepflow.execution.trial import TrialResult, TrialSpec
from sweepflow.store import ObjectStore, Provenance
from sweepflow.tracking.lineage import lineage_tags, log_lineage
from sweepflow.workflow import Step, Workflow, WorkflowError
from sweepflow.workflow.events import emit_step_events
from sweepflow.workflow.executor import Executed, StepWork, base_provenance
from sweepflow.workflow.jobs import job_configs, job_workflow
from sweepflow.workflow.run import (
    StepOutcome,
    WorkflowResult,
    run_workflow,
    store_root,
    trial_metrics,
)
from tasks.steps import run_step_task

#: What ``analyse`` makes of a trial's workflow run: its metrics and MLflow tags.
Analysed = tuple[dict[str, float], dict[str, str]]

__all__ = ["Analysed", "Flight", "WorkflowRunner", "workflow_tracking"]


class Flight:
    """The steps this process is making: one maker per cache key at a time.

    :meth:`claim` is a :data:`sweepflow.workflow.run.Claim`: it yields whether the key
    was made here before (then the store has it, even for a ``--refresh`` run).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, threading.Lock] = {}
        self._made: set[str] = set()

    @contextlib.contextmanager
    def claim(self, key: str) -> Iterator[bool]:
        with self._lock:
            lock = self._keys.setdefault(key, threading.Lock())
        with lock:
            yield key in self._made
            self._made.add(key)  # not reached when making it raised


class WorkflowRunner:
    """Runs each unit (one trial: a workflow run with the trial's ``step.key=value``
    items over the job's ``config:``) in a thread; see the module."""

    def __init__(
        self,
        runner: Any,
        job: Any,
        project: Path,
        state: Path,
        window: int,
        *,
        retries: int = 0,
        resources: dict[str, float] | None = None,
        no_cache: bool = False,
        on_run: Callable[[TrialSpec, WorkflowResult], dict[str, str]] | None = None,
        workflow: Workflow | None = None,
        configs: Callable[[TrialSpec], Mapping[str, BaseModel]] | None = None,
        step_resources: Callable[[Step, TrialSpec], dict[str, float]] | None = None,
        analyse: Callable[[TrialSpec, WorkflowResult], Analysed] | None = None,
        record_as: str | None = None,
    ) -> None:
        """``on_run`` is called (in the trial's thread, one trial at a time) with each
        finished run and returns tags for its trial's MLflow run; ``workflow``: the
        job's, if imported; ``configs`` gives a trial's step configs (default: the
        job's ``config:`` with the trial's items). For workflows that are not a
        ``workflow:`` job's (the LLC matrix): ``step_resources`` a step's Dask resources in a trial
        (default: ``resources`` for every step), and ``analyse`` (in the trial's
        thread, trials at once) the trial's metrics (instead of its steps') and tags;
        ``record_as`` names the runs' ``gc`` roots (default: the workflow's name)."""
        self.runner, self.job, self.project, self.state = runner, job, project, state
        self.workflow = workflow or job_workflow(job, project)
        self.retries, self.resources, self.no_cache = retries, dict(resources or {}), no_cache
        self.configs = configs or _by_items(job_configs(job, self.workflow))
        self.on_run, self.analyse = on_run, analyse
        self.step_resources, self.record_as = step_resources, record_as
        self.flight = Flight()
        self.memo: dict[Path, Any] = {}
        self.base = base_provenance(project, self.workflow.name, None)
        self._submitting = threading.Lock()  # dask.annotate sets global config
        # MLflow inserts a dataset (an input two trials share) after checking it is not
        # there: two trials logging it at once fail on its UNIQUE constraint.
        self._tracking = threading.Lock()
        self._stopping = threading.Event()
        self.task_runs: dict[str, str] = {}  # cache key -> the task run that made it
        self.pool = ThreadPoolExecutor(max(1, window), thread_name_prefix="sweepflow-workflow")

    def close(self) -> None:
        """Start no more steps (a stopped run), and wait for the steps in flight."""
        self._stopping.set()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, payload: Sequence[TrialSpec]) -> _Run:
        """Start one trial's workflow run (units of a workflow job hold one trial)."""
        (spec,) = payload
        context = contextvars.copy_context()  # the flow run's, for the step tasks
        return _Run(self.pool.submit(context.run, self._run, spec))

    def _execute(self, spec: TrialSpec) -> Callable[[Step, StepWork], Executed]:
        def execute(step: Step, work: StepWork) -> Executed:
            if self._stopping.is_set():
                raise WorkflowError(f"step '{step.name}' not started: the run was stopped")
            task = run_step_task.with_options(
                name=step.name,
                task_run_name=f"{step.name}[{spec.index}]",
                timeout_seconds=self.job.timeout,
            )
            wanted = self.step_resources(step, spec) if self.step_resources else self.resources
            with self._submitting, annotate(wanted):
                future = self.runner.submit(task, {"work": work})
            self.task_runs[work.plan.key] = str(future.task_run_id)
            return future.result()

        return execute

    def _made_where(self, result: WorkflowResult) -> Provenance:
        """Where the trial's result was made (its SLURM job, node and GPUs become the
        trial's placement tags, as for other trials)."""
        return _provenance_of(store_root(self.state), result)

    def _run(self, spec: TrialSpec) -> Outcome:
        logger = get_run_logger()
        started = time.time()

        def told(outcome: StepOutcome) -> None:
            what = "reused" if outcome.status == "hit" else f"ran in {outcome.seconds:.2f}s,"
            logger.info("%s [%s] %s: %s %s", self.job.key, spec.label, outcome.step, what,
                        ", ".join(outcome.ids))  # fmt: skip
            run = self.task_runs.get(outcome.key) if outcome.status == "ran" else None
            emit_step_events(outcome, task_run_id=run, workflow=self.workflow.name)

        run_id = spec.env.get("MLFLOW_RUN_ID") or None
        try:
            result = run_workflow(
                self.workflow,
                self.configs(spec),
                self.project,
                self.state,
                no_cache=self.no_cache,
                watch=self.job.watch,
                on_step=told,
                retries=self.retries,
                execute=self._execute(spec),
                run_id=run_id,
                claim=self.flight.claim,
                memo=self.memo,
                provenance=self.base | {"mlflow_run_id": run_id},
                record_as=self.record_as,
            )
        except Exception as exc:
            logger.error("%s [%s] failed: %s", self.job.key, spec.label, exc)
            _write_log(Path(spec.workdir), exc)  # the trial's stderr.log: the traceback
            return Outcome("failed", error=str(exc), seconds=time.time() - started)
        metrics, tags = trial_metrics(result.steps), dict[str, str]()
        if self.analyse is not None:
            try:
                extra, tags = self.analyse(spec, result)
            except Exception as exc:
                logger.error("%s [%s] analysis failed: %s", self.job.key, spec.label, exc)
                return Outcome("failed", error=f"analysis: {exc}", seconds=time.time() - started)
            metrics = extra  # the analysis says what the trial measured
        ended = time.time()
        Path(spec.workdir).mkdir(parents=True, exist_ok=True)
        made = self._made_where(result)
        trial = TrialResult(
            digest=spec.digest,
            cache_key=spec.cache_key,
            index=spec.index,
            params=spec.params,
            value=result.model_dump(mode="json"),
            metrics=metrics,
            started=started,
            ended=ended,
            workdir=spec.workdir,
            host=made.host or socket.gethostname(),
            placement=made.placement,
        )
        with self._tracking:
            tags |= self.on_run(spec, result) if self.on_run is not None else {}
        status = "cached" if all(o.status == "hit" for o in result.steps) else "done"
        return Outcome(status, trial, seconds=ended - started, tags=tags)


def _by_items(
    of_items: Callable[[Sequence[str]], Mapping[str, BaseModel]],
) -> Callable[[TrialSpec], Mapping[str, BaseModel]]:
    """A trial's step configs from its ``key=value`` items."""
    return lambda spec: of_items(spec.items)


def _provenance_of(root: Path, result: WorkflowResult) -> Provenance:
    """How the run's result (its last step's outputs) was made: host and placement."""
    last = result.steps[-1] if result.steps else None
    if last is None or not last.outputs:
        return Provenance()
    return ObjectStore(root).get(next(iter(last.outputs.values()))).meta.provenance


def workflow_tracking(
    tracker: Any, state: Path
) -> Callable[[TrialSpec, WorkflowResult], dict[str, str]]:
    """What a trial's MLflow run records of its workflow run: the artifacts each step
    took as MLflow dataset inputs, and tags with every step's inputs and outputs (full
    digests); returns the tags (:func:`sweepflow.tracking.lineage.lineage_tags`)."""

    def on_run(spec: TrialSpec, result: WorkflowResult) -> dict[str, str]:
        run_id = spec.env.get("MLFLOW_RUN_ID")
        if run_id:
            log_lineage(tracker.client, run_id, result.steps, store_root=store_root(state))
        return lineage_tags(result.steps)

    return on_run


def _write_log(folder: Path, exc: BaseException) -> None:
    """Keep a failed trial's traceback in its folder's ``stderr.log`` (the console
    points there)."""
    import traceback

    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(traceback.format_exception(exc))
    (folder / "stderr.log").write_text(text, encoding="utf-8")


class _Run:
    """A trial's workflow run in flight (a :class:`sweepflow.engine.Pending`)."""

    def __init__(self, future: Future[Outcome]) -> None:
        self.future = future

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self.future.add_done_callback(lambda _: fn(self))

    def outcomes(self) -> list[Outcome]:
        try:
            return [self.future.result()]
        except Exception as exc:  # a bug of the runner itself: the trial fails, not the loop
            return [Outcome("failed", error=f"{type(exc).__name__}: {exc}")]
