"""What the run-job and optimize flows share: task runners, placement, flow-run upkeep."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Flow, runtime
from prefect.artifacts import create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from sweepflow.engine.progress import TrialOutcome, metric_columns
from sweepflow.execution.lifetime import die_with_parent
from sweepflow.execution.trial import TrialResult
from sweepflow.services.cluster import local_cluster_kwargs, take, worker_environment
from sweepflow.spec.profiles import Profile

__all__ = [
    "JSONFlow",
    "annotate",
    "capacity",
    "end_with_worker",
    "json_flow",
    "metric_columns",
    "placement_tags",
    "save_profile",
    "start_cluster",
    "task_runner",
    "trials_table",
]


def capacity(profile: Profile) -> int:
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


def task_runner(profile: Profile, window: int, state: Path, uri: str) -> Any:
    """The task runner of ``profile``, its Dask workers pointed at this run's services.

    Dask workers are other processes (SLURM jobs, perhaps on other nodes): they get the
    Prefect API this flow reports to (never an ephemeral server of their own), the
    MLflow store, and quiet logging (``worker_environment``). Paths are absolute; on a
    cluster the state folder must be on a shared file system. A ``dask-local`` run
    uses the cluster ``sweepflow run`` started before the flow, when it has one.
    """
    if profile.type == "local":
        return profile.task_runner(window)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    import dask

    # A worker lost with its SLURM job (scancel, preemption, walltime) is given up
    # after this long; its tasks go to another worker (adapt starts a new job).
    dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"})
    if profile.type == "dask-local":
        from prefect_dask import DaskTaskRunner

        kwargs = local_cluster_kwargs(profile, api_url, uri, state)
        adapt = profile.adapt_kwargs()  # type: ignore[attr-defined]
        address = take(kwargs, adapt)  # the cluster `sweepflow run` started, if any
        if address is not None:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs, adapt_kwargs=adapt
        )
    env = worker_environment(profile, api_url, uri)
    return profile.model_copy(update={"worker_env": env}).task_runner(window, state_dir=state)


def start_cluster(runner: Any) -> Callable[[], None]:
    """Start a Dask task runner's cluster on a thread; return the function that waits
    for it (and raises what starting raised). Meanwhile the flow opens MLflow and its
    parent run: seconds the workers spend starting and importing. Other runners start
    nothing; their wait returns at once."""
    if not isinstance(getattr(type(runner), "client", None), property):
        return lambda: None
    errors: list[BaseException] = []

    def start() -> None:
        try:
            runner.client  # noqa: B018 - the property creates the cluster and client
        except BaseException as exc:  # raised again in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=start, name="sweepflow-cluster-start", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if errors:
            raise errors[0]

    return wait


def placement_tags(result: TrialResult | None) -> dict[str, str]:
    """MLflow tags saying where a trial ran (host; SLURM job, node and GPUs if any)."""
    if result is None:
        return {}
    tags = {"sweepflow.trial_host": result.host} if result.host else {}
    names = {"SLURM_JOB_ID": "slurm_job_id", "SLURMD_NODENAME": "node"}
    names["CUDA_VISIBLE_DEVICES"] = "cuda_visible_devices"
    return tags | {f"sweepflow.{names[k]}": v for k, v in result.placement.items() if k in names}


def annotate(resources: dict[str, float]) -> Any:
    """Dask annotations for a task that needs ``resources`` (e.g. ``{"gpu": 1}``)."""
    if not resources:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources=resources)


def save_profile(
    profile: Profile, state: Path, job: str, flow_run_id: str, tracker: Any, parent: str
) -> None:
    """Keep the fully resolved profile with the run: state folder and MLflow parent run."""
    resolved = profile.resolved()
    folder = state / "runs" / job / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{flow_run_id or int(time.time())}.json"
    text = json.dumps(resolved, indent=2, default=str) + "\n"
    (folder / name).write_text(text)
    tracker.log_text(parent, "profile.json", text)


def end_with_worker() -> None:
    """Under a worker, end this flow run when the worker process dies.

    The worker starts each flow run as a child process; without this, a killed worker
    leaves its flow runs going on unsupervised. The kernel tells this process
    (``PR_SET_PDEATHSIG``, SIGHUP) when the worker is gone; the handler points
    stdout/stderr (pipes to the dead worker) at /dev/null so that logging cannot fail,
    and sends this process SIGTERM, which Prefect reports as Crashed; the trials are
    stopped and the next run of the deployment resumes through the cache. Where the
    kernel cannot (not Linux, or not on the main thread, which alone may set signal
    handlers), a thread watches the parent instead.
    """
    if not runtime.deployment.id:
        return
    parent = os.getppid()

    def end() -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.kill(os.getpid(), signal.SIGTERM)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGHUP, lambda signum, frame: end())
        if die_with_parent(signal.SIGHUP, parent=parent):
            return
        signal.signal(signal.SIGHUP, previous)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        end()

    threading.Thread(target=watch, name="sweepflow-worker-watch", daemon=True).start()


def trials_table(job: str, rows: list[TrialOutcome], target: str | None = None) -> None:
    """The trial table on the flow run (shown in the Prefect UI), the target metric in
    the first metric column."""
    names = metric_columns(rows, target)
    table = [
        {
            "trial": o.index,
            "parameters": o.label,
            "status": o.status,
            "seconds": round(o.duration, 3) if o.duration is not None else None,
            "mlflow run": o.run_id,
            **{f"metric.{name}": o.metrics.get(name) for name in names},
        }
        for o in rows
    ]
    create_table_artifact(table, key=f"trials-{job.lower().replace('_', '-')}"[:64])


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON as it is (None, bool, int, float, str, lists of them)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and all(_plain(item) for item in value)


class JSONFlow(Flow[Any, Any]):
    """A flow whose parameters (sweepflow's: strings, numbers, lists of strings) are
    sent to the API as they are. Prefect's own serialisation imports FastAPI for its
    ``jsonable_encoder`` on every flow call, ~120 ms of a warm one-trial run; any other
    value still goes through it."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(_plain(value) for value in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def json_flow(name: str) -> Callable[[Callable[..., Any]], JSONFlow]:
    """``@flow(name=name)`` as a :class:`JSONFlow`, its own task runner unused (tasks
    go to the profile's, :func:`task_runner`)."""

    def decorate(fn: Callable[..., Any]) -> JSONFlow:
        return JSONFlow(fn, name=name, task_runner=ThreadPoolTaskRunner(max_workers=1))

    return decorate
