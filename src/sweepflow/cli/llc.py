"""``sweepflow llc run experiments.yaml``: an LLC experiment through the run-job flow.

The command lives in the CLI layer (it starts the run as ``sweepflow run`` does) and is
added to ``sweepflow llc`` by :mod:`sweepflow.cli.main`; ``sweepflow run`` of an
``llc:`` job comes here too (:func:`launch`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["launch", "run_experiment"]


def run_experiment(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Experiments file: targets and samplers.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Change the matrix: samplers.draws=200, targets.1.data.n=500 (repeat)."
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Execution profile: name or path (default: local)."),
    ] = None,
    profile_set: Annotated[
        list[str] | None,
        typer.Option(
            "--profile-set", help="Override a profile field: key=value, e.g. workers=2 (repeat)."
        ),
    ] = None,
    promote: Annotated[
        Path | None,
        typer.Option("--promote", help="Write the gallery (gallery.md, gallery.html) here."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="Print the matrix and what is cached; run nothing."),
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Run every step again, even when it is stored.")
    ] = False,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", "-j", min=1, help="Pairs in flight at once."),
    ] = None,
) -> int:
    """Run every (target, sampler) pair of FILE as a Prefect flow: targets built once,
    each pair sampled on a worker, estimates, diagnostics, plots and llc_runs.parquet
    made here; every step cached in the artifact store."""
    from sweepflow.spec.jobs import load_jobs

    jobfile = load_jobs(file)
    if len(jobfile.jobs) != 1 or next(iter(jobfile.jobs.values())).kind != "llc":
        from sweepflow.workloads.llc._errors import LLCError

        raise LLCError(
            f"{file} is not an experiments file (targets: and samplers: at the top level): "
            "see 'sweepflow llc run --help', or run a job file's llc: job with sweepflow run"
        )
    (name,) = jobfile.jobs
    return launch(
        ctx,
        jobfile,
        name,
        list(sets or []),
        profile=profile,
        profile_set=list(profile_set or []),
        promote=promote,
        dry_run=dry_run,
        refresh=refresh,
        max_parallel=max_parallel,
    )


def launch(
    ctx: typer.Context,
    jobfile: Any,
    name: str,
    sets: list[str],
    *,
    profile: str | None = None,
    profile_set: list[str] | None = None,
    promote: Path | None = None,
    dry_run: bool = False,
    refresh: bool = False,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    columns: str | None = None,
) -> int:
    """Run the ``llc:`` job ``name`` (``sweepflow llc run``, or ``sweepflow run`` of an
    llc: job): every check before anything starts, then the run-job flow."""
    from sweepflow.cli.summary import view_of
    from sweepflow.settings import state_dir
    from sweepflow.spec.profiles import load_profile
    from sweepflow.workloads.llc.experiment import describe, load_experiment
    from sweepflow.workloads.llc.pairs import check_pairs, pair_status

    job = jobfile.job(name)
    project = jobfile.path.parent
    matrix = load_experiment(job.llc_path, sets)  # bad input fails here: one line
    check_pairs(matrix)
    state = state_dir(project)
    if dry_run:
        for line in describe(matrix):
            typer.echo(line)
        cached = pair_status(matrix, project.resolve(), state)
        for (target, sampler), hit in zip(matrix.pairs(), cached, strict=True):
            typer.echo(f"  {'cached' if hit else 'to run':7} {target.name} x {sampler.name}")
        typer.echo(f"{sum(cached)} of {len(cached)} pairs cached")
        return 0
    chosen = load_profile(profile or job.profile, list(profile_set or []), project)
    # Every pair stored: no worker will run a step (no server or cluster to start).
    stored = not refresh and job.cache and all(pair_status(matrix, project.resolve(), state))
    from sweepflow.cli.console import start_run
    from sweepflow.plan.expansion import MAX_TRIALS

    return start_run(
        bool((ctx.obj or {}).get("debug")),
        project,
        chosen,
        workers=not stored,
        job=name,
        overrides=sets,
        job_file=str(jobfile.path.resolve()),
        refresh=refresh,
        extra=[],
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        profile=str(profile) if profile else None,
        profile_set=list(profile_set or []),
        n_trials=None,
        storage=None,
        max_trials=MAX_TRIALS,
        outputs_check=True,
        view=view_of(name, job, columns, jobfile.path),
        promote=str(promote.resolve()) if promote else None,
    )
