"""The parts of a job: its parameter sets, its cron schedule and its search settings.

Frozen pydantic models that reject unknown keys; :mod:`sweepflow.spec.jobs` puts them
together into a job and reads them from a file.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sweepflow.search.locations import storage_problem, study_name_problem

__all__ = ["Optimize", "Schedule", "SpecModel", "SweepSet", "joined_words", "seeds_spec"]

_CRON_FIELD = re.compile(r"[\d*/,\-A-Za-z?LW#]+")


def joined_words(value: Any) -> Any:
    """Accept a list of strings where a sweep string is expected (joined by spaces)."""
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return " ".join(str(v) for v in value)
    return value


def seeds_spec(value: Any) -> Any:
    """``seeds`` is a count or a sweep token; reject what would be silently coerced."""
    if (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    ):
        return value
    raise ValueError(f"expected a count (3) or a token such as seed=0:4, got {value!r}")


class SpecModel(BaseModel):
    """A part of a job file: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SweepSet(SpecModel):
    """One parameter set of a job.

    Attributes:
        each: Tokens swept across batches (one batch per combination).
        all: Tokens swept inside each batch (``key=v1,v2`` items).
        add: Arguments appended verbatim; merged key by key with the job's ``add``.
        zip: Linked tokens advanced together (equal lengths), e.g. ``lr=0.1,0.01 wd=1,2``.
        seeds: Replicates: ``N`` means ``seed=0:N-1``; or a token such as ``seed=0:4``.
    """

    each: str = Field("", description="Tokens swept across batches.")
    all: str = Field("", description="Tokens swept inside each batch.")
    add: str | None = Field(None, description="Arguments appended verbatim.")
    zip: str = Field("", description="Linked parameters advanced together.")
    seeds: int | str | None = Field(None, description="Replicates: N or seed=0:4.")

    _each = field_validator("each", "all", "add", "zip", mode="before")(joined_words)
    _seeds = field_validator("seeds", mode="before")(seeds_spec)


class Schedule(SpecModel):
    """A cron schedule for the job's deployment."""

    cron: str = Field(description="Five-field cron expression, e.g. '0 3 * * *'.")
    timezone: str | None = Field(None, description="IANA time zone, e.g. 'Europe/Berlin'.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
            raise ValueError(
                f"'{value}' is not a five-field cron expression (minute hour day month "
                "weekday), e.g. '0 3 * * *'"
            )
        return value


Direction = Literal["minimize", "maximize"]


class Optimize(SpecModel):
    """A search instead of a sweep: trials asked from an Optuna study.

    Attributes:
        metric: The metric (or metrics, multi-objective) each trial reports.
        direction: ``minimize`` / ``maximize``, one per metric.
        space: The search space in sweep syntax: ``a:b`` ranges (int or float; a step
            makes them stepped), ``log(a:b)`` log-uniform, comma lists categorical,
            single values fixed.
        storage: Where the study lives (see :mod:`sweepflow.search.locations`): a
            relative path never leaves the state folder.
    """

    metric: str | tuple[str, ...] = Field(description="Metric(s) each trial reports.")
    direction: Direction | tuple[Direction, ...] = Field(
        "minimize", description="minimize or maximize (a list for several metrics)."
    )
    space: str = Field(description="Search space in sweep syntax, e.g. lr=log(1e-5:1e-1).")
    n_trials: int | None = Field(
        None, ge=1, description="Trials in the study (default: the grid's size, else 20)."
    )
    parallel: int | None = Field(
        None, ge=1, description="Trials in flight at once (default: the profile's capacity)."
    )
    sampler: Literal["tpe", "random", "cmaes", "grid", "qmc"] = Field(
        "tpe", description="Optuna sampler; TPE asks with constant_liar."
    )
    seed: int | None = Field(0, description="Sampler seed (None: not reproducible).")
    pruner: Literal["none", "median", "hyperband"] = Field(
        "none", description="Stop unpromising trials early (they report steps)."
    )
    storage: str | None = Field(
        None,
        description="Optuna storage: a journal file or a database URL (sqlite:///study.db, "
        "postgresql://...); relative paths are inside the state folder (default: "
        "studies/<study>.journal there).",
    )
    study: str | None = Field(None, description="Study name (default: the job's name).")

    _space = field_validator("space", mode="before")(joined_words)

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str | None) -> str | None:
        problem = None if value is None else storage_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("study")
    @classmethod
    def _study(cls, value: str | None) -> str | None:
        problem = None if value is None else study_name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("metric", "direction", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names, in order."""
        return (self.metric,) if isinstance(self.metric, str) else self.metric

    @property
    def directions(self) -> tuple[str, ...]:
        """One direction per metric (a single direction applies to all)."""
        if isinstance(self.direction, str):
            return (self.direction,) * len(self.metrics)
        return self.direction
