"""``sweepflow up``, ``down``, ``status`` and ``deploy``: this project's local servers
and its Prefect deployments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sweepflow.cli.api_check import check_api
from sweepflow.cli.options import FileOption, load_jobfile, project_dir

__all__ = ["deploy", "down", "status", "up"]


def up(
    prefect_port: Annotated[
        int | None,
        typer.Option(
            "--prefect-port",
            min=1,
            max=65535,
            help="Port of the Prefect server (default: $SWEEPFLOW_PREFECT_PORT, else 4200).",
        ),
    ] = None,
    mlflow_port: Annotated[
        int | None,
        typer.Option(
            "--mlflow-port",
            min=1,
            max=65535,
            help="Port of the MLflow UI (default: $SWEEPFLOW_MLFLOW_PORT, else 5000).",
        ),
    ] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Start a worker on the 'sweepflow' pool.")
    ] = True,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="Start the MLflow UI.")
    ] = True,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds each server may take to answer.")
    ] = 120.0,
    database: Annotated[
        str | None,
        typer.Option(
            "--database",
            metavar="URL",
            help="PostgreSQL server for Prefect and MLflow: postgresql://USER:PASSWORD@HOST:"
            "PORT/NAME (databases NAME_prefect and NAME_mlflow, created if missing), or "
            "'sqlite' (default: $SWEEPFLOW_DATABASE, else SQLite files in the state folder).",
        ),
    ] = None,
    file: FileOption = None,
) -> None:
    """Start this project's Prefect server, worker and MLflow UI on 127.0.0.1 (background)."""
    import shlex

    from sweepflow.services.database import masked_url
    from sweepflow.services.servers import LABELS
    from sweepflow.services.servers import up as start

    result = start(
        project_dir(file),
        prefect_port=prefect_port,
        mlflow_port=mlflow_port,
        worker=worker,
        mlflow=mlflow,
        timeout=timeout,
        database=database,
    )
    for name, label in LABELS.items():
        if name not in result:
            continue
        entry = result[name]
        where = f"on pool {entry['pool']}" if name == "worker" else f"at {entry['url']}"
        typer.echo(f"{label}: {entry['state']} (pid {entry['pid']}) {where}")
        if name == "prefect":
            typer.echo(f"PREFECT_API_URL={entry['api_url']}")
    if result.get("database"):
        typer.echo(f"Database: {masked_url(result['database'])} (Prefect and MLflow)")
    typer.echo(f"MLflow store: {masked_url(result['tracking_uri'])}")
    typer.echo(f"For your shell: source {shlex.quote(result['env_file'])}")


def down(file: FileOption = None) -> None:
    """Stop the servers that `sweepflow up` started for this project."""
    from sweepflow.services.servers import LABELS
    from sweepflow.services.servers import down as stop

    outcome = stop(project_dir(file))
    if not any(state == "stopped" for state in outcome.values()):
        typer.echo("No server of this project was running.")
        return
    for name, state in outcome.items():
        typer.echo(f"{LABELS[name]}: {state}")


def status(file: FileOption = None) -> None:
    """Show which of this project's servers run and answer."""
    from rich.console import Console
    from rich.table import Table

    from sweepflow.services.servers import LABELS
    from sweepflow.services.servers import status as read_status

    table = Table()
    for column in ("service", "state", "pid", "URL", "database"):
        table.add_column(column, overflow="fold")  # a URL or path whole, never cut
    styles = {"running": "green", "stopped": "dim", "not answering": "red"}
    rows = read_status(project_dir(file))
    for name, row in rows.items():
        pid = str(row["pid"]) if row["pid"] else "-"
        cells = (row["state"], pid, row["url"] or "", row["database"] or "")
        table.add_row(LABELS[name], *cells, style=styles[row["state"]])
    Console(soft_wrap=False).print(table)
    if warm := rows.get("warm"):
        _warm_note(warm)
    from sweepflow.cli.flowruns import failure_lines

    for line in failure_lines(project_dir(file)):  # why deployment runs failed
        typer.echo(line)


def _warm_note(row: dict[str, Any]) -> None:
    """When the warm Prefect server stops: its idle time, counted from the last run."""
    import time

    from sweepflow.cli.summary import duration

    if row["state"] == "stopped":
        return
    if row["in_use"]:
        typer.echo("The warm Prefect server is in use by a run.")
        return
    idle = float(row["idle"] or 0)
    since = time.time() - (row["last_used"] or time.time())
    typer.echo(
        f"The warm Prefect server stops after {duration(idle)} without a run (last run ended "
        f"{duration(since)} ago; SWEEPFLOW_SERVER_IDLE sets the time, `sweepflow down` stops it)."
    )


def deploy(
    names: Annotated[
        list[str] | None, typer.Argument(help="Jobs to deploy (default: every job).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print what would be registered.")
    ] = False,
    pool: Annotated[
        str, typer.Option("--pool", help="Work pool of the deployments.")
    ] = "sweepflow",
    file: FileOption = None,
) -> None:
    """Register one deployment 'run-job/<job>' per job (updates existing ones)."""
    from deployments import deploy as deployments

    jobfile = load_jobfile(file)
    planned = deployments.plan(jobfile, names or None, pool)
    if dry_run:
        for item in planned:
            typer.echo("\n".join(item.describe()))
        return
    url = deployments.api_url(jobfile.path.resolve().parent)
    check_api(url)  # nobody at the URL: one line naming it, not a ConnectError
    for item in deployments.apply(planned, url):
        typer.echo("\n".join(item.describe()))
    typer.echo(f"Deployed {len(planned)} to {url}; start one with:")
    typer.echo(f"  prefect deployment run '{planned[0].name}'")
