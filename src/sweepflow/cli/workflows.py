"""``sweepflow workflow ...``: show a workflow, print its config schema, run it.

NAME is ``module:attribute`` (imported with the project folder first on ``sys.path``)
or a name in the job file's top-level ``workflows:`` map. Bad input gets one line on
stderr and exit code 2 (``sweepflow.cli.main``); a run is checked whole (workflow,
config, overrides, ``--stages`` and the stored inputs they need) before it starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sweepflow.cli.options import FileOption, WholeHelpGroup, project_dir

if TYPE_CHECKING:
    from sweepflow.workflow import Workflow

__all__ = ["workflow_app"]

workflow_app = typer.Typer(
    cls=WholeHelpGroup,  # whole command descriptions in --help
    help="Workflows: steps with typed, content-addressed artifacts, reused when unchanged.",
    no_args_is_help=True,
)

NameArgument = Annotated[
    str,
    typer.Argument(
        help="module:attribute of a sweepflow.Workflow, or a name in the job file's "
        "'workflows:' map."
    ),
]


def _reference(name: str, file: Path | None) -> str:
    """``module:attribute`` for NAME (a reference already, or the job file's entry)."""
    if ":" in name:
        return name
    from sweepflow.errors import JobFileError
    from sweepflow.spec.jobs import find_job_file, load_jobs
    from sweepflow.workflow import WorkflowError

    try:
        path: Path | None = file if file is not None else find_job_file()
    except JobFileError:
        path = None
    named: dict[str, str] = dict(getattr(load_jobs(path), "workflows", {}) or {}) if path else {}
    if name in named:
        return named[name]
    known = ", ".join(named) or "none"
    raise WorkflowError(
        f"workflow {name!r} is not module:attribute and not in the job file's 'workflows:' "
        f"map (names: {known}): write e.g. pipeline:train_and_evaluate"
    )


def _load(name: str, file: Path | None) -> tuple[Workflow, str, Path]:
    from sweepflow.workflow.run import import_workflow

    project = project_dir(file)
    ref = _reference(name, file)
    return import_workflow(ref, project), ref, project


@workflow_app.command()
def show(name: NameArgument, file: FileOption = None) -> None:
    """Print the workflow's steps (inputs, outputs, config keys with defaults) and wiring."""
    from sweepflow.workflow import describe

    workflow, _, _ = _load(name, file)
    for line in describe(workflow):
        typer.echo(line)


@workflow_app.command()
def schema(name: NameArgument, file: FileOption = None) -> None:
    """Print the JSON Schema of the workflow's config (one key per step)."""
    from sweepflow.workflow import json_schema

    workflow, _, _ = _load(name, file)
    typer.echo(json.dumps(json_schema(workflow), indent=2))


@workflow_app.command()
def run(
    name: NameArgument,
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="step.key=value items applied after the config (train.lr=0.01)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="The workflow config: YAML with one key per step."),
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            "--stages",
            help="Steps to run: a,b or a:c (inclusive, in order); the others are taken from "
            "the store.",
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run every selected step, stored or not.")
    ] = False,
    file: FileOption = None,
) -> None:
    """Run the workflow as a Prefect flow, each step that is not stored a task.

    Prints a line per step: its name, hit or ran, seconds and output ids.
    """
    from sweepflow.settings import state_dir
    from sweepflow.workflow import load_config
    from sweepflow.workflow.run import check_stages

    workflow, ref, project = _load(name, file)
    configs = load_config(workflow, config, overrides or [])
    check_stages(workflow, configs, project, state_dir(project), stages)
    result = _run_flow(
        project,
        workflow=ref,
        config=str(config.resolve()) if config is not None else None,
        overrides=list(overrides or []),
        stages=stages,
        no_cache=no_cache,
        project_dir=str(project),
    )
    width = max(len(s) for s in workflow.names)
    for outcome in result["steps"]:
        ids = ", ".join(f"{outcome['types'][n]}:{d[:12]}" for n, d in outcome["outputs"].items())
        typer.echo(
            f"{outcome['step']:<{width}}  {outcome['status']:<3}  {outcome['seconds']:6.2f}s  {ids}"
        )


def _run_flow(project: Path, **parameters: Any) -> dict[str, Any]:
    """Run the run-workflow flow against the Prefect API ``sweepflow run`` would use."""
    from sweepflow.cli.console import _prefect_api, _report_to, prefect_defaults

    prefect_defaults(quiet=True)
    with _prefect_api(project, False) as (_, server):
        if server is not None:  # the project's warm server or a temporary one
            from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

            timeout = float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
            _report_to(server.wait(timeout))
        from flows.workflow import run_workflow_flow

        result: dict[str, Any] = run_workflow_flow(**parameters)
    return result
