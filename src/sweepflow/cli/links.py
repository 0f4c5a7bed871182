"""Where to look at a sweep's records: MLflow UI pages, or the command that starts it.

``sweepflow run``, ``results`` and ``ls`` print the same links through these functions.
The UI is the one ``sweepflow up`` started for the project (``servers.json``), used only
when it answers and serves the same store. Routes are MLflow 3's (a hash router):
``#/experiments/<id>/runs`` (the runs view) and ``#/experiments/<id>/runs/<run>``, with
``?workflowType=machine_learning``: MLflow 3.17's UI otherwise opens in its GenAI mode
(its GenAI / Model training switch, kept per browser, outranks the experiment's
``mlflow.experimentKind`` tag).
"""

from __future__ import annotations

import shlex
from pathlib import Path

__all__ = ["MODEL_TRAINING", "mlflow_lines", "mlflow_ui", "run_page", "runs_view", "start_command"]

#: The query that opens a page of MLflow's UI in its model-training mode.
MODEL_TRAINING = "workflowType=machine_learning"


def mlflow_ui(project: Path | None, tracking_uri: str | None = None) -> str | None:
    """The URL of the project's MLflow UI if it runs, answers, and shows ``tracking_uri``
    (when given); else None. Asks its health URL (1 s timeout); imports no MLflow."""
    from sweepflow.services.database import masked_url
    from sweepflow.services.servers import status

    entry = status(project)["mlflow"]
    if entry["state"] != "running" or not entry["url"]:
        return None
    if tracking_uri and entry["database"] and entry["database"] != masked_url(tracking_uri):
        return None  # another store (e.g. MLFLOW_TRACKING_URI): its pages would not be ours
    return str(entry["url"])


def runs_view(ui: str, experiment_id: str) -> str:
    """The runs view of an experiment in MLflow 3's UI (model-training mode).

    >>> runs_view("http://127.0.0.1:5000/", "3")
    'http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning'
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{MODEL_TRAINING}"


def run_page(ui: str, experiment_id: str, run_id: str) -> str:
    """The page of one run (e.g. a sweep's parent run) in MLflow 3's UI.

    >>> run_page("http://127.0.0.1:5000", "3", "ab12")
    'http://127.0.0.1:5000/#/experiments/3/runs/ab12?workflowType=machine_learning'
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING}"


def start_command(tracking_uri: str) -> str:
    """The command that shows ``tracking_uri`` in MLflow's UI (a password masked).

    >>> start_command("sqlite:////tmp/my project/mlflow.db")
    "mlflow ui --backend-store-uri 'sqlite:////tmp/my project/mlflow.db'"
    """
    from sweepflow.services.database import masked_url

    return f"mlflow ui --backend-store-uri {shlex.quote(masked_url(tracking_uri))}"


def mlflow_lines(
    project: Path | None,
    tracking_uri: str,
    experiment_id: str | None = None,
    run_id: str | None = None,
) -> list[str]:
    """What to print about MLflow: the experiment's runs view (and the page of
    ``run_id``) when the project's UI answers; else the command that starts a UI.

    The lines read ``MLflow: <runs view>`` and ``MLflow run: <run page>``, or
    ``MLflow: mlflow ui --backend-store-uri '<uri>' (or: sweepflow up)``.
    """
    ui = mlflow_ui(project, tracking_uri)
    if ui is None:
        return [f"MLflow: {start_command(tracking_uri)} (or: sweepflow up)"]
    if not experiment_id:
        return [f"MLflow: {ui}"]
    lines = [f"MLflow: {runs_view(ui, experiment_id)}"]
    if run_id:
        lines.append(f"MLflow run: {run_page(ui, experiment_id, run_id)}")
    return lines
