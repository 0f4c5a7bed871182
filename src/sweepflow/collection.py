"""A collection of trial runs, queried in memory: filter, pick, group, sort, tabulate.

:class:`RunCollection` holds :class:`~sweepflow.tracking.snapshot.Run` snapshots (as
:func:`sweepflow.analysis.runs` reads them from MLflow) and never touches MLflow itself;
pandas is imported only by :meth:`RunCollection.to_frame`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from sweepflow.errors import SweepflowError
from sweepflow.tracking.snapshot import Run

__all__ = ["RunCollection", "RunLookupError", "RunQueryError"]

# Filter keys that select run attributes rather than params.
_ATTRIBUTES = ("status", "job")


class RunLookupError(SweepflowError, LookupError):
    """No run, or not exactly one, where the analysis API needed one; or unknown keys."""


class RunQueryError(SweepflowError, ValueError):
    """An invalid argument to the analysis API (e.g. a ``mode`` other than min/max)."""


def _resolve_key(key: str, runs: Sequence[Run]) -> str:
    """A filter/group key as stored: ``a__b`` means ``a.b`` unless ``a__b`` is a param."""
    if key in _ATTRIBUTES or any(key in run.params for run in runs):
        return key
    dotted = key.replace("__", ".")
    if any(dotted in run.params for run in runs):
        return dotted
    if not runs:
        return key
    known = sorted({name for run in runs for name in run.params})
    close = difflib.get_close_matches(dotted, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise RunLookupError(
        f"no run has a param {key!r}; {hint}params: {', '.join(known) or '(none)'}"
        f" (and {', '.join(_ATTRIBUTES)})"
    )


def _value(run: Run, key: str) -> str | None:
    if key in _ATTRIBUTES:
        return getattr(run, key)
    return run.params.get(key)


def _matches(actual: str | None, expected: Any, key: str) -> bool:
    """Whether a stored value (a string, or None if absent) matches a filter value."""
    if callable(expected):
        return actual is not None and bool(expected(actual))
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(expected, (list, tuple, set, frozenset)):
        return any(_matches(actual, one, key) for one in expected)
    if key == "status" or isinstance(expected, bool):
        return actual.lower() == str(expected).lower()
    if actual == str(expected):
        return True
    if isinstance(expected, (int, float)):  # 0.001 matches "1e-3"
        try:
            return float(actual) == float(expected)
        except ValueError:
            return False
    return False


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _describe(conditions: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={'<predicate>' if callable(v) else repr(v)}" for k, v in conditions.items()
    )


class RunCollection(Sequence[Run]):
    """An ordered, immutable list of runs (oldest first) with query helpers.

    Every query returns a new collection; the runs themselves are snapshots.
    """

    def __init__(self, runs: Sequence[Run] = ()) -> None:
        self._runs: tuple[Run, ...] = tuple(runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self._runs)

    @overload
    def __getitem__(self, index: int) -> Run: ...
    @overload
    def __getitem__(self, index: slice) -> RunCollection: ...
    def __getitem__(self, index: int | slice) -> Run | RunCollection:
        if isinstance(index, slice):
            return RunCollection(self._runs[index])
        return self._runs[index]

    def __repr__(self) -> str:
        jobs: dict[str | None, int] = {}
        for run in self._runs:
            jobs[run.job] = jobs.get(run.job, 0) + 1
        parts = ", ".join(f"{job}: {count}" for job, count in jobs.items())
        return f"<RunCollection of {len(self)} runs{f' ({parts})' if parts else ''}>"

    def filter(
        self, predicate: Callable[[Run], bool] | None = None, /, **params: Any
    ) -> RunCollection:
        """Keep the runs that match every condition.

        Args:
            predicate: A function of the run, kept when it returns true.
            **params: Param conditions. A value matches a param's string when equal
                after ``str()`` (numbers also by numeric value, bools case-insensitively);
                a list/tuple/set matches any of its items; a callable is a predicate on the
                param's string; None matches runs without the param. ``status=`` and
                ``job=`` select the run's status and job. Write ``model__depth`` for the
                dotted param ``model.depth``.

        Raises:
            RunLookupError: A key that no run has (with the closest param name).
        """
        conditions = {_resolve_key(key, self._runs): value for key, value in params.items()}
        return RunCollection(
            [
                run
                for run in self._runs
                if (predicate is None or predicate(run))
                and all(_matches(_value(run, k), v, k) for k, v in conditions.items())
            ]
        )

    def get(self, predicate: Callable[[Run], bool] | None = None, /, **params: Any) -> Run:
        """The one run that matches (see :meth:`filter`).

        Raises:
            RunLookupError: None or several match; the message shows the values present,
                or the params that tell the matches apart.
        """
        found = self.filter(predicate, **params)
        if len(found) == 1:
            return found[0]
        what = _describe(params) or ("the predicate" if predicate else "no condition")
        if not found:
            seen = []
            for key in params:
                values = sorted({str(_value(r, _resolve_key(key, self._runs))) for r in self})
                seen.append(
                    f"{key} in {{{', '.join(values[:8])}{', …' if len(values) > 8 else ''}}}"
                )
            hint = f"; present: {'; '.join(seen)}" if seen else ""
            raise RunLookupError(f"no run (of {len(self)}) matches {what}{hint}")
        differing = sorted(
            key
            for key in {k for run in found for k in run.params}
            if len({run.params.get(key) for run in found}) > 1
        )
        hint = (
            f"add one of these keys to choose: {', '.join(differing)}"
            if differing
            else "they have the same params (repeated runs); use .first() or .last()"
        )
        raise RunLookupError(f"{len(found)} runs match {what}, expected exactly one; {hint}")

    def first(self, **params: Any) -> Run:
        """The oldest run (matching ``params``, see :meth:`filter`)."""
        return self._end(0, params)

    def last(self, **params: Any) -> Run:
        """The newest run (matching ``params``, see :meth:`filter`)."""
        return self._end(-1, params)

    def _end(self, index: int, params: dict[str, Any]) -> Run:
        found = self.filter(**params)
        if not found:
            detail = f" matches {_describe(params)}" if params else " (the collection is empty)"
            raise RunLookupError(f"no run{detail}; {len(self)} runs in the collection")
        return found[index]

    @overload
    def group_by(self, key: str, /) -> dict[str | None, RunCollection]: ...
    @overload
    def group_by(self, *keys: str) -> dict[tuple[str | None, ...], RunCollection]: ...
    def group_by(self, *keys: str) -> dict[Any, RunCollection]:
        """Split by the values of params (or ``status`` / ``job``), in order of appearance.

        One key gives ``{value: runs}``; several give ``{(value, ...): runs}``. A run
        without a param has None there.

        Raises:
            RunLookupError: A key that no run has.
        """
        if not keys:
            raise RunQueryError("group_by needs at least one key, e.g. group_by('model')")
        resolved = [_resolve_key(key, self._runs) for key in keys]
        groups: dict[Any, list[Run]] = {}
        for run in self._runs:
            values = tuple(_value(run, key) for key in resolved)
            groups.setdefault(values[0] if len(keys) == 1 else values, []).append(run)
        return {key: RunCollection(members) for key, members in groups.items()}

    def sort(self, metric: str, reverse: bool = False) -> RunCollection:
        """Runs by a metric's latest value (descending if ``reverse``); runs without it
        (or with NaN) come last either way.

        Raises:
            RunLookupError: No run has the metric.
        """
        self._check_metric(metric)
        having = [r for r in self._runs if _number(r.metrics.get(metric)) is not None]
        rest = [r for r in self._runs if _number(r.metrics.get(metric)) is None]
        having.sort(key=lambda run: run.metrics[metric], reverse=reverse)
        return RunCollection(having + rest)

    def best(self, metric: str, mode: Literal["min", "max"] = "min") -> Run:
        """The run with the lowest (``mode="min"``) or highest (``"max"``) metric value.

        Raises:
            RunQueryError: ``mode`` is not min or max.
            RunLookupError: No run has the metric.
        """
        if mode not in ("min", "max"):
            raise RunQueryError(f"mode must be 'min' or 'max', got {mode!r}")
        self._check_metric(metric)
        return self.sort(metric, reverse=mode == "max")[0]

    def _check_metric(self, metric: str) -> None:
        if any(_number(run.metrics.get(metric)) is not None for run in self._runs):
            return
        known = sorted({name for run in self._runs for name in run.metrics})
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RunLookupError(
            f"no run (of {len(self)}) has a value for metric {metric!r}; "
            f"{hint}metrics: {', '.join(known) or '(none)'}"
        )

    def to_frame(self, numeric_params: bool = True) -> Any:
        """A pandas DataFrame with one row per run, in collection order.

        Columns: ``run_id``, ``parent_run_id``, ``job``, ``trial``, ``status``,
        ``start_time``, ``end_time`` (timezone-aware), ``duration`` (seconds); then one
        column per param named as the param (``lr``, ``model.depth``; prefixed
        ``params.`` if that name is taken); ``metrics.<name>`` (latest values); and
        ``tags.<key>`` for tags other than MLflow's own (``mlflow.*``).

        Args:
            numeric_params: Convert a param column to numbers when every value in it
                parses as one (otherwise it stays strings).
        """
        import pandas as pd

        fixed = ["run_id", "parent_run_id", "job", "trial", "status"]
        fixed += ["start_time", "end_time", "duration"]
        params = list(dict.fromkeys(k for run in self._runs for k in run.params))
        metrics = list(dict.fromkeys(k for run in self._runs for k in run.metrics))
        skip = ("sweepflow.job", "sweepflow.trial")
        tags = list(
            dict.fromkeys(
                k
                for run in self._runs
                for k in run.tags
                if not k.startswith("mlflow.") and k not in skip
            )
        )
        names = {k: (f"params.{k}" if k in fixed else k) for k in params}
        rows = []
        for run in self._runs:
            row: dict[str, Any] = {
                "run_id": run.id,
                "parent_run_id": run.parent_id,
                "job": run.job,
                "trial": run.trial,
                "status": run.status,
                "start_time": run.start_time,
                "end_time": run.end_time,
                "duration": run.duration,
            }
            row.update({names[k]: run.params.get(k) for k in params})
            row.update({f"metrics.{k}": run.metrics.get(k, math.nan) for k in metrics})
            row.update({f"tags.{k}": run.tags.get(k) for k in tags})
            rows.append(row)
        columns = fixed + list(names.values()) + [f"metrics.{k}" for k in metrics]
        columns += [f"tags.{k}" for k in tags]
        frame = pd.DataFrame(rows, columns=columns)
        frame["duration"] = frame["duration"].astype(float)
        if numeric_params:
            for column in names.values():
                try:
                    frame[column] = pd.to_numeric(frame[column])
                except (ValueError, TypeError):
                    continue
        return frame
