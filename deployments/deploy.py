"""``sweepflow deploy``: one Prefect deployment ``run-job/<job>`` per job of a job file.

Each deployment runs in the folder of its job file (a ``set_working_directory`` pull
step), on the ``sweepflow`` process work pool, with the job's name and file as default
parameters and the job's ``schedule:`` as its cron schedule. Prefect upserts deployments
by (flow, name), so deploying again updates them (schedules included) instead of adding
copies.

Everything goes through Prefect's client (``create_deployment`` with
``DeploymentScheduleCreate``, ``read_flow_runs``). Not ``flow.to_deployment(...)`` /
``RunnerDeployment.apply``: for a module entrypoint without remote storage it registers
no pull steps (empty on create, cleared on update), so the worker would not run the flow
in the job's folder. The one call without a client method is the server's "schedule
runs now" route, taken by name from the client's own route list.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sweepflow.errors import SweepflowError
from sweepflow.spec.jobs import JobFile

__all__ = ["ENTRYPOINT", "WORK_POOL", "Deployment", "api_url", "apply", "plan"]

FLOW_NAME = "run-job"
# A module path, not a file path: the worker imports the installed flow, so the
# deployment works from any project folder, not only from sweepflow's source tree.
ENTRYPOINT = "flows.run_job.run_job"
WORK_POOL = "sweepflow"
SCHEDULED_AHEAD = 3  # runs created right away for a scheduled deployment


@dataclass(frozen=True)
class Deployment:
    """What ``sweepflow deploy`` registers for one job."""

    job: str
    directory: Path
    parameters: dict[str, Any]
    work_pool: str = WORK_POOL
    cron: str | None = None
    timezone: str | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    next_runs: list[datetime] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The deployment's full name, as ``prefect deployment run`` takes it."""
        return f"{FLOW_NAME}/{self.job}"

    def describe(self) -> list[str]:
        """Lines for the terminal: name, folder, pool, parameters, schedule."""
        schedule = f"{self.cron} ({self.timezone or 'UTC'})" if self.cron else "none"
        lines = [
            f"{self.name}",
            f"  working directory: {self.directory}",
            f"  work pool: {self.work_pool}   entrypoint: {ENTRYPOINT}",
            f"  parameters: {self.parameters}",
            f"  schedule: {schedule}",
        ]
        if self.next_runs:
            lines.append("  next runs: " + ", ".join(t.isoformat() for t in self.next_runs))
        return lines


def plan(
    jobfile: JobFile, names: list[str] | None = None, pool: str = WORK_POOL
) -> list[Deployment]:
    """The deployments for ``names`` (default: every job) of ``jobfile``; checks names."""
    if jobfile.path is None:
        raise SweepflowError("sweepflow deploy needs a job file on disk; pass --file PATH")
    path = jobfile.path.resolve()
    keys = [jobfile.job(name).key for name in names] if names else list(jobfile.jobs)
    out = []
    for key in dict.fromkeys(keys):
        job = jobfile.jobs[key]
        out.append(
            Deployment(
                job=key,
                directory=path.parent,
                parameters={"job": key, "job_file": str(path)},
                work_pool=pool,
                cron=job.schedule.cron if job.schedule else None,
                timezone=job.schedule.timezone if job.schedule else None,
                tags=("sweepflow", *job.tags),
                description=job.description or f"sweepflow job '{key}' of {path}",
            )
        )
    return out


def api_url(project_dir: Path) -> str:
    """The Prefect API to deploy to: ``PREFECT_API_URL``, else the server of the job
    file's project, else that of the working directory (``sweepflow up`` run there,
    e.g. at the repository root, then ``sweepflow deploy -f examples/sweepflow.yaml``)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    from sweepflow.services.servers import configured_api_url

    url = configured_api_url(project_dir) or configured_api_url(Path.cwd())
    if not url:
        raise SweepflowError(
            "no Prefect server to deploy to: start one with 'sweepflow up' (or set "
            "PREFECT_API_URL to a running server)"
        )
    return url


def apply(deployments: list[Deployment], url: str) -> list[Deployment]:
    """Register (or update) ``deployments`` on the server at ``url``; returns them with
    their next scheduled runs filled in."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.run_job import run_job
    from sweepflow.services.launch import ensure_pool

    for pool in dict.fromkeys(d.work_pool for d in deployments):
        ensure_pool(url, pool)
    schema = run_job.parameters.model_dump()
    done = []
    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(FLOW_NAME)
        for d in deployments:
            schedules = []
            if d.cron:
                cron = CronSchedule(cron=d.cron, timezone=d.timezone or "UTC")
                schedules = [DeploymentScheduleCreate(schedule=cron, active=True)]
            deployment_id = client.create_deployment(
                flow_id=flow_id,
                name=d.job,
                parameters=d.parameters,
                parameter_openapi_schema=schema,
                enforce_parameter_schema=True,
                work_pool_name=d.work_pool,
                entrypoint=ENTRYPOINT,
                pull_steps=[
                    {
                        "prefect.deployments.steps.set_working_directory": {
                            "directory": str(d.directory)
                        }
                    }
                ],
                schedules=schedules,
                tags=list(d.tags),
                description=d.description,
            )
            next_runs: list[datetime] = []
            if schedules:
                # The server's scheduler adds runs on its own loop (every minute); asking
                # now makes the next runs visible as soon as the command returns.
                client.request(
                    "POST",
                    "/deployments/{id}/schedule",
                    path_params={"id": deployment_id},
                    json={"max_runs": SCHEDULED_AHEAD},
                )
                runs = _scheduled(client, deployment_id)
                next_runs = sorted(r.expected_start_time for r in runs)[:SCHEDULED_AHEAD]
            done.append(replace(d, next_runs=next_runs))
    return done


def _scheduled(client: Any, deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    return client.read_flow_runs(
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        ),
        limit=10,
    )
