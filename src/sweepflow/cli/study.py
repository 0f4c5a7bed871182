"""``sweepflow study JOB``: a search's study in the terminal, exported, or plotted."""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sweepflow.errors import JobError
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import JobFile

__all__ = ["export_path", "show_study"]

_FORMATS = (".csv", ".parquet")


def _location(jobfile: JobFile, job: str, storage: str | None) -> tuple[str, str]:
    """(study name, storage location) of ``job``'s search."""
    the_job = jobfile.job(job)
    if the_job.optimize is None:
        raise the_job.error("has no optimize: section, so no study: it is a sweep", "optimize")
    project = jobfile.path.parent.resolve() if jobfile.path else Path.cwd()
    from sweepflow.search.study import study_location

    name, location = study_location(the_job.optimize, the_job.key, state_dir(project), storage)
    if "://" not in location and not Path(location).is_file():
        raise JobError(
            f"No study '{name}' yet: {location} does not exist; run `sweepflow run {job}` "
            "first (or pass --storage)"
        )
    return name, location


def export_path(export: Path, study: str) -> Path:
    """The file ``--export`` writes: ``FILE.csv`` or ``FILE.parquet`` as given, or for a
    bare format (``--export csv``) ``<study>-trials.csv`` in the working directory.

    >>> export_path(Path("out/t.parquet"), "tune").as_posix()
    'out/t.parquet'
    >>> export_path(Path("CSV"), "tune").as_posix()
    'tune-trials.csv'

    Raises:
        JobError: Neither a ``.csv`` or ``.parquet`` file nor one of those formats.
    """
    if export.suffix in _FORMATS:
        return export
    if not export.suffix and export.name.lower() in {f[1:] for f in _FORMATS}:
        return Path(f"{study}-trials.{export.name.lower()}")
    raise JobError(
        f"--export {export}: give a file ending in .csv or .parquet (--export trials.csv), "
        "or just the format (--export csv writes <study>-trials.csv)"
    )


def show_study(
    jobfile: JobFile,
    job: str,
    *,
    storage: str | None = None,
    export: Path | None = None,
    plot: Path | None = None,
    limit: int = 20,
) -> None:
    """Print the best trial and the trials table; export and plot when asked."""
    import optuna

    from sweepflow.plan.space import format_value
    from sweepflow.search.report import best_summary, export_trials, plot_study
    from sweepflow.search.study import open_storage

    name, location = _location(jobfile, job, storage)
    if export is not None:  # a bad --export fails now, not after the table
        export = export_path(export, name)
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(location))
    except KeyError:
        raise JobError(
            f"No study '{name}' in {location}: run `sweepflow run {job}` first"
        ) from None
    the_job = jobfile.job(job)
    names = the_job.optimize.metrics if the_job.optimize else ("value",)
    if len(names) != len(study.directions):
        names = tuple(f"value_{i}" for i in range(len(study.directions)))
    console = Console(soft_wrap=False)
    trials = study.get_trials(deepcopy=False)
    by_state: dict[str, int] = {}
    for trial in trials:
        by_state[trial.state.name.lower()] = by_state.get(trial.state.name.lower(), 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "no trials"
    console.print(f"study '{name}' in {location}: {states}", markup=False, soft_wrap=True)
    best = best_summary(study, names)
    if best:
        values = ", ".join(f"{k} = {v:.6g}" for k, v in best["values"].items())
        params = " ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
        console.print(
            f"best trial #{best['number']}: {values}  ({params})",
            style="bold",
            markup=False,
            soft_wrap=True,
        )
    console.print(_table(study, names, limit))
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        rows = export_trials(study, export)
        console.print(f"wrote {rows} trials to {export.resolve()}", markup=False, soft_wrap=True)
    if plot is not None:
        written = plot_study(study, plot, names)
        console.print(
            f"wrote {len(written)} plots to {plot}: " + ", ".join(p.name for p in written),
            markup=False,
            soft_wrap=True,
        )
    console.print(f"dashboard: optuna-dashboard {location}", markup=False, soft_wrap=True)


def _table(study, names: tuple[str, ...], limit: int) -> Table:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    sign = [1 if d.name == "MINIMIZE" else -1 for d in study.directions]

    def order(trial) -> tuple:
        if trial.state != TrialState.COMPLETE or trial.values is None:
            return (1, trial.number)
        return (0, sign[0] * trial.values[0], trial.number)

    shown = sorted(trials, key=order)[:limit]
    keys = sorted({k for t in trials for k in t.params})
    table = Table(title=f"trials (best first; {len(shown)} of {len(trials)})", title_justify="left")
    for column in ("#", "state", *names, *keys, "seconds"):
        table.add_column(column, justify="left" if column in ("state", *keys) else "right")
    for trial in shown:
        values = list(trial.values or [])
        cells = [f"{v:.6g}" if v is not None and not math.isnan(v) else "" for v in values]
        cells += [""] * (len(names) - len(cells))
        duration = trial.duration.total_seconds() if trial.duration else None
        table.add_row(
            str(trial.number),
            trial.state.name.lower(),
            *cells,
            *(_text(trial.params.get(k)) for k in keys),
            f"{duration:.2f}" if duration is not None else "",
        )
    return table


def _text(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
