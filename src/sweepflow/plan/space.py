"""Search spaces: the typed sweep objects of an ``optimize:`` job as distributions.

Pure Python (no Optuna): a :class:`Dimension` says what an Optuna distribution will be
(int or float range, stepped or log, categorical), so a dry run can print the space and
a bad space fails before anything starts. :mod:`sweepflow.search.study` turns dimensions into
Optuna distributions. The same parsed objects drive grid expansion.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal as TypingLiteral

from sweepflow.errors import JobError
from sweepflow.plan.expansion import Plan
from sweepflow.syntax.nodes import LinSpace, Literal, LogSpace, Node, Param, Range, ValueList

__all__ = ["Dimension", "SearchSpace", "dimension", "format_value", "search_space"]


def format_value(value: object) -> str:
    """A sampled value as the text a program receives (and the cache key hashes).

    Floats keep 12 significant digits, so a stepped value prints as written.

    >>> format_value(0.30000000000000004), format_value(3), format_value(1e-05)
    ('0.3', '3', '1e-05')
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


@dataclass(frozen=True)
class Dimension:
    """One searched parameter.

    Attributes:
        key: The parameter's key.
        kind: ``int``, ``float`` or ``categorical``.
        low, high: Bounds (inclusive) of a range.
        step: The step of a stepped range, or None (continuous float).
        log: Log-uniform.
        choices: The values of a categorical dimension: numbers where the text reads
            back unchanged, else the text.
        grid: The values a grid search visits, numbers for ranges (None: continuous).
    """

    key: str
    kind: TypingLiteral["int", "float", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple[str | int | float, ...] = ()
    grid: tuple[str | int | float, ...] | None = None

    def describe(self) -> str:
        """``lr: float in [1e-05, 0.1], log``."""
        if self.kind == "categorical":
            return f"{self.key}: one of {', '.join(map(format_value, self.choices))}"
        extra = ", log" if self.log else f", step {format_value(self.step)}" if self.step else ""
        low, high = format_value(self.low), format_value(self.high)
        return f"{self.key}: {self.kind} in [{low}, {high}]{extra}"


@dataclass(frozen=True)
class SearchSpace:
    """The searched dimensions, the fixed parameters, and the verbatim ``add`` items."""

    dimensions: tuple[Dimension, ...]
    fixed: dict[str, str]
    add: tuple[str, ...]

    def grid_size(self) -> int | None:
        """Points of the full grid, or None if a dimension is continuous."""
        size = 1
        for dim in self.dimensions:
            if dim.grid is None:
                return None
            size *= len(dim.grid)
        return size


_GRID_MAX = 100_000  # a longer range is searched, never listed for a grid


def _scale(exponent: str) -> Decimal:
    return Decimal(10) ** int(exponent[1:]) if exponent else Decimal(1)


def _range(key: str, node: Range, exponent: str) -> Dimension:
    scale = _scale(node.exponent) * _scale(exponent)
    if not node.stepped and not node.integer:  # a float range without a step
        low, high = sorted((node.start * scale, node.stop * scale))
        return Dimension(key, "float", float(low), float(high), None, grid=None)
    last = node.start + (len(node) - 1) * node.step  # the stop may lie between steps
    low, high = sorted((node.start * scale, last * scale))
    step = abs(node.step) * scale
    values = [Decimal(v) for v in Param(key, node, exponent)] if len(node) <= _GRID_MAX else None
    if node.integer and all(v == v.to_integral_value() for v in (low, high, step)):
        ints = tuple(int(v) for v in values) if values else None
        return Dimension(key, "int", int(low), int(high), int(step), grid=ints)
    floats = tuple(float(v) for v in values) if values else None
    return Dimension(key, "float", float(low), float(high), float(step), grid=floats)


def dimension(job_error, param: Param) -> Dimension | str:
    """The dimension of ``param``, or its text when it is a single fixed value
    (``job_error(message)`` makes the error of a bad one)."""
    node: Node = param.values
    key, exponent = param.key, param.exponent
    if isinstance(node, Range) and (len(node) > 1 or not (node.stepped or node.integer)):
        return _range(key, node, exponent)  # an unstepped float range is continuous
    if isinstance(node, (LogSpace, LinSpace)):
        scale = _scale(exponent)
        low, high = float(node.start * scale), float(node.stop * scale)
        grid = tuple(float(v) for v in Param(key, node, exponent)) if node.num else None
        if low >= high:
            raise job_error(f"'{key}' has an empty range [{low:g}, {high:g}]: put start below stop")
        return Dimension(key, "float", low, high, None, isinstance(node, LogSpace), grid=grid)
    if isinstance(node, ValueList) and any(
        isinstance(item, (LogSpace, LinSpace)) and not item.num for item in node.items
    ):
        raise job_error(
            f"'{key}' mixes a continuous range with a list: a dimension is one range or "
            "one list of values"
        )
    values = tuple(param)
    if len(values) == 1 and isinstance(node, (Literal, Range)):
        return values[0]
    if len(set(values)) != len(values):
        raise job_error(f"'{key}' lists a value twice ({', '.join(values)}): keep each once")
    typed = tuple(_typed(v) for v in values)
    return Dimension(key, "categorical", choices=typed, grid=typed)


def _typed(text: str) -> str | int | float:
    """A categorical choice as a number when it reads back as exactly the same text
    (``3``, ``0.1``), so studies and plots show numbers; otherwise the text.

    >>> _typed("3"), _typed("0.1"), _typed("1e-3"), _typed("007"), _typed("relu")
    (3, 0.1, '1e-3', '007', 'relu')
    """
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        if format_value(value) == text:
            return value
    return text


def search_space(plan: Plan) -> SearchSpace:
    """The search space of an ``optimize:`` job's plan.

    Raises:
        JobError: A dimension that is not a range, a log range or a list.
    """
    if plan.space is None:
        raise plan.job.error("has no optimize: section; it is a sweep", "optimize")

    def job_error(message: str) -> JobError:
        return plan.job.error(f"has a bad search space: {message}", "optimize", "space")

    dimensions: list[Dimension] = []
    fixed: dict[str, str] = {}
    for param in plan.space.each:
        assert isinstance(param, Param)
        dim = dimension(job_error, param)
        if isinstance(dim, str):
            fixed[param.key] = dim
        else:
            dimensions.append(dim)
    if not dimensions:
        raise job_error("nothing to search: give a range (x=0:1), log(a:b) or a list (a,b)")
    space = SearchSpace(tuple(dimensions), fixed, tuple(plan.space.add))
    _check_settings(plan, space)
    return space


def _check_settings(plan: Plan, space: SearchSpace) -> None:
    """Settings that do not fit the space or each other (before anything starts)."""
    settings = plan.job.optimize
    assert settings is not None

    def error(message: str, key: str) -> JobError:
        return plan.job.error(message, "optimize", key)

    metrics, direction = settings.metrics, settings.direction
    if not isinstance(direction, str) and len(direction) != len(metrics):
        raise error(
            f"has {len(metrics)} metric(s) but {len(direction)} directions: give one "
            "direction per metric, or a single one for all",
            "direction",
        )
    if len(set(metrics)) != len(metrics):
        raise error("names a metric twice in optimize.metric: keep each once", "metric")
    if settings.sampler == "cmaes" and len(metrics) > 1:
        raise error(
            "uses sampler: cmaes with several metrics; CMA-ES is single-objective: use tpe",
            "sampler",
        )
    if settings.pruner != "none" and len(metrics) > 1:
        raise error(
            f"uses pruner: {settings.pruner} with several metrics: pruning needs one metric",
            "pruner",
        )
    if settings.sampler == "grid":
        for dim in space.dimensions:
            if dim.grid is None:
                raise error(
                    f"uses sampler: grid but '{dim.key}' is continuous: give it a step "
                    f"({dim.key}={format_value(dim.low)}:{format_value(dim.high)}:STEP), a "
                    "count (log(a:b:n)) or a list of values",
                    "sampler",
                )
