"""Turn a job's plan into concrete invocations: argv lists, calls, parameter files.

The same invocations are printed by ``--dry-run`` and executed by the run-job flow, so
what a dry run shows is exactly what runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sweepflow.hashing import digest
from sweepflow.plan.expansion import Plan
from sweepflow.settings import state_dir
from sweepflow.spec.jobs import Job

__all__ = ["Invocation", "check_extra", "invocations", "trial_digest"]


@dataclass(frozen=True)
class Invocation:
    """One unit of work: a trial, a batch, or (for ``submit``) the whole job.

    Attributes:
        kind: ``run``, ``call`` or ``submit``.
        index: Position of the unit (trial or batch number, from 0).
        batch: Index of the batch the unit belongs to.
        params: The trial's parameters (``per: trial``), else ``{}``.
        items: The ``key=value`` items handed to the program (params, then ``add``).
        argv: The command line for ``run`` and ``submit`` (no shell).
        function: ``module:function`` for ``call``.
        param_file: For ``submit``: the parameter file handed to the handler.
        lines: For ``submit``: the parameter file's lines (shell-quoted items).
        command: The job's ``run`` / ``call`` / ``submit`` value.
    """

    kind: Literal["run", "call", "submit"]
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
    """Arguments after ``--`` go to a program: refuse them for a ``call:`` job."""
    if extra and job.kind == "call":
        raise job.error("is a call: job; arguments after -- apply to run: and submit: jobs")


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
    head = shlex.split(job.command)
    command = job.command
    for index, batch, params, items in units:
        if kind == "run":
            argv = (*head, *items, *extra)
            yield Invocation(kind, index, batch, tuple(items), params, argv, command=command)
        else:
            yield Invocation(
                kind, index, batch, tuple(items), params, function=command, command=command
            )


def _submit(plan: Plan, units, extra, runs: Path) -> Invocation:
    lines = tuple(shlex.join(items) for _, _, _, items in units)
    text = "".join(line + "\n" for line in lines)
    name = f"params-{digest({'command': plan.job.command, 'text': text})[:12]}.txt"
    param_file = runs / name
    argv = (*shlex.split(plan.job.command), *extra, str(param_file))
    return Invocation(
        "submit",
        0,
        0,
        (),
        argv=argv,
        param_file=param_file,
        lines=lines,
        command=plan.job.command,
    )
