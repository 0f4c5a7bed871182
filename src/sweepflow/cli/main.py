"""The ``sweepflow`` command line (typer + rich): the app, run, study, jobs and show; the
server, deployment and profile commands come from ``servers`` and ``profiles``.

Bad input gets one clear line on stderr and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from sweepflow.cli.artifacts import artifacts_app
from sweepflow.cli.llc import run_experiment
from sweepflow.cli.options import FileOption, RootGroup, WholeHelpGroup, error_line, load_jobfile
from sweepflow.cli.plot import plot
from sweepflow.cli.profiles import profile_app
from sweepflow.cli.results import ls, results
from sweepflow.cli.servers import deploy, down, status, up
from sweepflow.cli.workflows import workflow_app
from sweepflow.errors import SweepflowError
from sweepflow.plan.expansion import MAX_TRIALS, check_size, compile_job
from sweepflow.workloads.llc.cli import llc_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="sweepflow",
    help="Run ML experiment campaigns (sweeps, pipelines, searches) as Prefect flows.",
    cls=RootGroup,  # whole command descriptions; --show-completion [SHELL]
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from sweepflow import __version__

        typer.echo(f"sweepflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """Run ML experiment campaigns (sweeps, pipelines, searches) as Prefect flows."""


@app.command()
def run(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="Name of the job in the job file.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value overrides in sweep syntax; '-- ARGS' go to the program."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print what would run; run nothing.")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="With --dry-run: JSON lines.")] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Ignore cached results; run every trial.")
    ] = False,
    max_parallel: Annotated[
        int | None,
        typer.Option(
            "--max-parallel", "-j", min=1, help="Trials in flight at once (default: cores)."
        ),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Start no new trial after one fails.")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile", "-p", help="Execution profile: name or path (default: job's, else local)."
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a profile field: key=value (dotted keys; repeat)."),
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option("--n-trials", min=1, help="Search: trials in the study (job's n_trials)."),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option("--storage", help="Search: Optuna storage URL or journal file."),
    ] = None,
    max_trials: Annotated[
        int,
        typer.Option("--max-trials", min=1, help="Refuse a sweep of more trials than this."),
    ] = MAX_TRIALS,
    no_outputs_check: Annotated[
        bool,
        typer.Option(
            "--no-outputs-check",
            help="Take a cached result even when its trial folder (outputs, logs) is gone.",
        ),
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Metrics in the summary table, comma-separated (default: all reported).",
        ),
    ] = None,
    file: FileOption = None,
) -> int:
    """Run JOB: every trial of its sweep (or its Optuna search) as a cached Prefect task,
    tracked in MLflow."""
    from sweepflow.cli.summary import view_of

    jobfile = load_jobfile(file)
    if jobfile.job(job).kind == "llc":  # its trials come from its experiments file
        from sweepflow.cli.llc import launch

        return launch(
            ctx, jobfile, job, list(overrides or []), profile=profile, profile_set=sets,
            dry_run=dry_run, refresh=refresh, max_parallel=max_parallel, fail_fast=fail_fast,
            columns=columns,
        )  # fmt: skip
    # Bad input fails here, before anything starts.
    plan = compile_job(jobfile.job(job), overrides or [])
    view = view_of(job, plan.job, columns, file)
    project = jobfile.path.parent if jobfile.path else None
    from sweepflow.spec.profiles import load_profile

    chosen = load_profile(profile or plan.job.profile, list(sets or []), project)
    extra = (ctx.obj or {}).get("extra", [])
    if plan.space is not None:
        from sweepflow.plan.space import search_space
        from sweepflow.search.preflight import check_search
        from sweepflow.settings import state_dir

        space = search_space(plan)  # a bad space fails here too, and a bad --storage
        full = check_search(plan.job, space, state_dir(project), storage, n_trials, not dry_run)
        if full:  # the study already holds its trials: nothing to start
            typer.echo(full, err=True)
            return 0
    elif n_trials or storage:
        raise plan.job.error("is a sweep: --n-trials and --storage apply to optimize: jobs")
    if dry_run:
        from sweepflow.cli.dryrun import print_dry_run

        print_dry_run(plan, extra, project, as_json=json, n_trials=n_trials)
        return 0
    from sweepflow.plan.commands import check_extra

    check_extra(plan.job, extra)
    if plan.space is None:
        check_size(plan, max_trials)
    if plan.job.kind == "call" and project is not None:
        _check_call_module(plan.job, project)
    checked = None  # a workflow job's workflow and trial configs
    if plan.job.kind == "workflow":
        from sweepflow.workflow.jobs import check_job

        here = project or Path.cwd()
        if plan.space is None:
            from sweepflow.plan.commands import invocations

            trials = (unit.items for unit in invocations(plan, extra, here))
            checked = check_job(plan.job, here, trials)
        else:  # a search: its keys, with the first trial's values
            from sweepflow.cli.dryrun import example_trial

            check_job(plan.job, here, [example_trial(plan, here, list(extra)).items])
    if not refresh and plan.space is None and plan.job.cache and project is not None:
        from sweepflow.cli.console import print_cached

        if print_cached(plan, list(extra), project, not no_outputs_check, view, checked):
            return 0  # every trial cached: nothing to start
    from sweepflow.cli.console import start_run

    return start_run(
        bool((ctx.obj or {}).get("debug")),
        project,
        chosen,
        job=job,
        overrides=list(overrides or []),
        job_file=str(jobfile.path.resolve()) if jobfile.path else None,
        refresh=refresh,
        extra=list(extra),
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        profile=str(profile) if profile else None,
        profile_set=list(sets or []),
        n_trials=n_trials,
        storage=storage,
        max_trials=max_trials,
        outputs_check=not no_outputs_check,
        view=view,
    )


def _check_call_module(job: Any, project: Path) -> None:
    """A ``call:`` whose module cannot be found fails now, not in every trial (the
    module is looked up on the trial's path, the project first, not imported)."""
    from importlib.machinery import PathFinder

    from sweepflow.spec.interpreter import call_target

    top = call_target(job.call)[0].partition(".")[0]
    if top in sys.builtin_module_names:
        return
    if PathFinder.find_spec(top, [str(project.resolve()), *sys.path]) is None:
        raise job.error(
            f"has call: {job.call!r}, but no module '{top}' is found in {project} or the "
            "installed packages: check the name, or run from the project folder",
            "call",
        )


@app.command()
def study(
    job: Annotated[str, typer.Argument(help="Name of a job with optimize: in the job file.")],
    export: Annotated[
        Path | None,
        typer.Option("--export", help="Write one row per trial to FILE.parquet or FILE.csv."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Write history, importance and slice plots (PNG) to DIR."),
    ] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="Optuna storage URL or journal file.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows in the table (best first).")] = 20,
    file: FileOption = None,
) -> None:
    """Show JOB's Optuna study: the best trial and a table of trials."""
    from sweepflow.cli.study import show_study

    jobfile = load_jobfile(file)
    show_study(jobfile, job, storage=storage, export=export, plot=plot, limit=limit)


@app.command()
def verify(
    job: Annotated[str | None, typer.Argument(help="Job to check (default: all).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Apply the repairs it prints.")] = False,
    file: FileOption = None,
) -> int:
    """Check stored results, trial folders and MLflow runs; print what needs repair."""
    from sweepflow.cli.verify import verify as check

    return check(load_jobfile(file), job, repair)


@app.command()
def jobs(file: FileOption = None) -> None:
    """List the jobs of the job file with their trial counts."""
    from sweepflow.cli.dryrun import print_jobs

    print_jobs(load_jobfile(file))


@app.command()
def show(
    job: Annotated[str | None, typer.Argument(help="Job to show (default: all).")] = None,
    file: FileOption = None,
) -> None:
    """Print the resolved job (defaults filled in, sets parsed and merged) as YAML."""
    from sweepflow.cli.dryrun import print_show

    jobfile = load_jobfile(file)
    names = [jobfile.job(job).key] if job else list(jobfile.jobs)
    print_show(jobfile, names)


for command in (up, down, status, deploy):
    app.command()(command)
app.command()(results)
app.command(name="ls")(ls)
app.command()(plot)
app.add_typer(profile_app, name="profile")
llc_app.command("run")(run_experiment)  # a run of the flow: the CLI layer's
app.add_typer(llc_app, name="llc", cls=WholeHelpGroup)  # whole descriptions in --help
app.add_typer(workflow_app, name="workflow", cls=WholeHelpGroup)
app.add_typer(artifacts_app, name="artifacts", cls=WholeHelpGroup)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sweepflow`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, extra = args[:cut], args[cut + 1 :]
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]  # accepted anywhere before --
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args, prog_name="sweepflow", standalone_mode=False, obj={"extra": extra, "debug": debug}
        )
        return result if isinstance(result, int) else 0
    except SweepflowError as exc:
        if debug:
            raise
        typer.echo(f"error: {error_line(exc)}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click errors
            if type(exc).__name__ == "Abort":
                return 130
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.ctx.get_help())  # type: ignore[attr-defined]
                return 0
            hint = ""
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                hint = f" (see '{ctx.command_path} --help')"
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            return int(exc.exit_code) or 2
        if debug:
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            err=True,
        )
        return 1


def entry() -> None:
    """The ``sweepflow`` console script: :func:`main`, then a quick exit.

    After a sweep, tearing the interpreter down (freeing the modules of Prefect, MLflow
    and pandas object by object) takes 2-3 s here. Once the command is done and no
    foreground thread is left, the exit handlers run (Prefect sends its last logs and
    events, MLflow's store is closed) and the process ends without that teardown.
    """
    code = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if any(t.is_alive() and not t.daemon for t in others):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
