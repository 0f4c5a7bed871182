"""Build the trial specs of a job execution: invocations plus cache keys and folders."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from sweepflow.cache.fingerprint import call_files, code_files, fingerprint
from sweepflow.cache.keys import cache_key
from sweepflow.execution.trial import TrialSpec
from sweepflow.plan.commands import Invocation, check_extra, invocations
from sweepflow.plan.expansion import Plan
from sweepflow.settings import state_dir

__all__ = ["build_specs", "job_folder", "spec_maker"]

_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def job_folder(project_dir: Path, job: str) -> Path:
    """``<state>/runs/<job>``; a job name that could leave the state folder is refused."""
    if not _SAFE.fullmatch(job) or job in {".", ".."}:
        raise ValueError(f"job name {job!r} cannot name a folder: use letters, digits, _ . -")
    return state_dir(project_dir) / "runs" / job


def _code(job, project: Path) -> str:
    """The code fingerprint of a job's trials (files its command names, ``watch``); a
    workflow's steps each key their own code, so a workflow trial has none."""
    if job.kind == "workflow":
        return ""
    files = code_files(job.command, project, job.watch)
    if job.kind == "call":
        files = sorted({*files, *call_files(job.command, project)})
    return fingerprint(files, project)


def _spec(job, unit: Invocation, code: str, folder: Path, project: Path, extra: list[str]):
    inputs = {"params": unit.params, "items": list(unit.items), "extra": extra}
    if unit.kind == "submit":
        inputs = {"lines": list(unit.lines), "extra": extra}
    unit_digest = unit.digest  # hashed once: it names the folder and the spec
    name = unit_digest[:16] if unit.kind != "submit" else f"submit-{unit_digest[:16]}"
    return TrialSpec(
        job=job.key,
        kind=unit.kind,
        index=unit.index,
        batch=unit.batch,
        params=unit.params,
        items=unit.items,
        argv=unit.argv,
        function=unit.function,
        lines=unit.lines,
        param_file=str(unit.param_file) if unit.param_file else None,
        digest=unit_digest,
        cache_key=cache_key(job.key, unit.kind, job.command, inputs, code),
        fingerprint=code,
        workdir=str(folder / name),
        project_dir=str(project),
        timeout=job.timeout,
        preload=job.preload,  # how the trial starts, not what it computes: not in the key
    )


def build_specs(plan: Plan, project_dir: Path, extra: list[str] | None = None) -> list[TrialSpec]:
    """One :class:`TrialSpec` per unit of ``plan`` (trial, batch, or submit handler)."""
    job, extra = plan.job, list(extra or [])
    project = project_dir.resolve()
    code = _code(job, project)
    folder = job_folder(project, job.key)
    return [
        _spec(job, unit, code, folder, project, extra) for unit in invocations(plan, extra, project)
    ]


def spec_maker(
    plan: Plan, project_dir: Path, extra: list[str] | None = None
) -> Callable[[int, dict[str, str]], TrialSpec]:
    """For a search: a function making the spec of trial ``index`` with ``params``.

    The spec (and its cache key) is the one a sweep trial with the same parameters
    gets, so a search reuses what a sweep computed and the other way round.
    """
    job, extra = plan.job, list(extra or [])
    check_extra(job, extra)
    project = project_dir.resolve()
    code = _code(job, project)
    folder = job_folder(project, job.key)
    add = list(plan.space.add) if plan.space else []
    head = shlex.split(job.command) if job.kind == "run" else []
    ref = job.workflow_ref if job.kind == "workflow" else ""

    kind = job.kind
    if kind == "llc":
        raise job.error("is an llc: job: tune its samplers with 'sweepflow llc tune'")

    def make(index: int, params: dict[str, str]) -> TrialSpec:
        items = (*(f"{k}={v}" for k, v in params.items()), *add)
        unit = Invocation(
            kind,
            index,
            index,
            items,
            dict(params),
            (*head, *items, *extra) if job.kind == "run" else (),
            function={"call": job.command, "workflow": ref}.get(job.kind, ""),
            command=job.command,
        )
        return _spec(job, unit, code, folder, project, extra)

    return make
