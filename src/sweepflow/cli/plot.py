"""``sweepflow plot JOB --x PARAM --y METRIC``: a metric of a sweep's finished trials
against a parameter, as a PNG (:mod:`sweepflow.reporting.plots` draws it).

The trials are read back as ``sweepflow results`` reads them (:func:`sweepflow.analysis.runs`,
with the same ``--run``, ``--all`` and ``--filter``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sweepflow.cli.options import FileOption, load_jobfile, project_dir
from sweepflow.cli.results import _filtered, _store
from sweepflow.reporting.plots import PlotError, chart, file_name, render

__all__ = ["plot"]


def plot(
    job: Annotated[str, typer.Argument(help="Name of the job in the job file.")],
    x: Annotated[str, typer.Option("--x", help="The parameter on the x axis, e.g. lr.")],
    y: Annotated[str, typer.Option("--y", help="The metric on the y axis, e.g. loss.")],
    by: Annotated[
        str | None,
        typer.Option("--by", help="One line (and band) per value of this parameter."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The PNG to write (default: <state>/plots/JOB-Y-vs-X.png)."),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="A given sweep: its parent run id (see ls).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every finished trial of the job, of every sweep.")
    ] = False,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Keep trials whose param KEY equals VALUE (repeatable)."),
    ] = None,
    file: FileOption = None,
) -> None:
    """Plot a metric of JOB's latest sweep against a parameter (PNG; prints its path).

    At each x the trials (e.g. seeds) are averaged: a line through the means and a
    band from their minimum to maximum; --by draws one line per value. An axis whose
    positive values span two decades or more is log-scaled; a non-numeric x is
    categorical.
    """
    from sweepflow.analysis import runs, sweeps
    from sweepflow.settings import state_dir

    name = load_jobfile(file).job(job).key  # an unknown job: the job file's error
    if every and run:
        raise PlotError("--all and --run choose different sweeps: give one of them")
    if out is not None and out.suffix.lower() != ".png":
        raise PlotError(f"--out {str(out)!r}: plots are PNG files; give a name ending in .png")
    store = _store(file)
    collection = runs(name, all_runs=every, sweep=run, tracking_uri=store)
    collection = _filtered(collection, filters or [])
    if every:
        which = "every sweep"
    else:
        which = f"sweep {(run or sweeps(name, tracking_uri=store)[-1].id)[:8]}"
    if not len(collection):
        what = "no finished trial matches the filters" if filters else "no finished trials"
        raise PlotError(
            f"{what} in {which} of job {name!r}: nothing to plot "
            f"(see `sweepflow results {name}` and `sweepflow ls {name}`)"
        )
    points = [(r.params, r.metrics) for r in collection]
    data = chart(points, x, y, by, flags=("--x", "--y", "--by"))
    path = out or state_dir(project_dir(file)) / "plots" / file_name(name, y, x)
    typer.echo(str(render(data, path, f"{name}: {which}")))
