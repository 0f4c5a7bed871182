"""Reading a trial's report file back: what the flow writes into the trial's MLflow run.

The writing side, which a trial's program uses, is :mod:`sweepflow.reporting.channel`;
this side runs in the flow's process and may import pydantic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict

__all__ = ["ArtifactEntry", "MetricPoint", "Report", "read_report"]


class MetricPoint(NamedTuple):
    """One metric value: ``(name, value, step, time)`` with time in unix milliseconds."""

    name: str
    value: float
    step: int | None
    time: int


class ArtifactEntry(NamedTuple):
    """One artifact: the absolute ``path`` and the folder ``artifact_path`` in the run."""

    path: str
    artifact_path: str | None


class Report(BaseModel):
    """What a trial reported, read back from its report file.

    Attributes:
        metrics: Every metric value in the order logged.
        params: Params; a key logged twice keeps its last value.
        artifacts: Files or folders to copy into the run, in the order logged.
        problems: ``file:line: reason`` for each line skipped (a line cut short by a
            killed process, malformed JSON, an unknown kind).
    """

    model_config = ConfigDict(frozen=True)

    metrics: tuple[MetricPoint, ...] = ()
    params: dict[str, str] = {}
    artifacts: tuple[ArtifactEntry, ...] = ()
    problems: tuple[str, ...] = ()
    pruned: int | None = None  # the step at which the search's pruner stopped the trial
    ended: bool = False  # a trial of a batch or submit unit: its program returned


def _parse(record: Any) -> tuple[str, Any]:
    """Validate one decoded line; return its kind and payload, or raise ValueError."""
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    kind = record.get("kind")
    if kind == "metrics":
        values, step, stamp = record.get("values"), record.get("step"), record.get("time")
        if not isinstance(values, dict) or not isinstance(stamp, int):
            raise ValueError("a metrics line needs 'values' (object) and 'time' (int)")
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise ValueError(f"step must be an int or null, got {step!r}")
        points = []
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"metric {name!r} is not a number: {value!r}")
            points.append(MetricPoint(name, float(value), step, stamp))
        return kind, points
    if kind == "params":
        values = record.get("values")
        if not isinstance(values, dict):
            raise ValueError("a params line needs 'values' (object)")
        return kind, {str(k): str(v) for k, v in values.items()}
    if kind == "artifact":
        path, folder = record.get("path"), record.get("artifact_path")
        if not isinstance(path, str) or not (folder is None or isinstance(folder, str)):
            raise ValueError("an artifact line needs 'path' (string), 'artifact_path'")
        return kind, ArtifactEntry(path, folder)
    if kind == "pruned":
        step = record.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ValueError(f"a pruned line needs 'step' (int), got {step!r}")
        return kind, step
    if kind == "ended":
        return kind, True
    raise ValueError(f"unknown kind {kind!r} (expected metrics, params, artifact, pruned or ended)")


def read_report(path: str | Path) -> Report:
    """Read a report file; a missing file is an empty report.

    Lines that cannot be read (the last one cut short by a killed process, or any
    malformed line) are skipped and listed in :attr:`Report.problems`, so a damaged
    line never loses the rest of a trial's record.

    Args:
        path: The report file (``report.jsonl`` in the trial's folder).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Report()
    metrics: list[MetricPoint] = []
    params: dict[str, str] = {}
    artifacts: list[ArtifactEntry] = []
    problems: list[str] = []
    pruned: int | None = None
    ended = False
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            kind, payload = _parse(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            last = number == len(lines)  # no newline after it: the writer was cut short
            reason = "line cut short (writer killed?)" if last else str(exc)
            problems.append(f"{path}:{number}: {reason}")
            continue
        if kind == "metrics":
            metrics.extend(payload)
        elif kind == "params":
            params.update(payload)
        elif kind == "pruned":
            pruned = payload
        elif kind == "ended":
            ended = True
        else:
            artifacts.append(payload)
    return Report(
        metrics=tuple(metrics),
        params=params,
        artifacts=tuple(artifacts),
        problems=tuple(problems),
        pruned=pruned,
        ended=ended,
    )
