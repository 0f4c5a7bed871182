"""The ``sweepflow`` command line: run, jobs, show (typer + rich).

Bad input gets one clear line on stderr and exit code 2; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import JobFileError, SweepflowError, SweepSyntaxError

__all__ = ["app", "main"]

app = typer.Typer(
    name="sweepflow",
    help="Run ML experiment campaigns (sweeps, pipelines, searches) as Prefect flows.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="Job file (default: ./sweepflow.yaml, else ./hydraflow.yaml)."
    ),
]


def _version(value: bool) -> None:
    if value:
        from . import __version__

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


def _load(file: Path | None):
    from .jobs import load_jobs

    return load_jobs(file)


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
    file: FileOption = None,
) -> int:
    """Run JOB: every trial of its sweep as a cached Prefect task, tracked in MLflow."""
    jobfile = _load(file)
    plan = jobfile.job(job).plan(overrides or [])  # bad input fails here, before anything starts
    project = jobfile.path.parent if jobfile.path else None
    extra = (ctx.obj or {}).get("extra", [])
    if dry_run:
        from .dryrun import print_dry_run

        print_dry_run(plan, extra, project, as_json=json)
        return 0
    from .commands import check_extra

    check_extra(plan.job, extra)
    from .console import run_in_terminal

    return run_in_terminal(
        debug=bool((ctx.obj or {}).get("debug")),
        job=job,
        overrides=list(overrides or []),
        job_file=str(jobfile.path.resolve()) if jobfile.path else None,
        refresh=refresh,
        extra=list(extra),
        max_parallel=max_parallel,
        fail_fast=fail_fast,
    )


@app.command()
def jobs(file: FileOption = None) -> None:
    """List the jobs of the job file with their trial counts."""
    from .dryrun import print_jobs

    print_jobs(_load(file))


@app.command()
def show(
    job: Annotated[str | None, typer.Argument(help="Job to show (default: all).")] = None,
    file: FileOption = None,
) -> None:
    """Print the resolved job (defaults filled in, sets parsed and merged) as YAML."""
    from .dryrun import print_show

    jobfile = _load(file)
    names = [jobfile.job(job).key] if job else list(jobfile.jobs)
    print_show(jobfile, names)


def _message(exc: BaseException) -> str:
    if isinstance(exc, SweepSyntaxError):
        return exc.one_line()
    if isinstance(exc, JobFileError) and len(exc.problems) > 1:
        return str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


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
        typer.echo(f"error: {_message(exc)}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click errors
            if type(exc).__name__ == "Abort":
                return 130
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.ctx.get_help())
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
