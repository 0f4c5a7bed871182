"""The profile models: one pydantic class per ``type`` (local, dask-local, slurm).

They validate a profile's values, resolve it, and build what runs tasks: Dask cluster
keyword arguments, the SLURM job script, the Prefect task runner. Loading files and
``--set`` items is :mod:`sweepflow.spec.profiles`. Nothing here imports Dask or Prefect
until :meth:`Profile.task_runner` or :meth:`Profile.job_script` is called.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import model_validator as _model_validator
from pydantic_core import PydanticCustomError

from sweepflow.errors import ProfileError

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
]

DEFAULT_PROFILE = "local"
# What ``SLURMCluster(...).job_script()`` shows before its scheduler has an address, and
# the worker name it uses there; real jobs get the scheduler's address and their own name.
SCHEDULER_PLACEHOLDER = "tcp://<insert-scheduler-address-here>:8786"
WORKER_NAME_PLACEHOLDER = "dummy-name"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIZE = re.compile(r"\d+(?:\.\d+)?\s*(?:[kmgtp]i?b?|b)", re.IGNORECASE)
_WALLTIME = re.compile(r"\d+(?::\d{1,2}){0,2}|\d+-\d{1,2}(?::\d{1,2}){0,2}")


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
    float64: Literal["any", "cpu"] = Field(
        "any",
        description="Where float64 work runs (LLC targets of precision float64): cpu keeps "
        "it off the GPUs, most of which are slow at float64; any: where it lands.",
    )

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
