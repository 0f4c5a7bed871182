"""Starting the servers of ``sweepflow up``: the Prefect server, the process worker on
the ``sweepflow`` pool, and the MLflow UI, each detached with its ownership marker
(:func:`sweepflow.services.files._launch`), recorded in ``servers.json``; and the
health checks ``up`` and ``status`` wait on. :mod:`sweepflow.services.servers` decides
what to start and in which order.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from sweepflow.services.database import Postgres
from sweepflow.services.files import HOST, _answers, _launch, _Layout, _write_json
from sweepflow.tracking.uri import artifact_root, prepare_store

__all__ = ["POOL", "ensure_pool"]

POOL = "sweepflow"


def _start_prefect(
    layout: _Layout, record: dict[str, Any], port: int, cwd: Path, db: Postgres | None
) -> None:
    url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    database = db.prefect_url if db else f"sqlite+aiosqlite:///{layout.prefect_db}"
    env |= {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"{url}/api",
        # In the environment, not the command line (`ps` shows that to every user).
        # Prefect 3 reads either name; both are set so that neither is stale.
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
    }
    record["prefect"] = _launch(layout, "prefect", argv, env, cwd)
    record["prefect"] |= {"port": port, "url": url, "api_url": f"{url}/api", "database": database}
    _write_json(layout.record, record)


def _start_mlflow(layout: _Layout, record: dict[str, Any], port: int, uri: str, cwd: Path) -> None:
    # The UI reads artifacts of runs straight from their file: URIs; new experiments
    # made in the UI get the same root the by-hand and flow paths use.
    root = artifact_root(uri) or layout.folder.parent / "mlartifacts"
    if uri.startswith("sqlite:"):
        prepare_store(uri)
    # A new PostgreSQL store gets MLflow's schema from the server as it starts (with
    # the Default experiment's artifacts under `root`); its database exists already.
    root.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "mlflow", "server"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1"]
    argv += ["--default-artifact-root", root.resolve().as_uri(), "--no-serve-artifacts"]
    url = f"http://{HOST}:{port}"
    # MLflow 3's server also starts a job runner and seven huey consumers (GenAI jobs):
    # eight idle processes that take ~50 % of a core between them on a 2-core machine.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    env["MLFLOW_BACKEND_STORE_URI"] = uri  # not on the command line: it may hold a password
    record["mlflow"] = _launch(layout, "mlflow", argv, env, cwd)
    record["mlflow"] |= {"port": port, "url": url, "tracking_uri": uri}
    _write_json(layout.record, record)


def _start_worker(
    layout: _Layout, record: dict[str, Any], api_url: str, uri: str, cwd: Path
) -> str:
    name = f"sweepflow-{secrets.token_hex(4)}"
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL]
    argv += ["--type", "process", "--name", name]
    env = dict(os.environ)
    env |= {
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_TRACKING_URI": uri,  # flow runs log where the UI looks
    }
    # The project folder, for flows and pull steps that ask (deployments made from an
    # older prefect.yaml enter it). Not where the code is: prefect.yaml's pull step
    # finds `flows/` itself (deployments.steps.enter_code_root).
    env.setdefault("SWEEPFLOW_PROJECT_DIR", str(cwd))
    record["worker"] = _launch(layout, "worker", argv, env, cwd)
    record["worker"] |= {"pool": POOL, "name": name}
    _write_json(layout.record, record)
    return name


def ensure_pool(api_url: str, name: str = POOL) -> None:
    """Create the process work pool ``name`` (default ``sweepflow``) unless it exists."""
    if _answers(f"{api_url}/work_pools/{name}"):
        return
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    pool = WorkPoolCreate(
        name=name, type="process", base_job_template=ProcessWorker.get_default_base_job_template()
    )
    with SyncPrefectClient(api_url) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(pool)


def _prefect_healthy(api_url: str) -> bool:
    return _answers(f"{api_url}/health") is not None


def _online(api_url: str, worker_name: str) -> bool:
    """Whether the worker ``worker_name`` is ONLINE in the ``sweepflow`` pool."""
    body = _answers(
        f"{api_url}/work_pools/{POOL}/workers/filter", data=b'{"offset": 0, "limit": 200}'
    )
    try:
        workers = json.loads(body) if body else []
    except ValueError:
        return False
    return any(w.get("name") == worker_name and w.get("status") == "ONLINE" for w in workers)
