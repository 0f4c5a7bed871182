"""Execution profiles ("cards"): where tasks run — threads, a local Dask cluster, or SLURM.

A profile is a YAML file named after the profile. :func:`load_profile` looks a name up
in ``<project>/profiles/`` first, then in the shipped ``deployments/profiles/``; a value
with a ``/`` or a ``.yaml`` suffix is a path. ``--set key=value`` items (dotted keys,
YAML scalar values) override the file's values. Problems are reported on one line with
the key path and its ``file:line`` (or the ``--set`` item), and how to fix them.

Loading and resolving import no Dask or Prefect; only :meth:`Profile.task_runner` and
:meth:`Profile.job_script` do.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from ._source import Source, format_path, suggest
from .errors import JobFileError, ProfileError

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

__all__ = [
    "DEFAULT_PROFILE",
    "SCHEDULER_PLACEHOLDER",
    "WORKER_NAME_PLACEHOLDER",
    "Adapt",
    "DaskLocalProfile",
    "LocalProfile",
    "Profile",
    "SlurmProfile",
    "available_profiles",
    "load_profile",
    "shipped_profiles_dir",
]

DEFAULT_PROFILE = "local"
# What ``SLURMCluster(...).job_script()`` shows before its scheduler has an address, and
# the worker name it uses there; real jobs get the scheduler's address and their own name.
SCHEDULER_PLACEHOLDER = "tcp://<insert-scheduler-address-here>:8786"
WORKER_NAME_PLACEHOLDER = "dummy-name"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"\d+(?:\.\d+)?\s*(?:[kmgtp]i?b?|b)", re.IGNORECASE)
_WALLTIME = re.compile(r"\d+(?::\d{1,2}){0,2}|\d+-\d{1,2}(?::\d{1,2}){0,2}")
_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


class _Loader(yaml.SafeLoader):
    """YAML with decimal integers only: ``walltime: 12:00:00`` (base 60 in YAML 1.1) and
    ``account: 0042`` (octal) stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
    list("-+0123456789"),
)


def _check(reason: str, key: str) -> PydanticCustomError:
    """A cross-field problem, located at ``key`` (pydantic gives model checks no location)."""
    return PydanticCustomError("profile_check", "{reason}", {"reason": reason, "key": key})


def _one_line(value: Any, what: str) -> Any:
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise ValueError(f"{what} must be one line, got {value!r}")
    return value


def _word(value: Any) -> Any:
    """Names that go into ``#SBATCH`` lines: no spaces, no newlines."""
    if isinstance(value, str) and (not value or re.search(r"\s", value)):
        raise ValueError(f"expected a single word without spaces, got {value!r}")
    return value


def _lines(value: Any) -> Any:
    """A list of lines; a multi-line string is split into its lines."""
    return value.splitlines() if isinstance(value, str) else value


def _env(value: Any) -> Any:
    """``worker_env``: names checked, scalar values written as the shell would see them."""
    if not isinstance(value, dict):
        return value
    env = {}
    for key, item in value.items():
        if not _ENV_NAME.fullmatch(str(key)):
            raise ValueError(f"{key!r} is not an environment variable name (letters, digits, _)")
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = str(item)
        elif not isinstance(item, str):
            raise ValueError(f"{key} needs a string value, got {item!r}")
        env[str(key)] = _one_line(item, f"worker_env.{key}")
    return env


def _size(value: Any) -> Any:
    if value is None or (isinstance(value, str) and _SIZE.fullmatch(value.strip())):
        return value.strip() if isinstance(value, str) else value
    raise ValueError(f"expected a size with a unit such as 16GB or 512MiB, got {value!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Adapt(_Model):
    """Adaptive scaling bounds: SLURM jobs for ``slurm``, worker processes for ``dask-local``."""

    minimum: int = Field(0, ge=0, description="Fewest jobs (workers) kept when idle.")
    maximum: int = Field(1, ge=1, description="Most jobs (workers) started under load.")

    @_model_validator(mode="after")
    def _ordered(self) -> Adapt:
        if self.minimum > self.maximum:
            raise _check(f"minimum ({self.minimum}) is above maximum ({self.maximum})", "minimum")
        return self


class Profile(_Model):
    """An execution profile (base of the three kinds; see :func:`load_profile`).

    Attributes:
        name: The profile's name (its file name without ``.yaml``).
        source: The file it was read from.
        type: ``local`` (threads), ``dask-local`` (local Dask cluster) or ``slurm``.
    """

    name: str = Field("", description="The profile's name: its file name without .yaml.")
    source: str | None = Field(None, description="The file the profile was read from.")
    type: Literal["local", "dask-local", "slurm"] = Field(description="Where tasks run.")
    description: str = Field("", description="Free text shown by 'sweepflow profile list'.")
    retries: int = Field(0, ge=0, description="Retries of a failed task (e.g. a lost worker).")

    # Keys set by the loader, never by the file or --set.
    _LOADER_KEYS: ClassVar[frozenset[str]] = frozenset({"name", "source"})

    @classmethod
    def file_keys(cls) -> list[str]:
        """The keys a profile file of this kind may set."""
        return [k for k in cls.model_fields if k not in cls._LOADER_KEYS]

    def resolved(self) -> dict[str, Any]:
        """Every setting with its effective value (defaults filled in), as JSON data."""
        return self.model_dump(mode="json")

    def cluster_kwargs(self, state_dir: str | Path | None = None) -> dict[str, Any]:
        """Keyword arguments of the Dask cluster class (empty when there is none)."""
        return {}

    def adapt_kwargs(self) -> dict[str, int] | None:
        """Keyword arguments of the cluster's ``adapt()``, or None for a fixed size."""
        return None

    def worker_resources(self) -> dict[str, float]:
        """Dask resources each worker process declares (``{"gpu": 1}``), for task placement."""
        return {}

    def job_script(self, state_dir: str | Path | None = None) -> str:
        """The SLURM job script of one worker job (``slurm`` profiles only)."""
        raise ProfileError(
            f"Profile '{self.name}' is of type {self.type}: only slurm profiles have a job "
            "script (use a profile with type: slurm, e.g. slurm-cpu)"
        )

    def task_runner(
        self, max_parallel: int | None = None, state_dir: str | Path | None = None
    ) -> TaskRunner:
        """The Prefect task runner that runs tasks where this profile says (not started).

        Args:
            max_parallel: Tasks in flight at once (``local`` only; Dask profiles size
                their cluster themselves).
            state_dir: The run's state folder (``slurm``: where job logs go).
        """
        raise NotImplementedError  # pragma: no cover - each kind defines it


class LocalProfile(Profile):
    """Threads in the flow's own process: nothing to start."""

    type: Literal["local"] = Field("local", description="Threads in the flow process.")
    cores: int | None = Field(
        None, ge=1, description="Tasks in flight at once (default: this machine's cores)."
    )

    def resolved(self) -> dict[str, Any]:
        """Every setting with its effective value; ``cores`` filled in from this machine."""
        return {**super().resolved(), "cores": self.cores or os.cpu_count() or 1}

    def task_runner(
        self, max_parallel: int | None = None, state_dir: str | Path | None = None
    ) -> TaskRunner:
        """``ThreadPoolTaskRunner`` with ``max_parallel`` (else ``cores``) threads."""
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max_parallel or self.resolved()["cores"])


class DaskLocalProfile(Profile):
    """A ``distributed.LocalCluster`` on this machine."""

    type: Literal["dask-local"] = Field("dask-local", description="A local Dask cluster.")
    workers: int | None = Field(None, ge=1, description="Worker count (default: Dask's choice).")
    threads_per_worker: int | None = Field(None, ge=1, description="Threads in each worker.")
    processes: bool = Field(True, description="Workers are processes (true) or threads (false).")
    memory: str | None = Field(None, description="Memory limit of each worker, e.g. 4GB.")
    worker_env: dict[str, str] = Field(
        default_factory=dict, description="Environment of the worker processes."
    )
    adapt: Adapt | None = Field(None, description="Scale between minimum and maximum workers.")

    _env = field_validator("worker_env", mode="before")(_env)
    _memory = field_validator("memory", mode="before")(_size)

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value not in (0, 1):
            raise ValueError(
                f"expected true (worker processes) or false (threads), got {value!r}; "
                "set the number of workers with workers: N"
            )
        return value

    @_model_validator(mode="after")
    def _env_needs_processes(self) -> DaskLocalProfile:
        if self.worker_env and not self.processes:
            raise _check(
                "threads share the flow's environment: set processes: true to use worker_env",
                "worker_env",
            )
        return self

    def cluster_kwargs(self, state_dir: str | Path | None = None) -> dict[str, Any]:
        """``distributed.LocalCluster`` keyword arguments (unset values left to Dask)."""
        kwargs: dict[str, Any] = {
            "n_workers": self.workers,
            "threads_per_worker": self.threads_per_worker,
            "processes": self.processes,
            "memory_limit": self.memory,
            "env": dict(self.worker_env) or None,
        }
        return {k: v for k, v in kwargs.items() if v is not None}

    def adapt_kwargs(self) -> dict[str, int] | None:
        """``LocalCluster.adapt`` bounds in workers, or None for a fixed size."""
        return self.adapt.model_dump() if self.adapt else None

    def task_runner(
        self, max_parallel: int | None = None, state_dir: str | Path | None = None
    ) -> TaskRunner:
        """``DaskTaskRunner`` over a ``LocalCluster`` (started when the flow starts)."""
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs=self.cluster_kwargs(state_dir),
            adapt_kwargs=self.adapt_kwargs(),
        )


class SlurmProfile(Profile):
    """Dask workers as SLURM jobs, through dask-jobqueue's ``SLURMCluster``."""

    type: Literal["slurm"] = Field("slurm", description="Dask workers as SLURM jobs.")
    partition: str | None = Field(None, description="SLURM partition (#SBATCH -p).")
    account: str | None = Field(None, description="Account charged (#SBATCH -A).")
    qos: str | None = Field(None, description="Quality of service (#SBATCH --qos).")
    constraint: str | None = Field(None, description="Node features (#SBATCH --constraint).")
    cores: int = Field(1, ge=1, description="CPU cores per job (--cpus-per-task).")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    memory: str = Field("4GiB", description="Memory per job, e.g. 16GiB (#SBATCH --mem).")
    gpus: int = Field(0, ge=0, description="GPUs per job (--gres=gpu:N; Dask resource gpu).")
    gpu_type: str | None = Field(None, description="GPU model in --gres=gpu:TYPE:N, e.g. a100.")
    walltime: str = Field("01:00:00", description="Time limit per job: minutes, or [D-]HH:MM:SS.")
    job_name: str = Field("sweepflow", description="Job name shown by squeue (#SBATCH -J).")
    job_directives: tuple[str, ...] = Field(
        (), description="Extra #SBATCH lines, e.g. --exclusive."
    )
    job_directives_skip: tuple[str, ...] = Field(
        (), description="Drop generated #SBATCH lines containing these strings, e.g. --mem."
    )
    prologue: tuple[str, ...] = Field(
        (), description="Shell lines run before the worker: module loads, venv activation."
    )
    worker_env: dict[str, str] = Field(
        default_factory=dict, description="Variables exported in the job (values taken literally)."
    )
    interface: str | None = Field(None, description="Network interface of workers, e.g. ib0.")
    local_directory: str | None = Field(None, description="Worker scratch folder, e.g. $TMPDIR.")
    python: str | None = Field(None, description="Python of the workers (default: the flow's).")
    adapt: Adapt = Field(default_factory=Adapt, description="Scale between minimum/maximum jobs.")

    _words = field_validator(
        "partition", "account", "qos", "constraint", "gpu_type", "job_name", "interface"
    )(_word)
    _env = field_validator("worker_env", mode="before")(_env)
    _lines = field_validator("prologue", "job_directives", "job_directives_skip", mode="before")(
        _lines
    )
    _memory = field_validator("memory", mode="before")(_size)

    @field_validator("processes", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a number of worker processes per job (1), got {value}")
        return value

    @field_validator("walltime", mode="before")
    @classmethod
    def _walltime(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return f"{value // 60:02d}:{value % 60:02d}:00"  # SLURM reads a number as minutes
        if isinstance(value, str) and _WALLTIME.fullmatch(value.strip()):
            return value.strip()
        raise ValueError(
            f"expected minutes (90) or [days-]hours:minutes:seconds ('02:00:00'), got {value!r}"
        )

    @field_validator("job_directives", "job_directives_skip", "python", "local_directory")
    @classmethod
    def _single_lines(cls, value: Any) -> Any:
        for line in value if isinstance(value, tuple) else (value,):
            _one_line(line, "each entry")
        return value

    @field_validator("job_directives")
    @classmethod
    def _no_prefix(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(re.sub(r"^\s*#SBATCH\s+", "", line).strip() for line in value)

    @_model_validator(mode="after")
    def _consistent(self) -> SlurmProfile:
        if self.processes > self.cores:
            raise _check(
                f"{self.processes} worker processes need at least as many cores "
                f"(cores: {self.cores}); raise cores or lower processes",
                "processes",
            )
        if self.gpus % self.processes:
            raise _check(
                f"gpus ({self.gpus}) must be a multiple of processes ({self.processes}): "
                "each worker process gets gpus/processes GPUs",
                "gpus",
            )
        if self.gpu_type and not self.gpus:
            raise _check(f"gpu_type {self.gpu_type!r} needs gpus: 1 or more", "gpu_type")
        return self

    def resolved(self) -> dict[str, Any]:
        """Every setting with its effective value; ``python`` filled in."""
        return {**super().resolved(), "python": self.python or sys.executable}

    def worker_resources(self) -> dict[str, float]:
        """``{"gpu": gpus / processes}`` when the job has GPUs, else ``{}``."""
        if not self.gpus:
            return {}
        share = self.gpus / self.processes
        return {"gpu": int(share) if share.is_integer() else share}

    def cluster_kwargs(self, state_dir: str | Path | None = None) -> dict[str, Any]:
        """``dask_jobqueue.SLURMCluster`` keyword arguments.

        Args:
            state_dir: The run's state folder; SLURM writes the jobs' stdout and stderr
                to ``<state_dir>/logs/slurm`` (default: SLURM's own default).
        """
        directives = [f"--{k}={v}" for k in ("qos", "constraint") if (v := getattr(self, k))]
        if self.gpus:
            gres = ":".join(["gpu", *([self.gpu_type] if self.gpu_type else []), str(self.gpus)])
            directives.append(f"--gres={gres}")
        env = [f"export {key}={shlex.quote(value)}" for key, value in self.worker_env.items()]
        extra = [f"{k}={v}" for k, v in self.worker_resources().items()]
        kwargs: dict[str, Any] = {
            "queue": self.partition,
            "account": self.account,
            "cores": self.cores,
            "processes": self.processes,
            "memory": self.memory,
            "walltime": self.walltime,
            "job_name": self.job_name,
            "interface": self.interface,
            "local_directory": self.local_directory,
            # dask-jobqueue writes the python path into the script unquoted.
            "python": shlex.quote(self.python or sys.executable),
            "job_extra_directives": [*directives, *self.job_directives],
            "job_directives_skip": list(self.job_directives_skip),
            "job_script_prologue": [*self.prologue, *env],
            "worker_extra_args": ["--resources", ",".join(extra)] if extra else [],
        }
        if state_dir is not None:
            logs = Path(state_dir).resolve() / "logs" / "slurm"
            if re.search(r"\s", str(logs)):
                raise ProfileError(
                    f"SLURM cannot write logs to {logs} (#SBATCH paths cannot hold spaces): "
                    "set SWEEPFLOW_HOME to a folder without spaces"
                )
            kwargs["log_directory"] = str(logs)
        return {k: v for k, v in kwargs.items() if v is not None}

    def adapt_kwargs(self) -> dict[str, int]:
        """``SLURMCluster.adapt`` bounds, counted in jobs."""
        return {"minimum_jobs": self.adapt.minimum, "maximum_jobs": self.adapt.maximum}

    def job_script(self, state_dir: str | Path | None = None) -> str:
        """The script dask-jobqueue submits for each worker job.

        Rendered by dask-jobqueue's own ``SLURMJob`` without starting a scheduler, with
        :data:`SCHEDULER_PLACEHOLDER` and :data:`WORKER_NAME_PLACEHOLDER` where each real
        job has the scheduler's address and its worker name — exactly what
        ``SLURMCluster(**cluster_kwargs).job_script()`` shows before it has an address.
        With ``state_dir``, the log folder is created (as dask-jobqueue does).
        """
        from dask_jobqueue.slurm import SLURMJob

        return SLURMJob(
            SCHEDULER_PLACEHOLDER, name=WORKER_NAME_PLACEHOLDER, **self.cluster_kwargs(state_dir)
        ).job_script()

    def task_runner(
        self, max_parallel: int | None = None, state_dir: str | Path | None = None
    ) -> TaskRunner:
        """``DaskTaskRunner`` over a ``SLURMCluster`` that adapts between the job bounds."""
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(
            cluster_class="dask_jobqueue.SLURMCluster",
            cluster_kwargs=self.cluster_kwargs(state_dir),
            adapt_kwargs=self.adapt_kwargs(),
        )


_KINDS: dict[str, type[Profile]] = {
    "local": LocalProfile,
    "dask-local": DaskLocalProfile,
    "slurm": SlurmProfile,
}


def shipped_profiles_dir() -> Path:
    """The folder of the shipped profiles (``deployments/profiles``), found without
    importing the ``deployments`` package (the core never imports the layers above it)."""
    here = Path(__file__).resolve().parent
    for root in (here.parent, here.parents[1]):  # installed wheel; source tree (src layout)
        folder = root / "deployments" / "profiles"
        if (folder / f"{DEFAULT_PROFILE}.yaml").is_file():
            return folder
    return here.parents[1] / "deployments" / "profiles"


def available_profiles(project_dir: str | Path | None = None) -> dict[str, Path]:
    """Profiles by name: shipped ones, then ``<project_dir>/profiles/*.yaml``, which win.

    Args:
        project_dir: The folder of the job file (default: the working directory).
    """
    found: dict[str, Path] = {}
    for folder in (shipped_profiles_dir(), Path(project_dir or ".") / "profiles"):
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.is_file() and _NAME.fullmatch(path.stem):
                found[path.stem] = path
    return dict(sorted(found.items()))


def load_profile(
    name_or_path: str | Path | None,
    sets: list[str] | tuple[str, ...] = (),
    project_dir: str | Path | None = None,
) -> Profile:
    """Find, read and validate a profile, with ``--set`` overrides applied.

    Args:
        name_or_path: A profile name, or a path (relative paths are read from
            ``project_dir`` first, then the working directory); None means ``local``.
        sets: ``key=value`` items; dotted keys reach nested ones (``adapt.maximum=4``,
            ``worker_env.FOO=bar``); values are YAML scalars (``[a, b]`` for a list); an
            empty value removes the key (back to its default).
        project_dir: The folder of the job file (default: the working directory).

    Raises:
        ProfileError: One line naming the profile, key path, file:line or ``--set``
            item, the problem, and the fix.
    """
    name, path = _locate(str(name_or_path or DEFAULT_PROFILE), project_dir)
    source = _read(path)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ProfileError(
            f"Profile '{name}' at {source.display} must be a mapping of keys, e.g. 'type: slurm'"
        )
    origins: dict[tuple[str, ...], str] = {}
    data = copy.deepcopy(data)
    for item in sets:
        _apply_set(data, item, origins)
    return _validate(data, name, source, origins)


def _is_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith((".yaml", ".yml"))


def _locate(spec: str, project_dir: str | Path | None) -> tuple[str, Path]:
    if _is_path(spec):
        given = Path(spec).expanduser()
        tried = [given] if given.is_absolute() or not project_dir else [Path(project_dir) / given]
        tried += [given] if given not in tried else []
        for path in tried:
            if path.is_file():
                return path.stem, path
        where = " or ".join(str(p.resolve()) for p in tried)
        raise ProfileError(f"No profile file at {where}: check the path, or give a profile name")
    found = available_profiles(project_dir)
    if spec in found:
        return spec, found[spec]
    hint = suggest(spec, list(found))
    hint = hint if hint.startswith(" —") else ""
    folder = Path(project_dir or ".") / "profiles"
    raise ProfileError(
        f"No profile '{spec}'{hint} (profiles: {', '.join(found) or 'none'}); to add one, "
        f"write {folder / spec}.yaml or pass a path"
    )


def _read(path: Path) -> Source:
    try:
        source = Source.read(path)
        source.data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except JobFileError as exc:
        text = "; ".join(exc.problems).replace("job file", "profile file")
        raise ProfileError(f"Profile '{path.stem}': {text}") from None
    return source


def _scalar(text: str) -> Any:
    """A ``--set`` value: a YAML scalar, or a flow list/mapping (``[a, b]``)."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("", "~", "null", "Null", "NULL"):
        return text  # '#SBATCH --exclusive' is not a YAML comment here
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("[", "{")):
        return text  # 'a: b' or '- a' were meant as text
    return value


def _apply_set(data: dict[str, Any], item: str, origins: dict[tuple[str, ...], str]) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not _SET_KEY.fullmatch(key):
        raise ProfileError(
            f"Bad --set item {item!r}: write KEY=VALUE with a dotted key, "
            "e.g. --set gpus=2 or --set adapt.maximum=4"
        )
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1], 1):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[:depth])
            raise ProfileError(
                f"Bad --set item {item!r}: {prefix} is {child!r}, not a mapping; "
                f"set it whole, e.g. --set {prefix}=VALUE"
            )
        node = child
    value = _scalar(text)
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    origins[tuple(parts)] = item


def _validate(
    data: dict[str, Any], name: str, source: Source, origins: dict[tuple[str, ...], str]
) -> Profile:
    def place(loc: tuple) -> str:
        for end in range(len(loc), 0, -1):
            if tuple(map(str, loc[:end])) in origins:
                return f"from --set {origins[tuple(map(str, loc[:end]))]!r}"
        return f"at {source.where(loc)}"

    head = f"in profile '{name}'"
    kind = data.get("type", DEFAULT_PROFILE)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProfileError(
            f"Invalid value for type {head} {place(('type',))}: expected one of "
            f"{', '.join(_KINDS)}, got {kind!r}{suggest(str(kind), list(_KINDS))}"
        )
    problems, misplaced = [], {}
    for key in [str(k) for k in data if str(k) not in cls.file_keys()]:
        owners = [k for k, c in _KINDS.items() if key in c.file_keys()]
        if owners:
            misplaced[key] = owners
        else:
            problems.append(
                f"Unknown key '{key}' {head} {place((key,))}{suggest(key, cls.file_keys())}"
            )
        del data[key]
    if misplaced:
        first, owners = next(iter(misplaced.items()))
        keys = ", ".join(f"'{k}'" for k in misplaced)
        problems.insert(
            0,
            (
                f"Key{'s' if len(misplaced) > 1 else ''} {keys} {head} {place((first,))} "
                f"appl{'y' if len(misplaced) > 1 else 'ies'} to {' and '.join(owners)} profiles, "
                f"not to type {kind}: remove {'them' if len(misplaced) > 1 else 'it'} "
                f"(or set type: {owners[-1]})"
            ),
        )
    try:
        profile = cls.model_validate({**data, "name": name, "source": str(source.path)})
    except ValidationError as exc:
        problems += [_describe(error, head, place) for error in exc.errors()]
    if problems:
        raise ProfileError("; ".join(problems))
    return profile


def _describe(error: Any, head: str, place: Any) -> str:
    """One line for one pydantic error: what, where, how to fix."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p in {"int", "str"}))
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "profile_check":
        loc = (*loc, ctx["key"])
        return f"Invalid value for {format_path(loc)} {head} {place(loc)}: {ctx['reason']}"
    if kind == "extra_forbidden":
        choices = list(Adapt.model_fields) if loc[:1] == ("adapt",) else []
        return (
            f"Unknown key '{loc[-1]}' in {format_path(loc[:-1])} {head} {place(loc)}"
            f"{suggest(str(loc[-1]), choices)}"
        )
    got = error.get("input")
    got_text = f", got {got!r}" if not isinstance(got, (dict, list)) else ""
    if kind == "literal_error":
        what = "expected " + error["msg"].removeprefix("Input should be ") + got_text
    elif kind == "model_type" and loc == ("adapt",):
        what = f"expected a mapping such as {{minimum: 0, maximum: 4}}{got_text}"
    elif kind in _TYPE_WORDS:
        what = f"expected {_TYPE_WORDS[kind]}{got_text}"
    else:
        what = error["msg"].removeprefix("Value error, ")
        what += got_text if kind.startswith(("greater", "less")) else ""
    return f"Invalid value for {format_path(loc)} {head} {place(loc)}: {what}"
