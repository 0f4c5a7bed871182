"""Job files: :func:`load_jobs` reads a ``sweepflow.yaml`` (or an LLC experiments file)
into the models of :mod:`sweepflow.spec.job_models`.

A job file maps job names to jobs. Structural problems (YAML syntax, unknown keys,
wrong types) make the whole file invalid and are all reported at once, each with its
``file:line`` and key path. A job's own semantic problems (no command, a sweep syntax
error, ``zip`` lists of unequal length) surface only when that job is expanded.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sweepflow.cache.fingerprint import watch_glob
from sweepflow.errors import JobError, JobFileError
from sweepflow.spec.job_models import Job, JobFile
from sweepflow.spec.sections import Optimize, Schedule, SweepSet
from sweepflow.spec.source import Source, expected, format_path, suggest

__all__ = [
    "DEFAULT_FILES",
    "Job",
    "JobFile",
    "Optimize",
    "Schedule",
    "SweepSet",
    "find_job_file",
    "load_jobs",
]

DEFAULT_FILES = ("sweepflow.yaml", "hydraflow.yaml")
_JOB_ALIASES = {"steps": "sets", "with": "add"}
_SET_ALIASES = {"batch": "each", "args": "all", "with": "add"}
_HYDRAFLOW = "steps"  # a job written with HydraFlow's name for its sets


def find_job_file(directory: str | Path = ".") -> Path:
    """Return ``sweepflow.yaml`` (or else ``hydraflow.yaml``) in ``directory``."""
    for name in DEFAULT_FILES:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    raise JobFileError(
        [f"No job file in {Path(directory).resolve()}: create sweepflow.yaml (or pass --file PATH)"]
    )


def load_jobs(path: str | Path | None = None) -> JobFile:
    """Load and validate a job file (default: ``sweepflow.yaml`` in the cwd).

    Raises:
        JobFileError: Listing every structural problem with its file:line and key path.
    """
    source = Source.read(path if path is not None else find_job_file())
    problems: list[str] = []
    if _is_experiments(source.data):  # an LLC experiments file: one llc: job
        name = source.data.get("experiment") or source.path.stem
        source.data = {"jobs": {str(name): {"llc": source.path.name}}}
    data = _normalise(source, problems)
    try:
        jobfile = JobFile.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(source, error) for error in exc.errors())
    else:
        problems.extend(_watch_problems(source, jobfile))
    if problems:
        raise JobFileError(sorted(problems, key=_line_of))
    jobfile._source = source
    hydraflow = {p[1] for p in source.lines if len(p) > 2 and p[0] == "jobs" and p[2] == _HYDRAFLOW}
    for key, job in jobfile.jobs.items():
        job._key, job._source, job._hydraflow = key, source, key in hydraflow
        job._workflows = dict(jobfile.workflows)
    return jobfile


def _is_experiments(data: Any) -> bool:
    """An LLC experiments file (``targets:`` and ``samplers:``, no ``jobs:``)."""
    return isinstance(data, dict) and "jobs" not in data and {"targets", "samplers"} <= set(data)


def _watch_problems(source: Source, jobfile: JobFile) -> list[str]:
    """Each ``watch`` glob that cannot be used: outside the project folder (the job
    file's), or one a glob cannot take."""
    project = source.path.absolute().parent
    problems = []
    for key, job in jobfile.jobs.items():
        for index, pattern in enumerate(job.watch):
            try:
                watch_glob(pattern, project)
            except JobError as exc:
                path = ("jobs", key, "watch", index)
                problems.append(
                    f"Invalid value for {format_path(path)} at {source.where(path)}: {exc}"
                )
    return problems


def _line_of(problem: str) -> int:
    match = re.search(r":(\d+)\b", problem)
    return int(match.group(1)) if match else 0


def _normalise(source: Source, problems: list[str]) -> Any:
    """Rename aliases (``steps``, ``batch``, ``args``), recording their lines."""
    data = source.data
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{source.display} must be a mapping with a 'jobs' key")
        return {}
    jobs = data.get("jobs")
    if not isinstance(jobs, dict):
        return data
    for name, job in jobs.items():
        path = ("jobs", str(name))
        job = _rename(source, job, _JOB_ALIASES, path, problems)
        jobs[name] = job
        if isinstance(job, dict) and isinstance(job.get("sets"), list):
            job["sets"] = [
                _rename(source, item, _SET_ALIASES, (*path, "sets", i), problems)
                for i, item in enumerate(job["sets"])
            ]
    return data


def _rename(
    source: Source, item: Any, aliases: dict[str, str], path: tuple, problems: list[str]
) -> Any:
    if not isinstance(item, dict):
        return item
    renamed = dict(item)
    for alias, name in aliases.items():
        if alias not in renamed:
            continue
        if name in renamed:
            problems.append(
                f"Both '{name}' and its alias '{alias}' in {format_path(path)} at "
                f"{source.where((*path, alias))}: keep one"
            )
            del renamed[alias]
            continue
        renamed[name] = renamed.pop(alias)
        if (*path, alias) in source.lines:
            source.lines[(*path, name)] = source.lines[(*path, alias)]
            _move_lines(source, (*path, alias), (*path, name))
    return renamed


def _move_lines(source: Source, old: tuple, new: tuple) -> None:
    for key in [k for k in source.lines if k[: len(old)] == old and len(k) > len(old)]:
        source.lines[new + key[len(old) :]] = source.lines[key]


def _describe(source: Source, error: Any) -> str:
    """One line for one pydantic error: what, where, how to fix."""
    loc = tuple(part for part in error["loc"] if not _is_union_tag(part))
    kind = error["type"]
    if kind == "invalid_key":
        parent = loc[:-1]
        return (
            f"Invalid key {error.get('input')!r} in {format_path(parent)} at {source.where(loc)}:"
            " keys must be names; an unquoted comma in a YAML flow mapping ({each: a=1,2})"
            " splits the value, so quote it ({each: 'a=1,2'})"
        )
    if kind == "extra_forbidden":
        parent, key = loc[:-1], str(loc[-1])
        fields = _fields_at(parent)
        return (
            f"Unknown key '{key}' in {format_path(parent) or 'the top level'} at "
            f"{source.where(loc)}{suggest(key, fields)}"
        )
    return f"Invalid value for {format_path(loc)} at {source.where(loc)}: {expected(error)}"


def _is_union_tag(part: Any) -> bool:
    """Pydantic inserts union member names (``int``, ``str``) into error locations."""
    return isinstance(part, str) and (
        part in {"int", "str", "float", "bool", "none"} or "[" in part or part == "Schedule"
    )


def _fields_at(path: tuple) -> list[str]:
    model: type[BaseModel] = JobFile
    depth = len(path)
    if depth >= 2:
        model = Job
    if depth >= 4 and path[2] == "sets":
        model = SweepSet
    if depth >= 3 and path[2] == "schedule":
        model = Schedule
    if depth >= 3 and path[2] == "optimize":
        model = Optimize
    names = list(model.model_fields)
    if model is Job:
        names += list(_JOB_ALIASES)
    if model is SweepSet:
        names += list(_SET_ALIASES)
    return names
