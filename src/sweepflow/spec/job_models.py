"""The models of a job file: a :class:`Job` (its command or workflow, sets, and how to
run them) and the :class:`JobFile` of jobs by name; :mod:`sweepflow.spec.jobs` reads
them from YAML.

A job's own semantic problems (no command, a sweep syntax error, a workflow missing
from the file's ``workflows:`` map) surface when it is used, as one
:class:`~sweepflow.errors.JobError` line with the key path and ``file:line``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, field_validator

from sweepflow.errors import JobError
from sweepflow.spec.interpreter import call_target, python_command
from sweepflow.spec.sections import (
    Optimize,
    Schedule,
    SpecModel,
    SweepSet,
    joined_words,
    seeds_spec,
)
from sweepflow.spec.source import Source, format_path, suggest

__all__ = ["Job", "JobFile"]

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_JOB_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_KINDS = ("run", "call", "submit", "workflow", "llc")
_MODULE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


class Job(SpecModel):
    """One job of a job file: a command, its parameter sets, and how to run it."""

    name: str = Field("", description="MLflow experiment name; defaults to the job's key.")
    run: str | None = Field(None, description="Command run per trial (no shell).")
    call: str | None = Field(None, description="Python function 'module:function'.")
    submit: str | None = Field(None, description="Handler given one parameter file.")
    workflow: str | None = Field(
        None,
        description="A workflow (a name in the file's workflows: map, or module:attribute) "
        "run once per trial; sets sweep its dotted step keys (train.lr=0.1,0.01).",
    )
    config: str | None = Field(
        None,
        description="workflow: jobs: the workflow's YAML config (one key per step), "
        "relative to the job file; the trial's params override it.",
    )
    llc: str | None = Field(
        None,
        description="An LLC experiments file (targets x samplers), relative to the job "
        "file: one trial per (target, sampler) pair (sweepflow llc run FILE).",
    )
    submit_format: Literal["json", "args"] | None = Field(
        None,
        description="submit: jobs: a line of the parameter file is one JSON object "
        "(json) or the trial's shell-quoted key=value items (args, HydraFlow's format; "
        "the default in a hydraflow.yaml and for jobs written with steps:).",
    )
    add: str = Field("", description="Arguments appended verbatim to every command.")
    sets: tuple[SweepSet, ...] = Field((), description="Parameter sets.")
    seeds: int | str | None = Field(None, description="Replicates for every set.")
    per: Literal["trial", "batch"] = Field("trial", description="Task granularity.")
    chunk: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Trials per Prefect task; 'auto' groups short trials."
    )
    profile: str | None = Field(None, description="Execution profile name or path.")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Dask worker resources each task needs, e.g. {gpu: 1} (Dask profiles).",
    )
    retries: int = Field(0, ge=0, description="Retries of a failed trial.")
    timeout: float | None = Field(None, gt=0, description="Seconds (or '10m', '1h30m').")
    cache: bool = Field(True, description="Reuse results of unchanged trials.")
    watch: tuple[str, ...] = Field((), description="Globs of files in the code fingerprint.")
    preload: tuple[str, ...] = Field(
        (),
        description="Modules imported once by a warm interpreter that forks each trial "
        "(run: python script.py jobs); a list or a string of names.",
    )
    schedule: Schedule | None = Field(None, description="Cron schedule of the deployment.")
    optimize: Optimize | None = Field(None, description="Search the space with Optuna.")
    tags: tuple[str, ...] = Field((), description="Tags for MLflow and Prefect.")
    description: str = Field("", description="Free text shown by 'sweepflow show'.")

    _key: str = PrivateAttr("")
    _source: Source | None = PrivateAttr(None)
    _hydraflow: bool = PrivateAttr(False)  # written in HydraFlow's words (see param_format)
    _workflows: dict[str, str] = PrivateAttr(default_factory=dict)  # the file's map

    _add = field_validator("add", mode="before")(joined_words)
    _seeds = field_validator("seeds", mode="before")(seeds_spec)

    @field_validator("watch", "tags", "preload", mode="before")
    @classmethod
    def _string_list(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @field_validator("preload")
    @classmethod
    def _module_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _MODULE.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a module name: write a list ([numpy, pandas]) or "
                    "names separated by spaces ('numpy pandas')"
                )
        return value

    @field_validator("schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return {"cron": value} if isinstance(value, str) else value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _DURATION.fullmatch(value.strip())
        if not value.strip() or not match or not any(match.groups()):
            raise ValueError(f"'{value}' is not a duration: write seconds (90) or 90s, 10m, 1h30m")
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s

    @property
    def key(self) -> str:
        """The job's name in the job file."""
        return self._key

    @property
    def experiment(self) -> str:
        """The MLflow experiment name: ``name`` or the job's key."""
        return self.name or self._key

    @property
    def commands_given(self) -> list[str]:
        """Which of ``run`` / ``call`` / ``submit`` / ``workflow`` the job sets (unchecked)."""
        return [k for k in _KINDS if getattr(self, k) is not None]

    @property
    def kind(self) -> Literal["run", "call", "submit", "workflow", "llc"]:
        """Which of ``run`` / ``call`` / ``submit`` / ``workflow`` / ``llc`` the job uses
        (checked)."""
        given = self.commands_given
        if len(given) != 1:
            what = "none of" if not given else "more than one of"
            raise self.error(
                f"has {what} run / call / submit / workflow: give exactly one, e.g. 'run: "
                "python train.py'"
            )
        kind, value = given[0], str(getattr(self, given[0]))
        if not value.strip():
            example = {"run": "python train.py", "call": "train:main", "submit": "python h.py"}
            example |= {"workflow": "train_and_evaluate", "llc": "experiments.yaml"}
            raise self.error(f"has an empty {kind}: write e.g. '{kind}: {example[kind]}'", kind)
        if kind == "workflow":
            self._check_workflow()
        elif kind == "llc":
            self._check_llc()
        elif self.config is not None:
            raise self.error(
                f"has config: but is a {kind}: job; config: is a workflow: job's YAML "
                "config: remove it",
                "config",
            )
        if kind == "call":
            try:
                call_target(value)
            except ValueError as exc:
                raise self.error(f"has call: {exc}", kind) from None
        if self.submit_format is not None and kind != "submit":
            raise self.error(
                f"has submit_format: but is a {kind}: job; it applies to submit: jobs: remove it",
                "submit_format",
            )
        return kind  # type: ignore[return-value]

    @property
    def param_format(self) -> Literal["json", "args"]:
        """The lines of a ``submit:`` job's parameter file: ``submit_format`` if set,
        else ``args`` for a HydraFlow job (in a ``hydraflow.yaml``, or written with
        ``steps:``), whose handlers split each line like a shell, else ``json``."""
        if self.submit_format is not None:
            return self.submit_format
        hydraflow = self._hydraflow or (
            self._source is not None and self._source.path.name == "hydraflow.yaml"
        )
        return "args" if hydraflow else "json"

    @property
    def command(self) -> str:
        """The value of the job's ``run`` / ``call`` / ``submit`` key."""
        return getattr(self, self.kind)

    def _check_workflow(self) -> None:
        """A ``workflow:`` job runs one workflow per trial: no batches, handlers or forks."""
        for name, wrong, fix in (
            ("per", self.per == "batch", "a trial is one workflow run: remove per: batch"),
            ("submit_format", self.submit_format is not None, "it applies to submit: jobs"),
            ("preload", bool(self.preload), "steps run in the flow's workers: remove it"),
        ):
            if wrong:
                raise self.error(f"is a workflow: job and has {name}: {fix}", name)

    def _check_llc(self) -> None:
        """An ``llc:`` job's trials are its experiments file's pairs: no sets of its own."""
        for name, wrong in (
            ("sets", bool(self.sets)),
            ("seeds", self.seeds is not None),
            ("optimize", self.optimize is not None),
            ("per", self.per == "batch"),
            ("config", self.config is not None),
            ("preload", bool(self.preload)),
            ("add", bool(self.add)),
        ):
            if wrong:
                raise self.error(
                    f"is an llc: job and has {name}: its trials are the experiments file's "
                    "(target, sampler) pairs: remove it (sweep a sampler with sweep: in "
                    "the experiments file)",
                    name,
                )

    @property
    def llc_path(self) -> Path:
        """An ``llc:`` job's experiments file, resolved from the job file's folder."""
        base = self._source.path.absolute().parent if self._source else Path.cwd()
        path = (base / str(self.llc)).resolve()
        if not path.is_file():
            raise self.error(
                f"has llc: {self.llc!r}, but there is no file at {path}: give the "
                "experiments file, relative to the job file",
                "llc",
            )
        return path

    @property
    def workflow_ref(self) -> str:
        """The ``module:attribute`` of a ``workflow:`` job's workflow: its entry in the
        job file's ``workflows:`` map, or the value itself when it has a colon."""
        name = str(self.workflow)
        known = self._workflows
        if name in known:
            return known[name]
        if ":" in name:
            return name
        names = ", ".join(known) or "none"
        raise self.error(
            f"names workflow '{name}', which is not in the job file's workflows: map "
            f"({names}){suggest(name, list(known))}: add '{name}: module:attribute' under "
            "workflows:, or write workflow: module:attribute",
            "workflow",
        )

    @property
    def config_path(self) -> Path | None:
        """A ``workflow:`` job's ``config:`` file, resolved from the job file's folder."""
        if self.config is None:
            return None
        base = self._source.path.absolute().parent if self._source else Path.cwd()
        path = (base / self.config).resolve()
        if not path.is_file():
            raise self.error(
                f"has config: {self.config!r}, but there is no file at {path}: give the "
                "workflow's YAML config, relative to the job file",
                "config",
            )
        return path

    def where(self, *path: str | int) -> str:
        """``key path at file:line`` for messages about this job."""
        full = ("jobs", self._key, *path)
        place = self._source.where(full) if self._source else "?"
        return f"{format_path(full)} at {place}"

    def error(self, message: str, *path: str | int) -> JobError:
        """A :class:`JobError` located at this job (or a key path below it)."""
        return JobError(f"Job '{self._key}' {message} ({self.where(*path)})")

    def check_preload(self) -> None:
        """Raise unless the job can fork its trials, when it asks to (``preload:``):
        its trials must be ``python script.py`` (or ``-m``)."""
        if not self.preload or len(self.commands_given) != 1:
            return  # off, or the missing/extra command is reported on its own
        if self.kind != "run":
            raise self.error(
                f"is a {self.kind}: job; preload (warm starts) applies to run: python "
                "script.py jobs: remove it",
                "preload",
            )
        if self.per == "batch":
            raise self.error(
                "has preload: and per: batch; preload applies to per: trial jobs (a batch "
                "is one Hydra --multirun command): remove one of them",
                "preload",
            )
        try:
            argv = shlex.split(self.command)
        except ValueError:
            return  # an unsplittable command is reported when its argv is made
        try:
            python_command(argv)
        except ValueError as exc:
            raise self.error(
                f"has preload: but {exc}; preload needs run: python [options] script.py "
                "or python -m module",
                "preload",
            ) from None


class JobFile(SpecModel):
    """A whole job file: ``jobs`` by name."""

    jobs: dict[str, Job] = Field(default_factory=dict, description="Jobs by name.")
    workflows: dict[str, str] = Field(
        default_factory=dict,
        description="Workflows by name, each module:attribute of a sweepflow.Workflow "
        "(sweepflow workflow run NAME).",
    )

    _source: Source | None = PrivateAttr(None)

    @field_validator("jobs", mode="before")
    @classmethod
    def _names(cls, jobs: Any) -> Any:
        for name in jobs if isinstance(jobs, dict) else ():
            if not _JOB_NAME.fullmatch(str(name)) or str(name) in {".", ".."}:
                raise ValueError(
                    f"job name {name!r} cannot name a folder in the state folder: use "
                    "letters, digits, '_', '.' and '-' (e.g. train_small)"
                )
        return jobs

    @field_validator("workflows")
    @classmethod
    def _references(cls, workflows: dict[str, str]) -> dict[str, str]:
        for name, ref in workflows.items():
            if not re.fullmatch(r"[\w.]+:[\w.]+", ref):
                raise ValueError(
                    f"workflow {name!r}: {ref!r} is not module:attribute (e.g. "
                    "pipeline:train_and_evaluate)"
                )
        return workflows

    @property
    def path(self) -> Path | None:
        """Where the file was read from."""
        return self._source.path if self._source else None

    def job(self, name: str) -> Job:
        """Return the job called ``name``, or raise with the valid names."""
        if name in self.jobs:
            return self.jobs[name]
        where = self._source.display if self._source else "the job file"
        names = ", ".join(self.jobs) or "none"
        hint = suggest(name, list(self.jobs))
        if not hint.startswith(" —"):
            hint = ""
        raise JobError(f"No job '{name}' in {where}{hint} (jobs: {names})")
