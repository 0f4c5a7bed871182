"""A sweep's metric against one of its parameters, as a PNG: the mean over repeats at
each value, with a min-max band, one line per value of a ``by`` parameter.

Used by ``sweepflow plot`` and, at the end of a sweep, by the run-job flow
(:func:`publish_sweep_plot`: the PNG on the sweep's MLflow parent run and, inline, as
a Prefect markdown artifact of the flow run). The series are built by pure functions,
tested without drawing; matplotlib (Agg canvas, no pyplot state) is imported only by
:func:`render`, Prefect only by :func:`publish_sweep_plot`.

The rules:

- An axis is logarithmic when all its values are positive and the largest is at
  least 100 times the smallest (two decades or more), else linear (:func:`scale`).
- x is numeric when every value parses as a finite number (sorted by value), else
  categorical (evenly spaced, in the order the trials have them; markers with min-max
  error bars instead of a line and a band).
- Trials at the same x (of the same ``by`` value) are repeats, e.g. seeds: the line is
  their mean and the band spans their minimum to maximum. Min-max rather than ± 1 sd:
  with a handful of seeds an sd is itself a rough estimate, and the band then shows
  values that were actually measured (never below zero on a log axis).
"""

from __future__ import annotations

import base64
import difflib
import io
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sweepflow.errors import SweepflowError

__all__ = [
    "Chart",
    "PlotError",
    "Point",
    "Series",
    "auto_axes",
    "chart",
    "figure",
    "file_name",
    "is_repeat",
    "publish_sweep_plot",
    "render",
    "scale",
]

Point = tuple[Mapping[str, str], Mapping[str, float]]
"""One trial: its params (as stored, strings) and its metrics."""

_DECADES = 2.0  # an axis spanning this many powers of ten (or more) is drawn log-scaled


class PlotError(SweepflowError, ValueError):
    """A parameter or metric to plot that no trial has, or no trial to plot."""


@dataclass(frozen=True)
class Series:
    """One line: at each x, the mean of the repeats' y and their min-max band.

    Attributes:
        label: ``by=value`` of this line, or None when there is one line.
        xs: The x values (numbers, or strings on a categorical axis), in axis order.
        mean: The mean y at each x.
        low: The smallest y at each x.
        high: The largest y at each x.
        counts: The number of trials (repeats) at each x.
    """

    label: str | None
    xs: tuple[float | str, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Chart:
    """What to draw: the series and the axes' scales.

    Attributes:
        x: The parameter on the x axis.
        y: The metric on the y axis.
        by: The parameter with one line per value, or None.
        series: The lines, in legend order.
        categories: The x values in axis order when x is categorical, else None.
        xscale: ``"log"`` or ``"linear"`` (see :func:`scale`).
        yscale: Likewise for y.
        repeats: The other parameters that vary between the trials of one point (the
            mean is over them), sorted.
        trials: The number of trials drawn.
    """

    x: str
    y: str
    by: str | None
    series: tuple[Series, ...]
    categories: tuple[str, ...] | None
    xscale: Literal["linear", "log"]
    yscale: Literal["linear", "log"]
    repeats: tuple[str, ...]
    trials: int


def scale(values: Iterable[float]) -> Literal["linear", "log"]:
    """``"log"`` when every value is positive and they span two decades or more.

    >>> scale([1e-4, 1e-3, 1e-2, 1e-1])
    'log'
    >>> scale([1, 10, 99])
    'linear'
    >>> scale([0.0, 1, 1000])
    'linear'
    >>> scale([])
    'linear'
    """
    numbers = [v for v in values if math.isfinite(v)]
    if not numbers or min(numbers) <= 0:
        return "linear"
    return "log" if math.log10(max(numbers) / min(numbers)) >= _DECADES else "linear"


def is_repeat(name: str) -> bool:
    """Whether a parameter names a repeat rather than a setting (a seed): its last
    dotted part is ``seed``, ends in ``_seed``, or is ``repeat`` / ``replicate``.

    >>> [is_repeat(n) for n in ("seed", "data.seed", "init_seed", "repeat", "lr", "seeds")]
    [True, True, True, True, False, False]
    """
    last = name.rpartition(".")[2].lower()
    return bool(re.fullmatch(r"(.*_)?seed|repeat|replicate", last))


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _unknown(flag: str, what: str, name: str, known: Iterable[str]) -> PlotError:
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return PlotError(
        f"{flag} {name!r}: no finished trial has the {what} {name!r}; {hint}"
        f"{what}s: {', '.join(names) or '(none)'}"
    )


def _order(values: Iterable[str]) -> list[str]:
    """Distinct values: by number when all are numbers, else as they first appear."""
    distinct = list(dict.fromkeys(values))
    numbers = {v: _number(v) for v in distinct}
    if all(n is not None for n in numbers.values()):
        return sorted(distinct, key=lambda v: numbers[v] or 0.0)
    return distinct


def chart(
    points: Sequence[Point],
    x: str,
    y: str,
    by: str | None = None,
    flags: tuple[str, str, str] = ("x", "y", "by"),
) -> Chart:
    """Group the trials into lines and points (see the module's rules).

    Trials without ``x``, ``by`` or a finite ``y`` are left out.

    Args:
        points: The trials (params, metrics).
        x: The parameter on the x axis.
        y: The metric on the y axis.
        by: A parameter to draw one line per value of, or None.
        flags: How the errors name x, y and by (the command line's ``--x``, ...).

    Raises:
        PlotError: No trial has ``x`` or ``by`` (the message lists the parameters) or
            ``y`` (it lists the metrics), or none has all of them.

    >>> c = chart([({"lr": "0.1", "seed": "0"}, {"loss": 1.0}),
    ...            ({"lr": "0.1", "seed": "1"}, {"loss": 3.0}),
    ...            ({"lr": "1e-3", "seed": "0"}, {"loss": 5.0})], "lr", "loss")
    >>> c.series[0].xs, c.series[0].mean, c.series[0].low, c.series[0].high
    ((0.001, 0.1), (5.0, 2.0), (5.0, 1.0), (5.0, 3.0))
    >>> c.repeats, c.xscale
    (('seed',), 'log')
    """
    params = {k for p, _ in points for k in p}
    for flag, key in ((flags[0], x), (flags[2], by)):
        if key is not None and key not in params:
            raise _unknown(flag, "parameter", key, params)
    if not any(y in m for _, m in points):
        raise _unknown(flags[1], "metric", y, (k for _, m in points for k in m))
    kept = [
        (p, float(m[y]))
        for p, m in points
        if x in p and (by is None or by in p) and y in m and math.isfinite(m[y])
    ]
    if not kept:
        raise PlotError(f"no finished trial has {x}, {y}{f' and {by}' if by else ''} all set")
    xs = _order(p[x] for p, _ in kept)
    numeric = all(_number(v) is not None for v in xs)

    def place(text: str) -> float | str:  # where a value goes on the axis
        number = _number(text)
        return number if numeric and number is not None else text

    groups = _order(p[by] for p, _ in kept) if by is not None else [None]
    series = []
    for group in groups:
        at: dict[float | str, list[float]] = {}
        for p, value in kept:
            if by is None or p[by] == group:
                at.setdefault(place(p[x]), []).append(value)
        axis = [place(v) for v in xs if place(v) in at]
        axis = list(dict.fromkeys(axis))  # 0.1 and 1e-1 are one point
        values = [at[v] for v in axis]
        series.append(
            Series(
                label=None if by is None else f"{by}={group}",
                xs=tuple(axis),
                mean=tuple(math.fsum(v) / len(v) for v in values),
                low=tuple(min(v) for v in values),
                high=tuple(max(v) for v in values),
                counts=tuple(len(v) for v in values),
            )
        )
    fixed = {x, by}
    repeats = sorted(
        k for k in {k for p, _ in kept for k in p} - fixed if len({p.get(k) for p, _ in kept}) > 1
    )
    return Chart(
        x=x,
        y=y,
        by=by,
        series=tuple(series),
        categories=None if numeric else tuple(xs),
        xscale=scale(v for v in map(_number, xs) if v is not None) if numeric else "linear",
        yscale=scale(value for _, value in kept),
        repeats=tuple(repeats),
        trials=len(kept),
    )


def auto_axes(points: Sequence[Point], target: str | None = None) -> tuple[str, str] | None:
    """What a sweep's own plot shows, ``(x, y)``, or None when it gets none.

    A sweep gets one when exactly one parameter varies between its trials, seeds and
    other repeats (:func:`is_repeat`) aside, that parameter is numeric, and the trials
    report a metric: ``target`` if one has it, else the first metric a trial reported
    (as the trial table's first metric column).

    >>> grid = [({"lr": lr, "seed": s, "epochs": "3"}, {"loss": 1.0})
    ...         for lr in ("0.1", "0.01") for s in ("0", "1")]
    >>> auto_axes(grid)
    ('lr', 'loss')
    >>> auto_axes([({"model": m}, {"loss": 1.0}) for m in ("cnn", "mlp")]) is None
    True
    """
    seen: list[str] = []
    for _, metrics in points:
        seen.extend(name for name in metrics if name not in seen)
    y = target if target in seen else (seen[0] if seen else None)
    if y is None:
        return None
    keys = {k for p, _ in points for k in p}
    varying = [k for k in keys if len({p.get(k) for p, _ in points}) > 1 and not is_repeat(k)]
    if len(varying) != 1:
        return None
    x = varying[0]
    values = {_number(p.get(x)) for p, m in points if math.isfinite(m.get(y, math.nan))}
    if None in values or len(values) < 2:
        return None
    return x, y


def file_name(job: str, y: str, x: str) -> str:
    """The default file name of a plot: ``<job>-<y>-vs-<x>.png`` (no path separators).

    >>> file_name("fit", "val/loss", "lr")
    'fit-val_loss-vs-lr.png'
    """
    return re.sub(r"[^\w.=+-]", "_", f"{job}-{y}-vs-{x}") + ".png"


def _subtitle(data: Chart) -> str:
    parts = [f"{data.trials} trials"]
    if data.repeats:
        parts.append(f"mean over {', '.join(data.repeats)}, spread min-max")
    return "; ".join(parts)


def figure(data: Chart, title: str) -> Any:
    """The matplotlib ``Figure`` of ``data`` (on an Agg canvas, no pyplot state);
    ``title`` names the job and the sweep.

    A numeric x gets a line through the means and a min-max band; a categorical x a
    marker at each mean with min-max error bars, the lines side by side.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    drawing = Figure(figsize=(7.0, 4.6), layout="constrained")
    FigureCanvasAgg(drawing)
    axes = drawing.subplots()
    axes.set_xscale(data.xscale)  # before the ticks: setting a scale resets them
    axes.set_yscale(data.yscale)
    spread = any(n > 1 for s in data.series for n in s.counts)
    cats = data.categories
    for number, line in enumerate(data.series):
        color = f"C{number % 10}"
        name = line.label or (f"mean of {data.y}" if spread else data.y)
        if cats is None:
            axes.plot(line.xs, line.mean, marker="o", color=color, label=name, linewidth=1.5)
            if spread:
                band = "min-max" if line.label is None else None
                axes.fill_between(line.xs, line.low, line.high, color=color, alpha=0.2, label=band)
            continue
        shift = (number - (len(data.series) - 1) / 2) * 0.1
        xs = [cats.index(str(v)) + shift for v in line.xs]
        below = [m - lo for m, lo in zip(line.mean, line.low, strict=True)]
        above = [hi - m for m, hi in zip(line.mean, line.high, strict=True)]
        axes.errorbar(
            xs, line.mean, yerr=[below, above], fmt="o", color=color, capsize=4, label=name
        )
    if cats is not None:
        long = max(len(c) for c in cats) > 8
        axes.set_xticks(range(len(cats)), cats, rotation=30 if long else 0)
        axes.set_xlim(-0.5, len(cats) - 0.5)
    axes.set_xlabel(data.x + (" (log scale)" if data.xscale == "log" else ""))
    axes.set_ylabel(data.y + (" (log scale)" if data.yscale == "log" else ""))
    axes.grid(True, which="major", alpha=0.3)
    if data.by is not None or spread:
        axes.legend(title=data.by, fontsize="small")
    axes.set_title(f"{title}\n{_subtitle(data)}", fontsize="medium")
    return drawing


def render(data: Chart, path: Path, title: str) -> Path:
    """Draw ``data`` (:func:`figure`) into the PNG ``path``, written whole (a temporary
    file renamed); return ``path``."""
    buffer = io.BytesIO()
    figure(data, title).savefig(buffer, format="png", dpi=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, path)
    return path


def publish_sweep_plot(
    tracker: Any, parent: str, job: str, specs: Sequence[Any], rows: Sequence[Any], state: Path
) -> Path | None:
    """At the end of a sweep: its plot (see :func:`auto_axes`) as the artifact
    ``plots/<file>`` of the parent run and as a markdown artifact (the PNG inline) of
    the flow run; return its path, None when the sweep gets no plot.

    Args:
        tracker: The job's ``Tracker`` (its MLflow client logs the file).
        parent: The sweep's parent run id.
        job: The job's key.
        specs: The trial specs (their ``params``), in the order of ``rows``.
        rows: The trials' outcomes (``status``, ``metrics``).
        state: The state folder; the PNG goes to ``<state>/plots``.

    Never raises: the sweep's results are what matters, so a plot that fails is a
    warning on the flow run's log.
    """
    try:
        points: list[Point] = [
            (spec.params, row.metrics)
            for spec, row in zip(specs, rows, strict=True)
            if row.status in ("done", "cached")
        ]
        axes = auto_axes(points)
        if axes is None:
            return None  # matplotlib is not even imported
        x, y = axes
        data = chart(points, x, y)
        path = render(data, state / "plots" / file_name(job, y, x), f"{job}: sweep {parent[:8]}")
        _log_file(tracker, parent, path)
        _flow_artifact(job, parent, path, data)
        return path
    except Exception as exc:
        _warn("no plot of the sweep of %r: %s: %s", job, type(exc).__name__, exc)
        return None


def _log_file(tracker: Any, parent: str, path: Path) -> None:
    """``path`` as the artifact ``plots/<name>`` of the parent run: copied into the run's
    artifact folder when the tracker writes SQL rows to a store with local artifacts
    (as ``Tracker.log_text`` does; opening MLflow's client costs seconds), else
    through the client's ``log_artifact``."""
    from sweepflow.tracking.uri import local_path

    bulk = getattr(tracker, "bulk", None)
    root = local_path(bulk.artifact_uri_of(parent)) if bulk is not None else None
    if root is None:
        tracker.client.log_artifact(parent, str(path), "plots")
        return
    (root / "plots").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, root / "plots" / path.name)


def _warn(message: str, *args: object) -> None:
    """A warning on the flow run's log (the module's logger outside a flow run)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        logger: Any = get_run_logger()
    except MissingContextError:
        logger = logging.getLogger(__name__)
    logger.warning(message, *args)


def _flow_artifact(job: str, parent: str, path: Path, data: Chart) -> None:
    from prefect.artifacts import create_markdown_artifact

    image = base64.b64encode(path.read_bytes()).decode()
    text = (
        f"# `{job}`: {data.y} vs {data.x}\n\n"
        f"![{data.y} vs {data.x}](data:image/png;base64,{image})\n\n"
        f"{_subtitle(data)}. Also the artifact `plots/{path.name}` of MLflow run `{parent}`.\n"
    )
    key = f"plot-{job.lower().replace('_', '-')}"[:64]
    create_markdown_artifact(text, key=key, description=f"{data.y} vs {data.x}")
