"""The step task: one workflow step that missed the store, run where the profile says."""

from __future__ import annotations

from prefect import runtime, task
from prefect.cache_policies import NO_CACHE

from sweepflow.workflow.executor import Executed, StepWork

__all__ = ["run_step_task"]


# The store is the cache (sweepflow.workflow): a step that hits creates no task run, so
# Prefect's cache and result persistence are off. Transient errors are retried inside
# the work (with backoff, the profile's retries), so the task itself is not retried.
@task(name="run-step", cache_policy=NO_CACHE, persist_result=False, retries=0)
def run_step_task(work: StepWork) -> Executed:
    """Run the step (in a fresh workspace), store its outputs; writes no catalog."""
    return work(
        {
            "prefect_flow_run_id": str(runtime.flow_run.id),
            "prefect_task_run_id": str(runtime.task_run.id),
        }
    )
