"""``sweepflow profile show`` and ``profile list``: execution profiles in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sweepflow.cli.options import FileOption, WholeHelpGroup, error_line, project_dir
from sweepflow.errors import SweepflowError

__all__ = ["profile_app"]

profile_app = typer.Typer(
    cls=WholeHelpGroup,  # whole command descriptions in --help
    help="Execution profiles: where tasks run (threads, a local Dask cluster, SLURM).",
    no_args_is_help=True,
)


@profile_app.command("show")
def profile_show(
    profile: Annotated[str, typer.Argument(help="Profile name, or path to a profile YAML file.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            "-s",
            help="Override a key: KEY=VALUE, dotted keys (adapt.maximum=4), YAML values; "
            "repeatable.",
        ),
    ] = None,
    file: FileOption = None,
) -> None:
    """Print the resolved profile as YAML; for SLURM, then the job script of each worker."""
    import yaml

    from sweepflow.spec.profiles import SCHEDULER_PLACEHOLDER, WORKER_NAME_PLACEHOLDER, load_profile

    loaded = load_profile(profile, sets or [], project_dir=project_dir(file))
    typer.echo(yaml.safe_dump(loaded.resolved(), sort_keys=False, allow_unicode=True).rstrip())
    if loaded.type == "slurm":
        typer.echo(
            f"\n# --- SLURM job script of each worker; a job has the scheduler's address for "
            f"{SCHEDULER_PLACEHOLDER} and its worker's name for {WORKER_NAME_PLACEHOLDER} ---"
        )
        typer.echo(loaded.job_script().rstrip())


@profile_app.command("list")
def profile_list(file: FileOption = None) -> None:
    """List the profiles: shipped ones, and those in ./profiles/ next to the job file."""
    from rich.console import Console
    from rich.table import Table

    from sweepflow.spec.profiles import available_profiles, load_profile

    project = project_dir(file)
    table = Table()
    for column in ("name", "type", "description"):
        table.add_column(column)
    table.add_column("file", overflow="fold")
    for name, path in available_profiles(project).items():
        try:
            where = str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            where = str(path)
        try:
            loaded = load_profile(name, project_dir=project)
        except SweepflowError as exc:
            problem = error_line(exc).split("; ")[0]  # the first; `profile show` gives all
            table.add_row(name, "invalid", problem, where, style="red")
            continue
        table.add_row(name, loaded.type, loaded.description, where)
    Console(soft_wrap=False).print(table)
