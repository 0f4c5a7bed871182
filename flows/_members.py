"""The trials inside batch and ``submit:`` units, for the flow's record of a sweep.

A ``per: batch`` job or a ``submit:`` job runs several trials in one unit (one task
run, one cache entry), but each trial gets its own row and its own MLflow run: the
unit's report lines carry the trial they are for (see
:mod:`sweepflow.reporting.members`), and are split into ``trials/<k>/report.jsonl`` in
the unit's folder, the folder of trial ``k``'s run. The unit's own run (tag
``sweepflow.role=batch``) keeps its logs and any report line that named no trial.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from sweepflow.engine.progress import TrialOutcome
from sweepflow.plan.members import unit_members
from sweepflow.reporting.members import INDEX_ENV, TRIALS_ENV, split_report, write_members
from sweepflow.reporting.reader import read_report

__all__ = ["Part", "Units", "no_trial_note", "tags_of", "trial_rows", "verdict"]

_HAS_PARAMS = any(f.name == "params" for f in fields(TrialOutcome))


@dataclass(frozen=True)
class Part:
    """Trial ``position`` of a unit: its params, its folder, what it reported, and
    whether its program said it returned (``@sweepflow.main`` does)."""

    position: int
    params: dict[str, str]
    folder: Path
    reported: bool
    metrics: dict[str, float]
    ended: bool = False


class Units:
    """Which units of a job hold several trials, and their trials' numbers and rows.

    Trials are numbered through the job in unit order (a unit of one trial counts
    one), so every row of the summary has its own number.
    """

    def __init__(self, job: Any) -> None:
        self.enabled = getattr(job, "per", "trial") == "batch" or job.kind == "submit"
        self._members: dict[int, list[dict[str, str]]] = {}
        self.first: dict[int, int] = {}  # unit index -> number of its first trial
        self.rows: dict[int, list[TrialOutcome]] = {}  # unit index -> its trials' rows

    def members(self, spec: Any) -> list[dict[str, str]]:
        """The params of each trial of ``spec``'s unit; ``[]`` for a unit of one trial."""
        if not self.enabled:
            return []
        if spec.index not in self._members:
            self._members[spec.index] = unit_members(spec)
        return self._members[spec.index]

    def number(self, specs: Iterable[Any]) -> int:
        """Number the trials of ``specs`` (every unit of the job); their count."""
        total = 0
        for spec in sorted(specs, key=lambda s: s.index):
            self.first[spec.index] = total
            total += len(self.members(spec)) or 1
        return total

    def key(self, spec: Any, position: int) -> int:
        """The writer's key of a trial's run (negative: never a unit's index)."""
        return -1 - (self.first.get(spec.index, spec.index) + position)

    def env(self, spec: Any) -> dict[str, str]:
        """The unit's environment: ``$SWEEPFLOW_TRIALS`` names its trials' file."""
        found = self.members(spec)
        if not found:
            return {}
        path = write_members(Path(spec.workdir), found)
        return {TRIALS_ENV: str(path)}

    def split(self, spec: Any, write: bool = True) -> tuple[list[Part], Path, int]:
        """The unit's trials with what each reported, the unit's own folder (its logs
        and the lines of no trial), and how many lines named no trial.

        With ``write``, each trial's lines go to ``trials/<k>/report.jsonl`` and the
        unit's own to ``trials/unit/``; otherwise (a cache hit, a unit that did not
        run here) the trials' files are read as an earlier run left them.
        """
        workdir = Path(spec.workdir)
        found = self.members(spec)
        try:
            data = (workdir / "report.jsonl").read_bytes()
        except FileNotFoundError:
            data = b""
        lines, other = split_report(data, len(found))
        if len(found) == 1 and other:  # a unit of one trial: its lines are its own
            lines, other = [lines[0] + other], []
        parts = []
        for position, (params, own) in enumerate(zip(found, lines, strict=True)):
            folder = workdir / "trials" / str(position)
            if write:  # else what the run that made the unit's result wrote there
                _write_lines(folder / "report.jsonl", own)
            report = read_report(folder / "report.jsonl")
            metrics = {point.name: point.value for point in report.metrics}
            parts.append(Part(position, params, folder, bool(own), metrics, report.ended))
        unit = workdir / "trials" / "unit"
        if write:
            _write_lines(unit / "report.jsonl", other)
            for name in ("stdout.log", "stderr.log"):
                _link(workdir / name, unit / name)
        return parts, unit, len(other)

    def row(self, unit: TrialOutcome, spec: Any, part: Part, **changes: Any) -> TrialOutcome:
        """The summary row of one trial of a unit, from the unit's row."""
        label = " ".join(f"{k}={v}" for k, v in part.params.items())
        label = label or f"{unit.label}[{part.position}]"
        extra: dict[str, Any] = {"params": dict(part.params)} if _HAS_PARAMS else {}
        extra |= changes
        row = replace(
            unit,
            index=self.first.get(spec.index, spec.index) + part.position,
            label=label[:120],
            duration=None,  # the unit's time is all its trials'
            metrics=dict(part.metrics),  # workdir: the unit's, where the logs are
            **extra,
        )
        return row

    def write(
        self,
        writer: Any,
        spec: Any,
        parts: list[Part],
        done: set[int],
        tags: dict[str, str],
        unit_run: str,
        times: dict[str, float],
    ) -> list[int]:
        """Queue a finished run per trial of the unit on ``writer`` (a ``RunWriter``):
        the unit's ``tags`` plus the trial's own (and ``unit_run``, the unit's run id),
        FINISHED for the trials ``done``, else FAILED; return the writer's keys."""
        keys = []
        for part in parts:
            key = self.key(spec, part.position)
            own = tags | tags_of(spec, part, unit_run)
            writer.prepare(key, own, params=part.params)
            ok = part.position in done
            writer.finish(key, part.folder, params=part.params, ok=ok, tags=own, **times)
            keys.append(key)
        return keys

    def like(self, unit: TrialOutcome, spec: Any) -> list[TrialOutcome]:
        """Rows of the unit's trials that share its status (a cache hit, cancelled,
        taken from another run); ``[]`` when none of them reported (a program that
        does not report through sweepflow: its unit stays one row)."""
        parts, _, _ = self.split(spec, write=False)
        if unit.status != "cancelled" and not any(part.reported for part in parts):
            return []
        keep_metrics = unit.status == "cached"
        return [
            self.row(unit, spec, part if keep_metrics else replace(part, metrics={}))
            for part in parts
        ]


def trial_rows(job: Any, specs: list[Any], rows: list[TrialOutcome]) -> list[TrialOutcome]:
    """``rows`` (one per unit of ``specs``, e.g. the cache hits a summary shows without
    a flow run) with each batch or submit unit's row replaced by one per trial."""
    units = Units(job)
    units.number(specs)
    return [
        trial
        for spec, row in zip(specs, rows, strict=True)
        for trial in ((units.like(row, spec) if units.members(spec) else []) or [row])
    ]


def tags_of(spec: Any, part: Part, unit_run: str) -> dict[str, str]:
    """The tags a trial of a unit adds to its unit's: its label, its place."""
    label = " ".join(f"{k}={v}" for k, v in part.params.items())
    tags = {"sweepflow.unit": spec.digest, "sweepflow.unit_position": str(part.position)}
    if label:
        tags["sweepflow.label"] = label[:250]
    if unit_run:
        tags["sweepflow.unit_run"] = unit_run
    return tags


def verdict(part: Part, done: set[int], reason: str) -> dict[str, str]:
    """A unit's trial's row status and error: ``reason`` is why its unit failed."""
    if part.position in done:
        return {"status": "done", "error": ""}
    if not part.reported:
        reason = "reported nothing" + (f"; the unit: {reason}" if reason else "")
    return {"status": "failed", "error": reason}


def no_trial_note(spec: Any, count: int) -> str:
    """What to tell when report lines of a unit named none of its trials."""
    return (
        f"{count} report line(s) of {spec.kind} unit {spec.index} ({spec.label}) matched "
        f"none of its trials' params; they are in the unit's own run. Pass the trial's "
        f"key=value items to the program, or set {INDEX_ENV} to its position"
    )


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(b"".join(line + b"\n" for line in lines))
    temporary.replace(path)


def _link(source: Path, target: Path) -> None:
    """``target`` holds ``source``'s content (a hard link, else a copy); none if absent."""
    target.unlink(missing_ok=True)
    if not source.is_file():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
