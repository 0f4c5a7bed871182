"""What the ``sweepflow`` commands share: the ``--file`` option, the project it names,
and the one-line form of an error."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sweepflow.errors import JobFileError, SweepSyntaxError

__all__ = ["FileOption", "error_line", "load_jobfile", "project_dir"]

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
