"""A ``dask-local`` cluster started by ``sweepflow run`` before the flow.

Starting two worker processes that import Dask, Prefect and the trial task takes ~5 s
here; the CLI spends about as long importing Prefect and creating the flow run. So when
it already knows everything the workers need (the profile, the Prefect API URL without
importing Prefect, the MLflow store), the CLI starts the cluster on a thread first, and
the flow connects to it (:func:`take`) instead of starting its own. The CLI closes it
when the run ends. Deployments and direct flow calls start their cluster in the flow.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sweepflow.spec.profiles import Profile

__all__ = ["close", "local_cluster_kwargs", "start", "take", "worker_environment"]

_STARTED: dict[str, Any] = {}  # kwargs, adapt, thread, cluster, error
_LOCK = threading.Lock()


def worker_environment(profile: Profile, api_url: str, tracking_uri: str) -> dict[str, str]:
    """What every Dask worker of a run gets: the flow's Prefect API (never an ephemeral
    server of its own), the MLflow store and quiet logging; then the profile's own."""
    env = {
        "PREFECT_API_URL": api_url.rstrip("/"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    if profile.float64 == "cpu":  # read by the LLC sampling step
        env["SWEEPFLOW_FLOAT64"] = "cpu"
    return {**env, **profile.worker_env}  # type: ignore[attr-defined]


def local_cluster_kwargs(
    profile: Profile, api_url: str, tracking_uri: str, state: Path
) -> dict[str, Any]:
    """``distributed.LocalCluster`` arguments of a ``dask-local`` run: the profile's, the
    worker environment, and worker processes importing the trial task as they start."""
    env = worker_environment(profile, api_url, tracking_uri)
    kwargs = profile.model_copy(update={"worker_env": env}).cluster_kwargs(state)
    if kwargs.get("processes", True):
        kwargs.setdefault("preload", ["tasks.trials"])
    return kwargs


def start(kwargs: dict[str, Any], adapt: dict[str, int] | None) -> None:
    """Start a ``LocalCluster(**kwargs)`` (adapting between ``adapt`` bounds) on a thread."""

    def run() -> None:
        try:
            import dask
            from distributed import LocalCluster

            dask.config.set({"distributed.deploy.lost-worker-timeout": "5s"})
            cluster = LocalCluster(**kwargs)
            if adapt:
                cluster.adapt(**adapt)  # type: ignore[arg-type]
            _STARTED["cluster"] = cluster
        except Exception as exc:  # the flow starts its own cluster instead
            _STARTED["error"] = exc

    with _LOCK:
        close()
        thread = threading.Thread(target=run, name="sweepflow-cluster-prestart", daemon=True)
        _STARTED.update(kwargs=kwargs, adapt=adapt, thread=thread)
        thread.start()


def take(kwargs: dict[str, Any], adapt: dict[str, int] | None) -> str | None:
    """The scheduler address of the cluster :func:`start` made with these very
    arguments (waiting for it), or None: none, another one, or it failed to start."""
    with _LOCK:
        if _STARTED.get("kwargs") != kwargs or _STARTED.get("adapt") != adapt:
            return None
        _STARTED["thread"].join()
        cluster = _STARTED.get("cluster")
        return cluster.scheduler_address if cluster is not None else None


def close() -> None:
    """Close the started cluster, if any (waits for it to finish starting)."""
    thread = _STARTED.get("thread")
    if thread is not None:
        thread.join()
    cluster = _STARTED.get("cluster")
    _STARTED.clear()
    if cluster is not None:
        cluster.close()
