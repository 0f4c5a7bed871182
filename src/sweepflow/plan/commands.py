"""Turn a job's plan into concrete invocations: argv lists, calls, parameter files.

The same invocations are printed by ``--dry-run`` and executed by the run-job flow, so
what a dry run shows is exactly what runs.

A ``submit:`` handler's parameter file has one line per trial (per batch with ``per:
batch``). By default each line is one JSON object, ``{"params": {...}, "args": [...]}``:
``args`` are the items to hand the program (``key=value`` items then ``add``, as a
``run:`` job's trial gets them after its command), ``params`` the swept values by key
(``{}`` for a batch). Control and non-ASCII characters are escaped (``\\uXXXX``), so
no value can break a line, whichever way a handler splits lines. ``submit_format:
args`` (HydraFlow's format) writes the items shell-quoted and space-separated instead;
a value holding a line break is refused there, before anything runs.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sweepflow.errors import JobError
from sweepflow.hashing import digest
from sweepflow.plan.expansion import Plan
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import Job
from sweepflow.syntax.nodes import Pipe

__all__ = ["Invocation", "check_extra", "invocations", "param_line", "trial_digest"]

# Where str.splitlines() (and so most handlers) would end a line.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass(frozen=True)
class Invocation:
    """One unit of work: a trial, a batch, or (for ``submit``) the whole job.

    Attributes:
        kind: ``run``, ``call``, ``submit`` or ``workflow``.
        index: Position of the unit (trial or batch number, from 0).
        batch: Index of the batch the unit belongs to.
        params: The trial's parameters (``per: trial``), else ``{}``.
        items: The ``key=value`` items handed to the program (params, then ``add``).
        argv: The command line for ``run`` and ``submit`` (no shell).
        function: ``module:function`` for ``call``; ``module:attribute`` of the
            workflow for ``workflow``.
        param_file: For ``submit``: the parameter file handed to the handler.
        lines: For ``submit``: the parameter file's lines, as written (see the module).
        command: The job's ``run`` / ``call`` / ``submit`` value.
    """

    kind: Literal["run", "call", "submit", "workflow"]
    index: int
    batch: int
    items: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)
    argv: tuple[str, ...] = ()
    function: str = ""
    param_file: Path | None = None
    lines: tuple[str, ...] = ()
    command: str = ""

    @property
    def digest(self) -> str:
        """Digest of the command and parameters (names the unit's folder)."""
        if self.kind == "submit":
            return digest({"argv": self.argv, "lines": self.lines})
        return trial_digest(self.kind, self.command, self.params or {"args": list(self.items)})


def trial_digest(kind: str, command: str, params: Mapping[str, object]) -> str:
    """The digest naming a trial: its command and canonical parameters."""
    return digest({"kind": kind, "command": command, "params": params})


def _trial_units(plan: Plan) -> Iterator[tuple[int, dict[str, str], list[str]]]:
    """(batch index, params, items) of every trial."""
    first = 0
    for compiled in plan.sets:
        for batch, params in compiled.iter_indexed_trials():
            yield first + batch, params, [f"{k}={v}" for k, v in params.items()] + compiled.add
        first += compiled.count()[0]


def _batch_units(plan: Plan, sweep_root: Path) -> Iterator[tuple[int, list[str]]]:
    """(batch index, items) of every batch, Hydra ``--multirun`` style."""
    job = plan.job
    for index, (compiled, batch) in enumerate(plan.iter_batches()):
        args = [f"{key}=" + ",".join(values) for key, values in batch]
        sweep_dir = sweep_root / digest({"command": job.command, "args": args})[:12]
        yield (
            index,
            [
                "--multirun",
                *args,
                f"hydra.job.name={job.experiment}",
                f"hydra.sweep.dir={sweep_dir}",
                *compiled.add,
            ],
        )


def check_extra(job: Job, extra: list[str] | tuple[str, ...]) -> None:
    """Arguments after ``--`` go to a program: refuse them for ``call:`` and
    ``workflow:`` jobs."""
    if extra and job.kind in ("call", "workflow"):
        raise job.error(f"is a {job.kind}: job; arguments after -- apply to run: and submit: jobs")


def invocations(
    plan: Plan, extra: list[str] | tuple[str, ...] = (), project_dir: Path | None = None
) -> Iterator[Invocation]:
    """Yield the invocations of a plan, lazily (one per trial, batch, or one in all).

    Args:
        plan: The compiled job.
        extra: Arguments after ``--`` on the command line, appended verbatim.
        project_dir: Folder of the job file (anchors the state folder).
    """
    job = plan.job
    kind = job.kind
    if kind == "llc":
        raise job.error(
            "is an llc: job: its trials are its experiments file's (target, sampler) pairs, "
            "expanded by 'sweepflow llc run' (or 'sweepflow run' of the job)"
        )
    check_extra(job, extra)
    runs = state_dir(project_dir) / "runs" / job.key
    units: Iterable[tuple[int, int, dict[str, str], list[str]]]
    if job.per == "batch":
        units = ((i, i, {}, items) for i, items in _batch_units(plan, runs / "multirun"))
    else:
        units = ((i, b, p, items) for i, (b, p, items) in enumerate(_trial_units(plan)))
    if kind == "submit":
        yield _submit(plan, units, extra, runs)
        return
    head = shlex.split(job.command) if kind == "run" else []
    command = job.command
    for index, batch, params, items in units:
        if kind == "run":
            argv = (*head, *items, *extra)
            yield Invocation(kind, index, batch, tuple(items), params, argv, command=command)
        elif kind == "workflow":
            function = job.workflow_ref
            yield Invocation(
                kind, index, batch, tuple(items), params, function=function, command=command
            )
        else:
            yield Invocation(
                kind, index, batch, tuple(items), params, function=command, command=command
            )


def param_line(params: Mapping[str, str], items: Iterable[str], fmt: str = "json") -> str:
    """One line of a ``submit:`` parameter file (without its newline).

    >>> print(param_line({"msg": "a\\nb"}, ["msg=a\\nb", "k=1"]))
    {"params": {"msg": "a\\nb"}, "args": ["msg=a\\nb", "k=1"]}
    >>> param_line({}, ["note=hello world", "k=1"], "args")
    "'note=hello world' k=1"
    """
    if fmt == "args":
        return shlex.join(items)
    return json.dumps({"params": dict(params), "args": list(items)})


def _submit(plan: Plan, units, extra, runs: Path) -> Invocation:
    fmt = plan.job.param_format
    lines = []
    for _, _, params, items in units:
        line = param_line(params, items, fmt)
        if fmt == "args" and _LINE_BREAK.search(line):
            raise _line_break(plan, items)
        lines.append(line)
    text = "".join(line + "\n" for line in lines)
    suffix = ".jsonl" if fmt == "json" else ".txt"
    name = f"params-{digest({'command': plan.job.command, 'text': text})[:12]}{suffix}"
    param_file = runs / name
    argv = (*shlex.split(plan.job.command), *extra, str(param_file))
    return Invocation(
        "submit",
        0,
        0,
        (),
        argv=argv,
        param_file=param_file,
        lines=tuple(lines),
        command=plan.job.command,
    )


def _line_break(plan: Plan, items: Iterable[str]) -> JobError:
    """The error for a value that would split an ``args`` line, naming where it is set."""
    job = plan.job
    item = next(i for i in items if _LINE_BREAK.search(i))
    where = next(_origins(plan, item), f"the item {item!r} ({job.where()})")
    if job.submit_format:
        what, fix = "submit_format: args", "or drop it (the default JSON lines hold any value)"
    else:
        what = "HydraFlow's args format (this job's default)"
        fix = "or set submit_format: json and read one JSON object per line in the handler"
    return JobError(
        f"Job '{job.key}' has a line break in {where}: {what} writes each trial on one line "
        f"of the parameter file, which it would split; remove the line break, {fix}"
    )


def _origins(plan: Plan, item: str) -> Iterator[str]:
    """Where an item holding a line break may come from: an override, a set's token (with
    its key path and file:line), or an ``add``."""
    job = plan.job
    key, _, value = item.partition("=")
    for text in plan.overrides:
        if _LINE_BREAK.search(text) and text.partition("=")[0] == key:
            yield f"the command-line override {text!r}"
    for index, compiled in enumerate(plan.sets):
        path: tuple[str | int, ...] = ("sets", index) if job.sets else ()
        tokens = [("each", t) for t in compiled.each] + [("zip", p) for p in compiled.zipped]
        for part, token in [*tokens, *(("all", p) for p in compiled.all)]:
            for param in token.alternatives if isinstance(token, Pipe) else (token,):
                if param.key == key and any(_LINE_BREAK.search(v) for v in param):
                    yield f"{key}={value!r} ({job.where(*path, part)})"
        if item in compiled.add:
            own = job.sets and item in shlex.split(job.sets[index].add or "")
            yield f"add item {item!r} ({job.where(*path, 'add') if own else job.where('add')})"
