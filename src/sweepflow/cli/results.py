"""``sweepflow results JOB`` (a sweep's trials as a table, CSV or JSON) and ``sweepflow
ls [JOB]`` (past sweeps and searches), read back from MLflow by :mod:`sweepflow.analysis`.

Tables go to stdout through rich; CSV and JSON go to stdout as they are, for scripts.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from sweepflow.cli.options import FileOption, load_jobfile, print_table, project_dir
from sweepflow.errors import SweepflowError

__all__ = ["ls", "results"]


class Format(StrEnum):
    """How ``results`` and ``ls`` print their rows."""

    table = "table"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", help="table (rich), or csv / json to stdout for scripts.")
]


class ResultsError(SweepflowError, ValueError):
    """A bad ``--sort`` or ``--filter`` of ``sweepflow results``."""


def _store(file: Path | None) -> str:
    from sweepflow.tracking.uri import default_tracking_uri

    return default_tracking_uri(project_dir(file))


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _print(rows: list[dict[str, Any]], columns: list[str], form: Format, title: str) -> None:
    if form is Format.json:
        json.dump([{c: row.get(c) for c in columns} for row in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif form is Format.csv:
        writer = csv.DictWriter(sys.stdout, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        cells = [[_cell(row.get(column)) for column in columns] for row in rows]
        numeric = [all(isinstance(row.get(c), (int, float)) for row in rows) for c in columns]
        for place, column in enumerate(columns):
            widest = max((len(row[place]) for row in cells), default=1)
            # A number is never split over two lines; other cells wrap, never cut.
            table.add_column(column, overflow="fold", min_width=widest if numeric[place] else None)
        from rich.text import Text

        for row in cells:
            table.add_row(*(Text(cell) for cell in row))  # a value like "sgld[x=1]" is no markup
        print_table(table)


# -- results -------------------------------------------------------------------------
def _filtered(collection: Any, filters: list[str]) -> Any:
    conditions: dict[str, Any] = {}
    for item in filters:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ResultsError(f"--filter {item!r}: expected key=value, e.g. --filter lr=0.1")
        try:  # 0.001 also matches a stored "1e-3"
            conditions[key.strip()] = [value, float(value)]
        except ValueError:
            conditions[key.strip()] = value
    return collection.filter(**conditions) if conditions else collection


def _sorted(collection: Any, sort: str | None) -> Any:
    if not sort:
        return collection
    metric = sort.removeprefix("-")
    known = sorted({name for run in collection for name in run.metrics})
    if metric not in known:
        import difflib

        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ResultsError(
            f"--sort {sort!r}: no trial has the metric {metric!r}; {hint}metrics: "
            f"{', '.join(known) or '(none)'}"
        )
    return collection.sort(metric, reverse=sort.startswith("-"))


def trial_rows(collection: Any) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """One row per run (ids, status, start time, params, metrics), and the names of the
    param and metric columns: a param as named (``params.<name>`` if that name is one of
    the fixed columns), a metric too (``metrics.<name>`` if a param or fixed column has
    that name)."""
    fixed = ("#", "run", "run_id", "parent_run_id", "status", "start_time")
    params = list(dict.fromkeys(k for run in collection for k in run.params))
    metrics = sorted({m for run in collection for m in run.metrics})
    param_names = {k: f"params.{k}" if k in fixed else k for k in params}
    taken = set(fixed) | set(param_names.values())
    metric_names = {m: f"metrics.{m}" if m in taken else m for m in metrics}
    rows = []
    for run in collection:
        row: dict[str, Any] = {"run_id": run.id, "parent_run_id": run.parent_id}
        row["status"] = run.status
        row["start_time"] = run.start_time.isoformat() if run.start_time else None
        row.update({param_names[k]: run.params.get(k) for k in params})
        row.update({metric_names[m]: _number(run.metrics.get(m)) for m in metrics})
        rows.append(row)
    return rows, list(param_names.values()), list(metric_names.values())


def results(
    job: Annotated[str, typer.Argument(help="Name of the job in the job file.")],
    run: Annotated[
        str | None, typer.Option("--run", help="A given sweep: its parent run id (see ls).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every trial run of the job, of every sweep.")
    ] = False,
    sort: Annotated[
        str | None,
        typer.Option("--sort", help="Sort by a metric, ascending; -METRIC for descending."),
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Keep trials whose param KEY equals VALUE (repeatable)."),
    ] = None,
    form: FormatOption = Format.table,
    file: FileOption = None,
) -> None:
    """Show the trials of JOB's latest sweep: params and metrics, one row per trial."""
    from sweepflow.analysis import runs

    name = load_jobfile(file).job(job).key  # an unknown job: the job file's error
    if every and run:
        raise ResultsError("--all and --run choose different sweeps: give one of them")
    store = _store(file)
    collection = runs(name, all_runs=every, sweep=run, status=None, tracking_uri=store)
    collection = _sorted(_filtered(collection, filters or []), sort)
    if not len(collection):
        what = "no trial matches the filters" if filters else "the sweep has no trial runs"
        typer.echo(f"{what} ({name})", err=True)
    rows, params, metrics = trial_rows(collection)
    if form is Format.table:
        columns = ["#", "run", *params, *metrics, "status"]
        for number, row in enumerate(rows, 1):
            row["#"], row["run"] = number, row["run_id"][:8]
    else:
        columns = ["run_id", "parent_run_id", "status", "start_time", *params, *metrics]
    which = "every sweep" if every else f"sweep {run}" if run else "latest sweep"
    _print(rows, columns, form, f"{name}: {len(rows)} trials ({which})")
    if rows and form is Format.table:
        _mlflow_line(file, store, {one.experiment_id for one in collection})


# -- ls ------------------------------------------------------------------------------
def _best(sweep: Any, job: Any) -> str:
    """The best value the sweep's parent run records (its target metric: a search's
    objective, else the first metric its trials reported); for a parent without it
    (older sweeps, a run still going) the job's optimize metric in its direction, else
    the first metric by name of its finished trials, lowest value."""
    tags = sweep.parent.tags
    metric = tags.get("sweepflow.best_metric")
    if metric and (value := _number(sweep.parent.metrics.get(f"best_{metric}"))) is not None:
        high = tags.get("sweepflow.best_direction") == "maximize"
        return f"{metric}={value:.6g} ({'max' if high else 'min'})"
    finished = [run for run in sweep.runs if run.status == "FINISHED"]
    optimize = getattr(job, "optimize", None) if job is not None else None
    if optimize is not None:
        metric, high = optimize.metrics[0], optimize.directions[0] == "maximize"
    else:
        names = sorted({m for run in finished for m in run.metrics})
        if not names:
            return ""
        metric, high = names[0], False
    values = [v for run in finished if (v := _number(run.metrics.get(metric))) is not None]
    if not values:
        return ""
    return f"{metric}={(max if high else min)(values):.6g} ({'max' if high else 'min'})"


def _links(file: Path | None, store: str) -> tuple[str | None, str | None]:
    """The MLflow UI (of ``store``) and Prefect UI of the project's servers, when they
    answer."""
    from sweepflow.cli.links import mlflow_ui
    from sweepflow.services.servers import status

    rows = status(project_dir(file))
    running = [rows[n] for n in ("prefect", "warm") if n in rows and rows[n]["state"] == "running"]
    prefect = running[0]["url"] if running else None  # `sweepflow up`'s, else the warm one
    return mlflow_ui(project_dir(file), store), prefect


def _mlflow_line(file: Path | None, store: str, experiments: set[str]) -> None:
    """After a table: the runs view of its one experiment, or how to start the UI."""
    from sweepflow.cli.links import mlflow_lines

    experiment = next(iter(experiments)) if len(experiments) == 1 else None
    for line in mlflow_lines(project_dir(file), store, experiment):
        typer.echo(line, err=True)


def ls(
    job: Annotated[str | None, typer.Argument(help="Job to list (default: all).")] = None,
    form: FormatOption = Format.table,
    file: FileOption = None,
) -> None:
    """List past sweeps and searches, oldest first: counts, status, best metric, links."""
    from sweepflow.analysis import sweeps
    from sweepflow.cli.links import run_page

    jobfile = load_jobfile(file)
    names = [jobfile.job(job).key] if job else list(jobfile.jobs)
    store = _store(file)
    every = sweeps(job and names[0], tracking_uri=store)
    every = [one for one in every if one.parent.job in names]
    mlflow_url, prefect_url = _links(file, store)
    rows = []
    for one in every:
        parent, counts = one.parent, one.counts
        flow_run = parent.tags.get("prefect.flow_run_id") or None
        rows.append(
            {
                "when": parent.start_time.strftime("%Y-%m-%d %H:%M:%S")
                if parent.start_time
                else "",
                "job": parent.job,
                "done": counts.get("done"),
                "cached": counts.get("cached"),
                "failed": counts.get("failed"),
                "status": parent.status,
                "best": _best(one, jobfile.jobs.get(parent.job)),
                "run": run_page(mlflow_url, parent.experiment_id, parent.id)
                if mlflow_url
                else parent.id,
                "flow_run": f"{prefect_url}/runs/flow-run/{flow_run}"
                if prefect_url and flow_run
                else flow_run,
            }
        )
    if not rows:
        typer.echo(f"no sweeps yet in {store}: run `sweepflow run JOB` first", err=True)
    columns = ["when", "job", "done", "cached", "failed", "status", "best", "run", "flow_run"]
    _print(rows, columns, form, f"{len(rows)} sweeps")
    if rows and form is Format.table:
        _mlflow_line(file, store, {one.parent.experiment_id for one in every})
