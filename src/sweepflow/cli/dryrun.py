"""What the CLI prints about jobs: dry runs (text or JSON lines), job lists, resolved jobs.

Dry runs stream: a million-trial job prints line by line in constant memory.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from sweepflow.errors import SweepflowError
from sweepflow.plan.commands import Invocation, invocations
from sweepflow.plan.expansion import Plan, compile_job
from sweepflow.spec.jobs import JobFile

__all__ = ["print_dry_run", "print_jobs", "print_show", "summary"]


def summary(trials: int, batches: int) -> str:
    """``12 trials in 2 batches``.

    >>> summary(1, 1)
    '1 trial in 1 batch'
    """
    return (
        f"{trials:,} trial{'s' if trials != 1 else ''} in "
        f"{batches:,} batch{'es' if batches != 1 else ''}"
    )


_FORMATS = {"json": "one JSON object each", "args": "shell-quoted items"}


def _text(unit: Invocation, fmt: str) -> str:
    if unit.kind == "call":
        return f"{unit.function}({list(unit.items)!r})"
    if unit.kind == "workflow":
        return _workflow_text(unit.command, unit.function, unit.items)
    lines = [shlex.join(unit.argv)]
    if unit.kind == "submit":
        # The file's lines as written (a line never holds a line break: see plan.commands).
        name = unit.param_file.name if unit.param_file else "parameter file"
        count = f"{len(unit.lines)} line{'s' if len(unit.lines) != 1 else ''}"
        lines.append(f"# {name} ({count}, {_FORMATS[fmt]}):")
        lines.extend(unit.lines)
    return "\n".join(lines)


def _workflow_text(name: str, ref: str, items: Sequence[str]) -> str:
    """A workflow trial as a dry run shows it: ``workflow NAME (module:attr): k=v ...``."""
    return f"workflow {name} ({ref}): {' '.join(items)}"


def _record(job: str, unit: Invocation, fmt: str) -> dict[str, Any]:
    record: dict[str, Any] = {"job": job, "kind": unit.kind}
    if unit.kind == "submit":
        record |= {"argv": list(unit.argv), "param_file": str(unit.param_file)}
        record |= {"format": fmt, "lines": list(unit.lines)}
        return record
    record |= {"index": unit.index, "batch": unit.batch}
    if unit.params:
        record["params"] = unit.params
    if unit.kind == "run":
        record["argv"] = list(unit.argv)
    elif unit.kind == "workflow":
        record |= {"workflow": unit.function, "args": list(unit.items)}
    else:
        record |= {"call": unit.function, "args": list(unit.items)}
    record["id"] = unit.digest[:12]
    return record


def print_dry_run(
    plan: Plan,
    extra: list[str],
    project_dir: Path | None,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    n_trials: int | None = None,
) -> None:
    """Print every invocation of ``plan`` then a one-line summary (for a search: its
    space, and the command a trial runs)."""
    out = out or sys.stdout
    if plan.space is not None:
        _print_search(plan, extra, project_dir, as_json, out, n_trials)
        return
    batches, trials = plan.count()
    key = plan.job.key
    fmt = plan.job.param_format
    write = out.write
    for unit in invocations(plan, extra, project_dir):
        if as_json:
            write(json.dumps(_record(key, unit, fmt)) + "\n")
        else:
            write(_text(unit, fmt) + "\n")
    if as_json:
        write(json.dumps({"summary": {"job": key, "trials": trials, "batches": batches}}) + "\n")
    else:
        write(summary(trials, batches) + "\n")
    out.flush()


def search_count(plan: Plan, n_trials: int | None = None) -> int:
    """Trials a search will have: ``n_trials``, else the job's, the grid's size, or 20."""
    from sweepflow.plan.space import search_space

    settings = plan.job.optimize
    assert settings is not None
    return n_trials or settings.n_trials or search_space(plan).grid_size() or 20


def example_trial(plan: Plan, project_dir: Path | None, extra: list[str]) -> Any:
    """A search's first trial as it would run: each range's low end, each list's first
    value (a :class:`~sweepflow.execution.trial.TrialSpec`)."""
    from sweepflow.plan.space import format_value, search_space
    from sweepflow.plan.specs import spec_maker

    space = search_space(plan)
    example = {
        d.key: format_value(d.low if d.kind != "categorical" else d.choices[0])
        for d in space.dimensions
    } | space.fixed
    return spec_maker(plan, project_dir or Path.cwd(), extra)(0, example)


def _print_search(
    plan: Plan,
    extra: list[str],
    project_dir: Path | None,
    as_json: bool,
    out: TextIO,
    n_trials: int | None,
) -> None:
    from sweepflow.plan.space import search_space

    space = search_space(plan)
    settings = plan.job.optimize
    assert settings is not None
    total = search_count(plan, n_trials)
    # The first trial as it would run, at each range's low end and each list's first value.
    spec = example_trial(plan, project_dir, extra)
    if spec.kind == "call":
        command = spec.function + f"({list(spec.items)!r})"
    elif spec.kind == "workflow":
        command = _workflow_text(plan.job.command, spec.function, spec.items)
    else:
        command = shlex.join(spec.argv)
    if as_json:
        record = {
            "job": plan.job.key,
            "search": {
                "metric": list(settings.metrics),
                "direction": list(settings.directions),
                "sampler": settings.sampler,
                "pruner": settings.pruner,
                "n_trials": total,
                "space": [d.describe() for d in space.dimensions],
                "fixed": space.fixed,
                "add": list(space.add),
                "example": command,
            },
        }
        out.write(json.dumps(record) + "\n")
    else:
        goal = ", ".join(
            f"{d} {m}" for m, d in zip(settings.metrics, settings.directions, strict=True)
        )
        out.write(f"search: {goal} over {total} trials ({settings.sampler} sampler")
        out.write(f", {settings.pruner} pruner)\n" if settings.pruner != "none" else ")\n")
        for dim in space.dimensions:
            out.write(f"  {dim.describe()}\n")
        for key, value in space.fixed.items():
            out.write(f"  {key} = {value} (fixed)\n")
        out.write(f"a trial runs: {command}\n")
    out.flush()


def print_jobs(jobfile: JobFile) -> None:
    """A table of the jobs (name, kind, command, trials, batches, status), then the
    reason of every invalid job on a line of its own."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=str(jobfile.path) if jobfile.path else None, title_justify="left")
    for column in ("job", "kind", "command", "trials", "batches", "status"):
        table.add_column(column, justify="right" if column in ("trials", "batches") else "left")
    reasons = []
    for name, job in jobfile.jobs.items():
        given = job.commands_given
        kind = given[0] if len(given) == 1 else "?"
        command = getattr(job, kind) if kind != "?" else ""
        try:
            if kind == "llc":  # its trials are its experiments file's pairs
                from sweepflow.workloads.llc.experiment import load_experiment

                pairs = len(load_experiment(job.llc_path).pairs())
                table.add_row(name, kind, command, f"{pairs:,}", "pairs", "ok")
                continue
            plan = compile_job(job)
            if plan.space is not None:
                table.add_row(name, kind, command, f"{search_count(plan):,}", "search", "ok")
                continue
            batches, trials = plan.count()
        except SweepflowError as exc:
            reasons.append(f"{name}: {exc}")
            table.add_row(name, kind, command, "", "", "invalid", style="red")
            continue
        table.add_row(name, kind, command, f"{trials:,}", f"{batches:,}", "ok")
    console = Console(soft_wrap=False)
    console.print(table)
    for reason in reasons:
        console.print(f"invalid {reason}", style="red", soft_wrap=True, markup=False)


def print_show(jobfile: JobFile, names: list[str]) -> None:
    """Print the named jobs resolved: every setting, and each set as it expands."""
    resolved: dict[str, Any] = {}
    for name in names:
        job = jobfile.jobs[name]
        data = job.model_dump(mode="json", exclude={"sets"}, exclude_none=True)
        data = {"experiment": job.experiment, **{k: v for k, v in data.items() if k != "name"}}
        try:
            plan = compile_job(job)
            if plan.space is not None:
                from sweepflow.plan.space import search_space

                space = search_space(plan)
                data["space"] = [d.describe() for d in space.dimensions]
                data["fixed"] = space.fixed
                data["trials"] = search_count(plan)
                resolved[name] = data
                continue
            batches, trials = plan.count()
            data["sets"] = [_set_view(compiled) for compiled in plan.sets]
            data["batches"], data["trials"] = batches, trials
        except SweepflowError as exc:
            data["invalid"] = str(exc)
            data["sets"] = [s.model_dump(mode="json") for s in job.sets]
        resolved[name] = data
    sys.stdout.write(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))


def _set_view(compiled) -> dict[str, Any]:
    batches, trials = compiled.count()
    view: dict[str, Any] = {}
    if compiled.each:
        view["each"] = [_token_view(t) for t in compiled.each]
    if compiled.zipped:
        view["zip"] = {p.key: _values_view(p) for p in compiled.zipped}
    if compiled.all:
        view["all"] = {p.key: _values_view(p) for p in compiled.all}
    if compiled.add:
        view["add"] = list(compiled.add)
    view["batches"], view["trials"] = batches, trials
    return view


def _token_view(token) -> Any:
    from sweepflow.syntax.nodes import Pipe

    if isinstance(token, Pipe):
        return {"alternatives": [alt.joined() for alt in token.alternatives]}
    return {token.key: _values_view(token)}


def _values_view(param) -> Any:
    n = len(param)
    if n <= 12:
        return list(param)
    head = [v for _, v in zip(range(5), param, strict=False)]
    return f"{', '.join(head)}, ... ({n:,} values)"
