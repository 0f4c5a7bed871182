"""``workflow:`` jobs: a job file's job that runs a workflow once per trial.

A trial's ``key=value`` items are the workflow config's overrides (``train.lr=0.01``)
over the job's ``config:`` file. :func:`check_job` loads every trial's config before
anything starts, so a bad key in a sweep is one line naming the job, the trial and the
fix, with nothing run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sweepflow.workflow.config import load_config, read_config
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.run import import_workflow
from sweepflow.workflow.workflow import Workflow

__all__ = ["check_job", "job_configs", "job_workflow"]


def job_workflow(job: Any, project: Path) -> Workflow:
    """The workflow a ``workflow:`` job names, imported from the project folder.

    Raises:
        JobError: A name missing from the job file's ``workflows:`` map.
        WorkflowError: A module or attribute that cannot be imported, a bad wiring.
    """
    workflow = import_workflow(job.workflow_ref, project)
    try:
        workflow.validate()
    except WorkflowError as exc:
        raise job.error(
            f"runs workflow '{job.workflow}', which is invalid: {exc}", "workflow"
        ) from None
    return workflow


def job_configs(job: Any, workflow: Workflow) -> Callable[[Sequence[str]], dict[str, BaseModel]]:
    """A trial's step configs from its ``key=value`` items over the job's ``config:``
    file, which is read once here.

    Raises:
        JobError: The config file cannot be read or parsed.
    """
    path = job.config_path
    try:
        source = read_config(workflow, path) if path is not None else None
    except WorkflowError as exc:
        raise job.error(f"has a config: that cannot be read: {exc}", "config") from None
    return lambda items: load_config(workflow, source, items)


def check_job(
    job: Any, project: Path, trials: Iterable[Sequence[str]]
) -> tuple[Workflow, list[dict[str, BaseModel]]]:
    """The job's workflow and each trial's step configs (its ``key=value`` items over
    the job's ``config:``), every one of them valid.

    Raises:
        JobError: The first trial whose config is invalid: the override or
            ``file:line``, the key path and the fix.
    """
    workflow = job_workflow(job, project)
    configs = job_configs(job, workflow)
    checked = []
    for index, items in enumerate(trials):
        try:
            checked.append(configs(items))
        except WorkflowError as exc:
            where = "sets" if job.sets else "optimize" if job.optimize else "config"
            raise job.error(f"trial {index} ({' '.join(items)}): {exc}", where) from None
    return workflow, checked
