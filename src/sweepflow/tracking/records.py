"""What the writer hands to a route: new runs, finished runs, runs left RUNNING.

Records are plain data. :func:`new_run` and :func:`cleaned` apply
:mod:`sweepflow.tracking.rules` once, so both routes write exactly the same thing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweepflow.tracking import rules

__all__ = [
    "Best",
    "Finished",
    "NewRun",
    "Stale",
    "cleaned",
    "new_run",
    "new_run_id",
    "parent_summary",
    "run_name",
    "varying",
]

#: How long a run name made from parameters may be (longer ones end in "…").
NAME_LENGTH = 60


def new_run_id() -> str:
    """A run id as MLflow makes them (32 hex digits)."""
    return uuid.uuid4().hex


def varying(trials: Iterable[Mapping[str, str]]) -> list[str]:
    """The parameter keys whose value differs between ``trials`` (or that some lack),
    in the order they first appear: what tells the trials of a sweep apart.

    >>> varying([{"lr": "0.1", "seed": "0", "n": "5"}, {"lr": "0.2", "seed": "1", "n": "5"}])
    ['lr', 'seed']
    >>> varying([{"lr": "0.1"}, {"lr": "0.1", "x": "1"}]), varying([{"lr": "0.1"}])
    (['x'], [])
    """
    values: dict[str, set[str | None]] = {}
    trials = list(trials)
    for params in trials:
        for key in params:
            values.setdefault(key, set())
    for params in trials:
        for key, seen in values.items():
            seen.add(params.get(key))
    return [key for key, seen in values.items() if len(seen) > 1]


def run_name(
    params: Mapping[str, str], keys: Iterable[str] | None, fallback: str, limit: int = NAME_LENGTH
) -> str:
    """A trial run's name: ``key=value`` of its ``keys`` (default: every param),
    else ``fallback``; cut to ``limit`` characters with "…".

    >>> run_name({"lr": "0.01", "seed": "2", "n": "5"}, ["lr", "seed"], "t-0")
    'lr=0.01 seed=2'
    >>> run_name({"n": "5"}, [], "n=5"), run_name({}, None, "submit-3")
    ('n=5', 'submit-3')
    >>> long = run_name({"path": "x" * 80}, None, "")
    >>> len(long), long[:8], long[-2:]
    (60, 'path=xxx', 'x…')
    """
    chosen = params if keys is None else {k: params[k] for k in keys if k in params}
    text = " ".join(f"{k}={v}" for k, v in chosen.items()) or fallback
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class NewRun:
    """A run to create, with its tags and params from the first moment: RUNNING, or
    SCHEDULED (a trial queued to run; :meth:`mark_running` when it is submitted)."""

    run_id: str
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    start_ms: int
    status: str = "RUNNING"


@dataclass
class Finished:
    """A finished run: how it ended and what it logged.

    ``params`` already in the run are kept as they are (MLflow refuses to change a
    param); ``tags`` overwrite; ``start_ms`` (the trial's own start) replaces the
    run's creation time where the route can change it.
    """

    run_id: str
    status: str | None  # FINISHED, FAILED or KILLED; None leaves the run as it is
    end_ms: int
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)  # key, value, step, ts
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)  # file, folder in run
    start_ms: int | None = None


@dataclass
class Stale:
    """A run found by status (e.g. left RUNNING): its id, tags, params and status."""

    run_id: str
    tags: dict[str, str]
    params: dict[str, str]
    status: str = "RUNNING"


def new_run(
    run_id: str,
    name: str,
    tags: dict[str, Any],
    params: dict[str, Any] | None,
    start_ms: int,
    parent_id: str | None = None,
    status: str = "RUNNING",
) -> NewRun:
    """A new run under MLflow's rules (default tags, valid keys, cut values)."""
    clean, notes = rules.clean_params(params or {})
    merged = rules.run_tags(name, {**tags, **notes}, parent_id)
    return NewRun(run_id, merged["mlflow.runName"], merged, clean, start_ms, status)


def cleaned(record: Finished) -> Finished:
    """``record`` under MLflow's rules (valid keys, cut values, no repeated points)."""
    params, notes = rules.clean_params(record.params)
    return replace(
        record,
        params=params,
        tags=rules.clean_tags({**record.tags, **notes}),
        metrics=rules.clean_metrics(record.metrics),
    )


@dataclass(frozen=True)
class Best:
    """The best trial of one execution: its run, params and metrics, and the target
    ``metric`` it is best by (highest if ``maximize``, else lowest)."""

    run_id: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    metric: str
    maximize: bool = False


_SHOWN = {"done": "done", "cached": "cached", "failed": "failed", "pruned": "pruned"}
_SHOWN["cancelled"] = "not started"
_TRAINING = "workflowType=machine_learning"  # MLflow's UI stays in model-training mode
_NOTE = (
    "This run's params and metrics are the best trial's; `best_%s` is its value, "
    "`trials_done`, `trials_cached`… the counts."
)


def parent_summary(
    run_id: str, job: str, experiment_id: str, counts: Mapping[str, int], best: Best | None
) -> Finished:
    """What a parent run gets when its sweep ends, besides its ``trials_*`` counts.

    The best trial's value as ``best_<metric>``; its params and metrics under their own
    names (so the parent's row in MLflow's runs view fills the same columns as its
    trials); tags ``sweepflow.best_run_id``, ``.best_run_name``, ``.best_metric`` and
    ``.best_direction``; and a markdown description (``mlflow.note.content``), which
    MLflow's UI shows on the run's page.

    >>> best = Best("abc", "lr=0.1", {"lr": "0.1"}, {"loss": 0.5}, "loss")
    >>> record = parent_summary("p", "fit", "1", {"done": 2, "total": 2}, best)
    >>> record.metrics, record.params, record.tags["sweepflow.best_run_id"]
    ([('best_loss', 0.5, 0, 0), ('loss', 0.5, 0, 0)], {'lr': '0.1'}, 'abc')
    >>> print(record.tags["mlflow.note.content"])  # doctest: +ELLIPSIS
    **fit**: 2 trials: 2 done.
    <BLANKLINE>
    Best trial by `loss` (lowest): [lr=0.1](#/experiments/1/runs/abc?...), loss = 0.5.
    <BLANKLINE>
    This run's params and metrics are the best trial's; `best_loss` is its value, ...
    """
    shown = ", ".join(f"{counts[k]} {what}" for k, what in _SHOWN.items() if counts.get(k))
    total = counts.get("total", sum(counts.get(k, 0) for k in _SHOWN))
    lines = [f"**{job}**: {total} trial{'s' if total != 1 else ''}: {shown or 'none ran'}."]
    if best is None:
        lines += ["", "No finished trial reported a metric."]
        return Finished(run_id, None, 0, tags={"mlflow.note.content": "\n".join(lines)})
    value = best.metrics[best.metric]
    link = f"[{best.name}](#/experiments/{experiment_id}/runs/{best.run_id}?{_TRAINING})"
    how = "highest" if best.maximize else "lowest"
    what = f"`{best.metric}` ({how}): {link if best.run_id else best.name}"
    lines += ["", f"Best trial by {what}, {best.metric} = {value:.6g}.", "", _NOTE % best.metric]
    metrics = [(f"best_{best.metric}", value, 0, 0)]
    metrics += [(k, v, 0, 0) for k, v in best.metrics.items() if not k.startswith("trials_")]
    tags = {
        "sweepflow.best_run_id": best.run_id,
        "sweepflow.best_run_name": best.name,
        "sweepflow.best_metric": best.metric,
        "sweepflow.best_direction": "maximize" if best.maximize else "minimize",
        "mlflow.note.content": "\n".join(lines),
    }
    return Finished(run_id, None, 0, dict(best.params), metrics, tags)
