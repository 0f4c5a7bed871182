"""What ``sweepflow run`` prints about its trials: readable durations, one plain line per
finished trial where stderr is not a terminal, and the summary table (parameters and
metrics as columns, the best trials only when they would not fit on a screen)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from sweepflow.engine.progress import TrialOutcome, metric_columns
from sweepflow.errors import SweepflowError

__all__ = [
    "PLAIN_ROWS",
    "ColumnsError",
    "Elapsed",
    "Layout",
    "Remaining",
    "Tally",
    "TrialLines",
    "View",
    "counts_line",
    "duration",
    "layout",
    "parse_columns",
    "print_summary",
    "table_rows",
    "trial_line",
    "view_of",
]

# Rows of the summary table where stderr is not a terminal (a CI log, a file, a pipe).
PLAIN_ROWS = 50
# Terminal lines the summary needs besides its rows: the constant parameters, the
# table's title, borders and header, the "more trials" line and the final lines.
_RESERVED_LINES = 12
_STATUSES = ("done", "cached", "failed", "cancelled", "pruned")
_STYLE = {"done": "green", "cached": "cyan", "failed": "red", "cancelled": "yellow"}
_STYLE["pruned"] = "magenta"


class ColumnsError(SweepflowError, ValueError):
    """A bad ``--columns`` of ``sweepflow run``."""


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: tenths under a minute, then minutes and seconds,
    then hours and minutes; empty for an unknown time.

    >>> duration(0.84), duration(12.34), duration(245.4), duration(3720.0)
    ('0.8 s', '12.3 s', '4 min 05 s', '1 h 02 min')
    >>> duration(59.97), duration(3599.7), duration(None)
    ('1 min 00 s', '1 h 00 min', '')
    """
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return ""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def parse_columns(text: str) -> tuple[str, ...]:
    """The metric names of ``--columns``: comma-separated, none empty, none twice.

    >>> parse_columns("loss, acc")
    ('loss', 'acc')
    """
    names = tuple(name.strip() for name in text.split(","))
    for place, name in enumerate(names, 1):
        if not name:
            raise ColumnsError(
                f"--columns {text!r}: metric name {place} is empty; give metric names "
                "separated by commas, e.g. --columns loss,accuracy"
            )
        if name in names[: place - 1]:
            raise ColumnsError(f"--columns {text!r}: {name!r} is named twice; name it once")
    return names


@dataclass(frozen=True)
class View:
    """How the summary of one run is shown.

    Attributes:
        job: The job's name as the user gave it (for the ``sweepflow results`` hint).
        columns: The metric columns ``--columns`` named, in that order (empty: all).
        target: The metric the best trials are chosen by: a search's objective (None:
            the first metric shown).
        maximize: Whether higher ``target`` values are better (a search's direction);
            a sweep has none, and its lowest values count as best, as in ``sweepflow ls``.
        file: The job file ``--file`` named, if any (for the hint).
    """

    job: str = ""
    columns: tuple[str, ...] = ()
    target: str | None = None
    maximize: bool = False
    file: str | None = None


def view_of(name: str, job: Any, columns: str | None, file: object = None) -> View:
    """The view of ``sweepflow run NAME``: ``--columns`` parsed (a bad one raises
    :class:`ColumnsError`), a search's first objective and its direction."""
    optimize = getattr(job, "optimize", None)
    return View(
        job=name,
        columns=parse_columns(columns) if columns is not None else (),
        target=optimize.metrics[0] if optimize is not None else None,
        maximize=optimize is not None and optimize.directions[0] == "maximize",
        file=str(file) if file is not None else None,
    )


def _metric_names(rows: Sequence[TrialOutcome], target: str | None) -> list[str]:
    """Every metric the trials reported, the target first (as Prefect's trials table)."""
    seen = {name for o in rows for name in o.metrics}
    return metric_columns(list(rows), target, limit=len(seen) + 1)


def _number(value: float) -> str:
    return f"{value:.6g}"


def _params_text(outcome: TrialOutcome, keys: Sequence[str] | None = None) -> str:
    if not outcome.params:
        return outcome.label
    keys = list(outcome.params) if keys is None else keys
    return " ".join(f"{k}={outcome.params[k]}" for k in keys if k in outcome.params)


def trial_line(
    outcome: TrialOutcome,
    finished: int,
    total: int,
    target: str | None = None,
    columns: Sequence[str] = (),
) -> str:
    """One finished trial as a plain line: status, time, parameters, metrics (the
    ``target`` first; only ``columns`` if any are named), and why it failed or did not
    run.

    >>> o = TrialOutcome(3, "a=1", "done", 1.25, {"acc": 0.5, "loss": 0.25}, params={"a": "1"})
    >>> trial_line(o, 4, 10, target="loss")
    '[4/10] trial 3 done 1.2 s  a=1  loss=0.25 acc=0.5'
    """
    names = [target] if target in outcome.metrics else []
    names += [name for name in outcome.metrics if name != target]
    if columns:
        names = [name for name in columns if name in outcome.metrics]
    parts = [f"[{finished}/{total}] trial {outcome.index} {outcome.status}"]
    if outcome.duration is not None:
        parts[0] += f" {duration(outcome.duration)}"
    parts.append(_params_text(outcome))
    if names:
        parts.append(" ".join(f"{n}={_number(outcome.metrics[n])}" for n in names))
    if outcome.error.strip():
        parts.append(outcome.error.strip().splitlines()[0])
    return "  ".join(part for part in parts if part)


def counts_line(counts: dict[str, int], seconds: float, interrupted: bool = False) -> str:
    """The run's last line: trials by status and the time it took.

    >>> counts_line({"done": 3, "cached": 1, "failed": 0, "pruned": 0, "cancelled": 0}, 75)
    '3 done, 1 cached, 0 failed in 1 min 15 s'
    """
    return (
        ("interrupted: " if interrupted else "")
        + f"{counts['done']} done, {counts['cached']} cached, {counts['failed']} failed"
        + (f", {counts['pruned']} pruned" if counts.get("pruned") else "")
        + (f", {counts['cancelled']} not started" if counts.get("cancelled") else "")
        + f" in {duration(seconds)}"
    )


@dataclass(frozen=True)
class Layout:
    """What the summary table shows.

    Attributes:
        constant: Parameters with one value in every trial (stated once, above the table).
        params: The parameter columns: the keys whose values differ between trials.
        metrics: The metric columns, the target first.
        target: The metric the best trials were chosen by (None: no metric).
        rows: The trials shown, in order: all by number, or the best (best first) and
            then every failed one.
        hidden: How many trials are not shown.
        missing: Metrics ``--columns`` named that no trial reported.
    """

    constant: dict[str, str]
    params: list[str]
    metrics: list[str]
    target: str | None
    rows: list[TrialOutcome]
    hidden: int = 0
    missing: list[str] = field(default_factory=list)


def layout(outcomes: Sequence[TrialOutcome], view: View, max_rows: int) -> Layout:
    """The summary table of ``outcomes`` in at most ``max_rows`` rows (more only for
    failed trials, which are always listed): above that, the best trials by the target
    metric (lowest first, or highest for a maximized search), then the failed ones."""
    ordered = sorted(outcomes, key=lambda o: o.index)
    keys: list[str] = []
    for o in ordered:
        keys.extend(k for k in o.params if k not in keys)
    constant: dict[str, str] = {}
    if len(ordered) > 1:  # one trial: its parameters are its columns
        for k in keys:
            values = {o.params.get(k) for o in ordered}
            if len(values) == 1 and (value := values.pop()) is not None:
                constant[k] = value
    params = [k for k in keys if k not in constant]
    reported = _metric_names(ordered, view.target)
    metrics = [n for n in view.columns if n in reported] if view.columns else reported
    missing = [n for n in view.columns if n not in reported]
    target = view.target if view.target in reported else (metrics[0] if metrics else None)
    if len(ordered) <= max_rows:
        return Layout(constant, params, metrics, target, ordered, 0, missing)
    failed = [o for o in ordered if o.status == "failed"]
    others = [o for o in ordered if o.status != "failed"]
    if target is not None:
        sign = -1.0 if view.maximize else 1.0
        ranked = [o for o in others if not math.isnan(o.metrics.get(target, math.nan))]
        ranked.sort(key=lambda o: (sign * o.metrics[target], o.index))
        others = ranked + [o for o in others if o not in ranked]
    best = others[: max(3, max_rows - len(failed))]
    rows = best + failed
    return Layout(constant, params, metrics, target, rows, len(ordered) - len(rows), missing)


def table_rows(shape: Layout) -> list[list[str]]:
    """The cells of the table's rows: number, parameters, status, time, metrics."""
    rows = []
    for o in shape.rows:
        cells = [str(o.index)]
        cells += [o.params.get(k, "") for k in shape.params] if shape.params else [o.label]
        cells += [o.status, duration(o.duration)]
        cells += [_number(o.metrics[n]) if n in o.metrics else "" for n in shape.metrics]
        rows.append(cells)
    return rows


def _hint(shape: Layout, view: View) -> str:
    command = f"sweepflow results {shlex.quote(view.job)}"
    if view.file:
        command += f" -f {shlex.quote(view.file)}"
    if shape.target:
        sort = ("-" if view.maximize else "") + shape.target
        command += f" --sort {shlex.quote(sort)}"
    return f"... {shape.hidden} more trials: see `{command}`"


def _table(shape: Layout, title: str, whole_numbers: bool) -> Table:
    """The summary table; ``whole_numbers``: no number is wrapped over two lines."""
    table = Table(title=title, title_justify="left")
    cells = table_rows(shape)
    headers = ["#", *(shape.params or ["trial"]), "status", "time", *shape.metrics]
    numbers = {0, *range(len(headers) - len(shape.metrics) - 1, len(headers))}
    for place, header in enumerate(headers):
        widest = max((len(row[place]) for row in cells), default=1)
        table.add_column(
            header,
            justify="right" if place in numbers else "left",
            overflow="fold",  # a narrow terminal wraps a cell, never cuts it with "..."
            min_width=widest if place in numbers and whole_numbers else None,
        )
    for o, row in zip(shape.rows, cells, strict=True):
        table.add_row(*(Text(cell) for cell in row), style=_STYLE.get(o.status))  # no markup
    return table


def _row_line(o: TrialOutcome, shape: Layout) -> str:
    """A row as a line, where no table fits the terminal's width."""
    metrics = " ".join(f"{n}={_number(o.metrics[n])}" for n in shape.metrics if n in o.metrics)
    params = _params_text(o, shape.params or None)
    return "  ".join(
        x for x in (f"{o.index}", o.status, duration(o.duration), params, metrics) if x
    )


def print_summary(console: Console, outcomes: Sequence[TrialOutcome], view: View) -> None:
    """Print the summary table of ``outcomes``: as many rows as fit on the terminal
    (:data:`PLAIN_ROWS` where it is not one), else the best and the failed trials and
    a line saying how to see the rest. A table too wide for the terminal, even with its
    cells wrapped, becomes one line per trial: no column is ever cut off."""
    plain = not console.is_terminal
    max_rows = PLAIN_ROWS if plain else max(5, console.height - _RESERVED_LINES)
    shape = layout(outcomes, view, max_rows)
    if shape.constant:
        same = " ".join(f"{k}={v}" for k, v in shape.constant.items())
        console.print(f"same in every trial: {same}", markup=False, highlight=False)
    title = "trials"
    if shape.hidden:
        title = f"trials: {len(shape.rows)} of {len(outcomes)}: "
        if shape.target is not None:
            title += f"best {shape.target} ({'highest' if view.maximize else 'lowest'} first), "
        title += "all failed"
    table = _table(shape, title, whole_numbers=True)
    unbounded = console.options.update_width(10_000)
    if plain:  # a log file or pipe has no width: the table keeps its own, unwrapped
        console.width = max(console.width, console.measure(table, options=unbounded).maximum)
    elif console.measure(table, options=unbounded).minimum > console.width:
        table = _table(shape, title, whole_numbers=False)
    if console.measure(table, options=unbounded).minimum > console.width:
        console.print(f"{title} (#, status, time, parameters, metrics)", markup=False)
        for o in shape.rows:
            line = _row_line(o, shape)
            console.print(line, style=_STYLE.get(o.status), markup=False, highlight=False)
    else:
        console.print(table)
    if shape.hidden:
        console.print(_hint(shape, view), markup=False, highlight=False, soft_wrap=True)
    if shape.missing:
        console.print(
            f"--columns: no trial reported {', '.join(shape.missing)} "
            f"(reported: {', '.join(_metric_names(outcomes, None)) or 'no metric'})",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )


class Tally:
    """Trial outcomes as they arrive, and their counts by status."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys((*_STATUSES, "running"), 0)
        self.outcomes: list[TrialOutcome] = []

    def count(self, outcome: TrialOutcome) -> None:
        """Keep ``outcome`` and count it."""
        self.outcomes.append(outcome)
        self.counts[outcome.status] += 1


class TrialLines(Tally):
    """A progress sink for a stderr that is not a terminal (CI logs, ``| tee``, SLURM
    batch jobs): no live bar, one plain line per trial as it finishes."""

    def __init__(self, console: Console, view: View | None = None) -> None:
        super().__init__()
        self.console, self.view, self.total = console, view or View(), 0

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
        self.console.file.flush()

    def start(self, job: str, total: int, cached: int) -> None:
        """Say how many trials the job has."""
        self.total = total
        self._print(f"{job}: {total} trials" + (f", {cached} cached" if cached else ""))

    def running(self, count: int) -> None:
        """Nothing: only finished trials get a line."""
        self.counts["running"] = count

    def finished(self, outcome: TrialOutcome) -> None:
        """Print the trial's line now."""
        self.count(outcome)
        view = self.view
        self._print(trial_line(outcome, len(self.outcomes), self.total, view.target, view.columns))

    def note(self, text: str) -> None:
        """Print ``text`` as it is."""
        self._print(text)

    def stop(self) -> None:
        """Nothing to stop."""


class Elapsed(ProgressColumn):
    """The bar's elapsed time, readable (``12.3 s``, ``4 min 05 s``)."""

    def render(self, task: Task) -> Text:
        """The task's elapsed time."""
        return Text(duration(task.finished_time if task.finished else task.elapsed or 0.0))


class Remaining(ProgressColumn):
    """The bar's estimate of the time left, readable; empty until there is one."""

    max_refresh = 0.5

    def render(self, task: Task) -> Text:
        """The task's estimated time left."""
        left = task.time_remaining
        return Text("" if left is None or task.finished else f"~{duration(left)} left")
