"""What the ``sweepflow`` commands share: the ``--file`` option, the project it names,
the one-line form of an error, and the root command group (whole command descriptions
in ``--help``, shell completion for a named or detected shell)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sweepflow.errors import JobFileError, SweepSyntaxError

__all__ = [
    "FileOption",
    "RootGroup",
    "WholeHelpGroup",
    "error_line",
    "load_jobfile",
    "print_table",
    "project_dir",
]

FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", help="Job file (default: ./sweepflow.yaml, else ./hydraflow.yaml)."
    ),
]


def load_jobfile(file: Path | None) -> Any:
    """The job file ``--file`` names (default: the one found in the working directory)."""
    from sweepflow.spec.jobs import load_jobs

    return load_jobs(file)


def project_dir(file: Path | None) -> Path:
    """The project folder: that of the job file (``--file``, else the one found in the
    working directory), else the working directory (``up`` needs no job file)."""
    from sweepflow.spec.jobs import find_job_file

    if file is not None:
        if not file.is_file():
            raise JobFileError([f"No job file at {file.resolve()}: check --file PATH"])
        return file.resolve().parent
    try:
        return find_job_file().resolve().parent
    except JobFileError:
        return Path.cwd()


def error_line(exc: BaseException) -> str:
    """The error as the one line the CLI prints after ``error:``."""
    if isinstance(exc, SweepSyntaxError):
        return exc.one_line()
    if isinstance(exc, JobFileError) and len(exc.problems) > 1:
        return str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
_COMPLETION = ("--install-completion", "--show-completion")


class WholeHelpGroup(TyperGroup):
    """A command group whose ``--help`` lists each command's whole first sentence,
    wrapped to the terminal, where click cuts it to the width left with "..." (the
    ``sweepflow`` group and its sub-apps: ``profile``, ``llc``)."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Write the command list with whole descriptions."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=sys.maxsize)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class RootGroup(WholeHelpGroup):
    """The ``sweepflow`` command group: whole descriptions in ``--help``, and
    ``--install-completion`` and ``--show-completion`` that also take a shell name:
    without one the shell is detected (as typer does); with one, nothing is detected,
    so ``--show-completion bash`` works where no login shell runs (CI, containers).
    """

    def get_params(self, ctx: Any) -> list[Any]:
        """The group's parameters; the completion flags' help names the shells."""
        params: list[Any] = super().get_params(ctx)
        for param in params:
            flag = next((o for o in param.opts if o in _COMPLETION), None)
            if flag is not None:
                verb = "Install" if flag == "--install-completion" else "Print"
                param.help = (
                    f"{verb} shell completion for the current shell, or the one named "
                    f"after it ({', '.join(SHELLS)})."
                )
        return params

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse the group's options; a completion flag prints or installs, then exits."""
        try:
            if not ctx.resilient_parsing:
                _complete_named_shell(ctx, args)
            return super().parse_args(ctx, args)
        except SystemExit as exc:  # typer's completion callbacks end with sys.exit(0)
            raise typer.Exit(exc.code if isinstance(exc.code, int) else 1) from None


def _complete_named_shell(ctx: Any, args: list[str]) -> None:
    """Run ``--install-completion SHELL`` or ``--show-completion SHELL`` (when among the
    options before the command) for that shell; typer's flags would detect one."""
    from typer.completion import install_callback, show_callback

    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            return  # the command: what follows is its own
        if arg in _COMPLETION and i + 1 < len(args) and not args[i + 1].startswith("-"):
            shell = args[i + 1]
            if shell not in SHELLS:
                raise typer.BadParameter(
                    f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}",
                    ctx,
                    param_hint=f"'{arg}'",
                )
            callback = install_callback if arg == "--install-completion" else show_callback
            callback(ctx, None, shell)  # type: ignore[arg-type]


def print_table(table: Any) -> None:
    """Print a rich table on stdout: wrapped to a terminal, at its own full width for a
    file or pipe (which has no width: rich would fold it to 80 columns)."""
    from rich.console import Console

    console = Console(soft_wrap=False)
    if not console.is_terminal:
        unbounded = console.options.update_width(10_000)
        console.width = max(console.width, console.measure(table, options=unbounded).maximum)
    console.print(table)
