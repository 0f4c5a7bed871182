"""The run-workflow flow: each step that misses the store a Prefect task; hits log a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE

from flows._runtime import json_flow
from sweepflow.settings import state_dir
from sweepflow.workflow import Step, load_config
from sweepflow.workflow.events import emit_step_events
from sweepflow.workflow.executor import StepWork
from sweepflow.workflow.run import Executed, StepOutcome, import_workflow, run_workflow

__all__ = ["run_workflow_flow"]


_TASK_RUNS: dict[str, str] = {}  # cache key -> the task run that made it (asset events)


def _as_task(step: Step, work: StepWork) -> Executed:
    """Run ``work`` as the Prefect task ``step.name``, with the run ids in its provenance."""

    def run_step_task() -> Executed:
        _TASK_RUNS[work.plan.key] = str(runtime.task_run.id)
        return work(
            {
                "prefect_flow_run_id": str(runtime.flow_run.id),
                "prefect_task_run_id": str(runtime.task_run.id),
            }
        )

    # Retries are the step's own (transient errors only); the store is the cache.
    named = task(name=step.name, task_run_name=step.name, cache_policy=NO_CACHE, retries=0)
    return named(run_step_task)()


@json_flow("run-workflow")
def run_workflow_flow(
    workflow: str,
    config: str | None = None,
    overrides: list[str] | None = None,
    stages: str | None = None,
    no_cache: bool = False,
    project_dir: str | None = None,
    retries: int = 2,
) -> dict[str, Any]:
    """Run the workflow ``module:attribute`` with its YAML ``config`` and ``overrides``.

    Steps whose result is stored create no task run (a log line says what they reused);
    ``stages`` selects steps (``a,b`` or ``a:c``), the others resolve from the store.
    Returns :class:`~sweepflow.workflow.run.WorkflowResult` as JSON.
    """
    project = Path(project_dir or ".").resolve()
    found = import_workflow(workflow, project)
    configs = load_config(found, config, overrides or [])
    logger = get_run_logger()

    def report(outcome: StepOutcome) -> None:
        if outcome.status == "hit":
            logger.info("%s: reused %s (cache hit)", outcome.step, ", ".join(outcome.ids))
        else:
            logger.info(
                "%s: ran in %.2fs, %s", outcome.step, outcome.seconds, ", ".join(outcome.ids)
            )
        run = _TASK_RUNS.pop(outcome.key, None) if outcome.status == "ran" else None
        emit_step_events(outcome, task_run_id=run, workflow=found.name)

    result = run_workflow(
        found,
        configs,
        project,
        state_dir(project),
        stages=stages,
        no_cache=no_cache,
        on_step=report,
        retries=retries,
        execute=_as_task,
        run_id=str(runtime.flow_run.id),
    )
    return result.model_dump(mode="json")
