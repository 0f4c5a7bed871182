"""The flow side of the engine's callbacks: MLflow runs, progress events, the trial table."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, runtime

from flows._members import Units, no_trial_note, verdict
from flows._runtime import placement_tags, save_profile, trials_table
from sweepflow.cache.results import load_result, results_dir
from sweepflow.engine.progress import (
    TrialOutcome,
    count_outcomes,
    current_sink,
    metric_columns,
    outcome_of,
)
from sweepflow.engine.scheduler import Outcome
from sweepflow.errors import DiskFull
from sweepflow.execution.trial import TrialResult, TrialSpec
from sweepflow.faults import disk_full, is_disk_full, release
from sweepflow.tracking.records import Best, Finished, parent_summary, run_name
from sweepflow.tracking.writer import RunWriter, Tracker, trial_tags, versions

__all__ = ["Record", "open_parent"]


def open_parent(
    job: Any,
    uri: str,
    profile: Any,
    state: Path,
    cached: Callable[[str], TrialResult | None],
    params: dict[str, str],
    tags: dict[str, str] | None = None,
    size: int | None = None,
) -> tuple[Tracker, str]:
    """The job's tracker and this execution's parent run (stale runs reaped first, the
    resolved profile saved with it), named with its ``size`` (number of trials)."""
    tracker = Tracker(uri, job.experiment, job.key)
    tracker.reap_stale(cached)
    flow_run_id = str(runtime.flow_run.id or "")
    tags = {"prefect.flow_run_id": flow_run_id, "sweepflow.versions": versions()} | (tags or {})
    parent = tracker.start_parent(params | {"profile": profile.name}, tags, size)
    save_profile(profile, state, job.key, flow_run_id, tracker, parent)
    return tracker, parent


class Record:
    """What one execution's trials did: their MLflow runs, progress events and outcomes.

    A trial's run is created with its params when its unit is submitted, or, for the
    trials known ahead (``upcoming``, a sweep's in submission order), a little before,
    SCHEDULED, and marked RUNNING when submitted: the scheduling loop then never waits
    for MLflow. Runs are finished or killed as their trials end.
    """

    def __init__(
        self,
        job: Any,
        tracker: Tracker,
        parent: str,
        uri: str,
        total: int,
        cached: int = 0,
        upcoming: Sequence[TrialSpec] = (),
        notes: dict[int, str] | None = None,
        state: Path | None = None,
        since: float | None = None,
        varying: Sequence[str] | None = None,
    ) -> None:
        """Start the progress display: ``total`` trials, ``cached`` of them cache hits;
        ``notes`` say why some trials with a stored result run again (by index);
        ``state``: the state folder, whose reserve is freed when the disk fills up;
        ``since``: when the cache was looked up (default: now); ``varying``: the params
        that name a trial's run (default: all of its params)."""
        self.job, self.tracker, self.parent, self.total = job, tracker, parent, total
        self.writer = RunWriter(tracker, parent)
        self.flow_run_id = str(runtime.flow_run.id or "")
        self.env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": tracker.experiment_id}
        self.summary = {"job": job.key, "experiment": job.experiment, "tracking_uri": uri}
        self.summary["experiment_id"] = tracker.experiment_id
        self.varying = None if varying is None else list(varying)
        self._keys: dict[int, str] = {}  # cache keys of cache hits: their earlier run
        self.sink = current_sink()
        self.units = Units(job)  # batch and submit units: a row and a run per trial
        self._hits: list[tuple[TrialSpec, TrialResult]] = []  # told once numbered
        self._begun = not self.units.enabled
        if self._begun:
            self.sink.start(job.key, total, cached)
        self.outcomes: dict[int, TrialOutcome] = {}
        self.started: set[int] = set()
        self._upcoming, self._ahead = list(upcoming), 0  # prepared SCHEDULED up to here
        self._place = {spec.index: i for i, spec in enumerate(self._upcoming)}
        self._scheduled: set[int] = set()
        self._drained = False
        self.notes = dict(notes or {})
        self.state = state
        self.fault: DiskFull | None = None  # why the run stops starting trials
        self.writer.on_full = self._full
        self._stopped: list[TrialSpec] = []  # in flight when the run was stopped
        self.opened = time.time() if since is None else since
        labels = {spec.index: spec.label for spec in self._upcoming}
        for index, note in sorted(self.notes.items()):
            self.sink.note(f"trial {index} ({labels.get(index, '')}): {note}")
            get_run_logger().warning("trial %s (%s): %s", index, labels.get(index, ""), note)

    def cached(self, spec: TrialSpec, result: TrialResult) -> None:
        """A sweep's cache hit: an outcome, no run."""
        self.outcomes[spec.index] = outcome_of(spec, "cached", result)
        self._keys[spec.index] = spec.cache_key
        if not self._begun:  # told once every unit's trials are numbered (_begin)
            self._hits.append((spec, result))
            return
        self.sink.finished(self.outcomes[spec.index])

    def start(self, specs: Sequence[TrialSpec]) -> list[TrialSpec]:
        """Create (or mark RUNNING) the runs of ``specs``, and schedule the runs of the
        trials after them; return the specs with their run's environment."""
        self._begin()
        for spec in specs:
            if spec.index in self._scheduled:
                self.writer.start(spec.index)
            else:
                self._prepare(spec)
            self.started.add(spec.index)
        if specs and specs[-1].index in self._place:  # the next units' runs, written now
            after = self._place[specs[-1].index] + 1
            end = min(len(self._upcoming), after + 2 * len(specs) + 8)
            for spec in self._upcoming[max(self._ahead, after) : end]:
                self._prepare(spec, scheduled=True)
            self._ahead = max(self._ahead, end)
        return [
            spec.model_copy(
                update={
                    "env": self.env
                    | {"MLFLOW_RUN_ID": self.writer.run_id(spec.index)}
                    | self.units.env(spec),
                    "since": self.opened,
                }
            )
            for spec in specs
        ]

    def _prepare(self, spec: TrialSpec, scheduled: bool = False) -> None:
        tags = trial_tags(spec, self.flow_run_id)
        tags["mlflow.runName"] = run_name(spec.params, self.varying, spec.label)
        self.writer.prepare(spec.index, tags, params=spec.params, scheduled=scheduled)
        if scheduled:
            self._scheduled.add(spec.index)

    def finish(self, spec: TrialSpec, outcome: Outcome, tags: dict[str, str] | None = None) -> None:
        """Close a trial's run (KILLED if it never ran) and report its outcome; after a
        full disk, raise it: every other trial would fail the same way."""
        self._close(spec, outcome, tags)
        if outcome.status == "failed" and is_disk_full(outcome.error):
            self._full()
        if self.fault is not None:
            raise self.fault

    def _close(self, spec: TrialSpec, outcome: Outcome, tags: dict[str, str] | None = None) -> None:
        if self.units.members(spec) and self._close_unit(spec, outcome, tags):
            return
        result = outcome.result
        if outcome.status == "cancelled":
            self.writer.kill(spec.index)
        elif result is not None and result.elsewhere:
            # Another sweepflow run ran it; its run is the trial's one FINISHED run.
            self.writer.kill(spec.index, tags={"sweepflow.note": outcome.error})
        else:
            self.writer.finish(
                spec.index,
                Path(spec.workdir),
                params=spec.params,
                metrics=result.metrics if result else None,
                ok=outcome.status in ("done", "cached"),
                tags=outcome.tags | placement_tags(result) | (tags or {}),
                **_own_times(outcome),
            )
        try:
            run_id = self.writer.run_id(spec.index) if spec.index in self.started else ""
        except DiskFull:
            run_id = ""  # written when the run closes
        reason = outcome.error or self.notes.get(spec.index, "")
        trial = outcome_of(spec, outcome.status, result, reason)
        self.outcomes[spec.index] = replace(trial, run_id=run_id)
        self.sink.finished(self.outcomes[spec.index])

    def _begin(self) -> None:
        """Batch and submit units: number their trials and start the display, once
        every unit is known (those to run, and the cache hits told so far)."""
        if self._begun:
            return
        self._begun = True
        total = self.units.number([*self._upcoming, *(spec for spec, _ in self._hits)])
        hits = sum(len(self.units.members(spec)) or 1 for spec, _ in self._hits)
        self.sink.start(self.job.key, total, hits)
        for spec, result in self._hits:
            self._tell(spec, outcome_of(spec, "cached", result))
        self._hits.clear()

    def _tell(
        self, spec: TrialSpec, unit: TrialOutcome, rows: list[TrialOutcome] | None = None
    ) -> None:
        """Record a unit's outcome and show it: one row per trial of a batch or submit
        unit (``rows``, else rows sharing the unit's status); the unit fails when one
        of its trials did."""
        if rows is None and self.units.members(spec):
            rows = self.units.like(unit, spec)
        if not rows:  # one trial, or trials that do not report through sweepflow
            self.outcomes[spec.index] = unit
            self.sink.finished(unit)
            return
        failed = sum(row.status == "failed" for row in rows)
        if failed and unit.status != "failed":
            unit = replace(unit, status="failed", error=f"{failed} of {len(rows)} trials failed")
        self.outcomes[spec.index] = unit
        self.units.rows[spec.index] = rows
        for row in rows:
            self.sink.finished(row)

    def _close_unit(
        self, spec: TrialSpec, outcome: Outcome, tags: dict[str, str] | None = None
    ) -> bool:
        """A batch or submit unit ended: a run and a row per trial (its own report
        lines); the unit's run keeps its logs, tagged ``sweepflow.role=batch``. False
        (nothing done) when none of its trials reported: the unit is one trial then."""
        result = outcome.result
        reason = outcome.error or self.notes.get(spec.index, "")
        unit = replace(outcome_of(spec, outcome.status, result, reason), metrics={})
        if outcome.status == "cancelled" or (result is not None and result.elsewhere):
            if not self.units.like(unit, spec):
                return False
            note = {"sweepflow.note": outcome.error} if outcome.status != "cancelled" else None
            self.writer.kill(spec.index, tags=note)
            self._tell(spec, unit)
            return True
        parts, folder, stray = self.units.split(spec)
        if not any(part.reported for part in parts):
            return False
        if stray:
            self.sink.note(no_trial_note(spec, stray))
        shared = outcome.tags | placement_tags(result) | (tags or {})
        times = _own_times(outcome)
        role = {"sweepflow.role": "batch", "sweepflow.trials": str(len(parts))}
        ok = outcome.status == "done"
        self.writer.finish(spec.index, folder, ok=ok, tags=shared | role, **times)
        unit_run = self._run_id(spec.index) if spec.index in self.started else ""
        base = trial_tags(spec, self.flow_run_id) | shared
        # A trial is done if it reported and its unit succeeded, or its program said
        # it returned (the handler may have failed on another trial).
        done = {part.position for part in parts if part.ended or (ok and part.reported)}
        if not ok and len(done) == len(parts):  # no row says why the unit failed
            self.sink.note(f"{spec.kind} unit {spec.index} ({spec.label}) failed: {reason}")
        if ok and len(done) < len(parts) and self.state is not None:
            # The unit's result is one cache entry: forget it, so that the next run
            # runs the unit again rather than taking a trial that never reported.
            (results_dir(self.state) / spec.cache_key).unlink(missing_ok=True)
        keys = self.units.write(self.writer, spec, parts, done, base, unit_run, times)
        rows = [
            self.units.row(unit, spec, part, run_id=self._run_id(k), **verdict(part, done, reason))
            for part, k in zip(parts, keys, strict=True)
        ]
        self._tell(spec, replace(unit, run_id=unit_run), rows)
        return True

    def _run_id(self, key: int) -> str:
        try:
            return self.writer.run_id(key)
        except DiskFull:
            return ""  # written when the run closes

    def _full(self) -> DiskFull:
        """The disk is full: the run stops starting trials, and makes room for its last
        writes when it closes."""
        if self.fault is None:
            self.fault = disk_full(self.state or Path.cwd())
        return self.fault

    def logged(self, index: int) -> dict[str, float]:
        """The metrics trial ``index``'s program logged to its run itself."""
        return dict(self.tracker.client.get_run(self.writer.run_id(index)).data.metrics)

    def abort(self, specs: Sequence[TrialSpec]) -> None:
        """Trials stopped by an interrupt or error: the runs of those never started
        KILLED, with an outcome saying why; those in flight are settled when the run
        closes (:meth:`close`)."""
        self._begin()
        for spec in specs:
            if spec.index in self.outcomes:
                continue
            if spec.index in self.started:
                self._stopped.append(spec)
                continue
            self.writer.kill(spec.index)
            self._tell(spec, outcome_of(spec, "cancelled", error=self._why("not started")))

    def _why(self, what: str) -> str:
        return f"{what}: {self.fault or 'interrupted'}"

    def _settle_stopped(self) -> None:
        """The trials that were in flight when the run was stopped: done if they stored
        a result on the way out (their run FINISHED), else cancelled (KILLED)."""
        folder = results_dir(self.state) if self.state is not None else None
        for spec in self._stopped:
            result = load_result(folder, spec.cache_key) if folder is not None else None
            if result is not None and result.ended >= self.opened:
                self._close(spec, Outcome("done", result, seconds=result.duration))
            else:
                self._close(spec, Outcome("cancelled", error=self._why("stopped")))
        self._stopped.clear()

    def drain(self) -> None:
        """Write every queued run update (raise the first error writing met)."""
        self._begin()
        if not self._drained:
            self._drained = True
            self.sink.running(0)
            self.writer.close()

    def close(self, status: str | None = None) -> dict[str, int]:
        """Drain, and close the parent run with ``status`` (default: FAILED if a trial
        failed or was cancelled, else FINISHED); return the counts.

        After a full disk the reserve is freed first, and the parent run is closed
        before the queued trial runs are written (the smallest write first); if the disk
        fills up again on the way, every run still gets its status alone."""
        self._begin()
        if self.fault is None:
            try:
                self._settle_stopped()
                self.drain()
            finally:
                counts = self._close_parent(status)
            return counts
        if self.state is not None:
            release(self.state)
        self._settle_stopped()
        counts = self._close_parent("FAILED")
        try:
            self.drain()
        except Exception:  # the full disk is what to report, not its echo
            self._end_statuses()
        return counts

    def _close_parent(self, status: str | None) -> dict[str, int]:
        counts = count_outcomes(self.outcomes.values(), self.total)
        if status is None:
            status = "FAILED" if counts["failed"] + counts["cancelled"] else "FINISHED"
        try:
            self.tracker.finish_parent(self.parent, counts, status, self._summary(counts))
        except Exception:
            if self.fault is None:
                raise
            with contextlib.suppress(Exception):  # its status alone, a few bytes
                self.tracker.store.set_status([self.parent], status, int(time.time() * 1000))
        return counts

    def _summary(self, counts: dict[str, int]) -> Finished | None:
        """The parent run's summary: counts and the best trial by the target metric (a
        search's objective, in its direction; else the first metric reported, lowest).
        A cache hit's run is the earlier one that made its result."""
        optimize: Any = getattr(self.job, "optimize", None)
        target = optimize.metrics[0] if optimize else None
        units = sorted(self.outcomes.values(), key=lambda o: o.index)
        members = {id(t) for rows in self.units.rows.values() for t in rows}
        rows = [t for o in units for t in self.units.rows.get(o.index, [o])]  # as publish()
        rows = [o for o in rows if o.status in ("done", "cached")]
        best = None
        # An LLC matrix estimates; no pair is better than another (no best trial).
        measured = [] if getattr(self.job, "llc", None) else metric_columns(rows, target)
        for metric in measured[:1]:
            high = metric == target and optimize.directions[0] == "maximize"
            sign = -1.0 if high else 1.0
            scored = [o for o in rows if not math.isnan(o.metrics.get(metric, math.nan))]
            top = min(scored, key=lambda o: sign * o.metrics[metric], default=None)  # first of ties
            if top is not None:
                run_id, name = self._run_of(top, named=id(top) not in members)
                best = Best(run_id, name, dict(top.params), dict(top.metrics), metric, high)
        eid = self.tracker.experiment_id
        return parent_summary(self.parent, self.job.key, eid, counts, best)

    def _run_of(self, outcome: TrialOutcome, named: bool = True) -> tuple[str, str]:
        """The id and name of the run that holds ``outcome``'s result (``named``: a
        run :meth:`_prepare` named; else one named by its label, a batch's trial)."""
        name = run_name(outcome.params, self.varying, outcome.label) if named else outcome.label
        if outcome.run_id or outcome.index not in self._keys:
            return outcome.run_id, name
        key = self._keys[outcome.index]
        earlier = self.tracker.store.running(
            self.tracker.experiment_id, "sweepflow.cache_key", key, statuses=("FINISHED",)
        )
        if not earlier:
            return "", name
        return earlier[0].run_id, earlier[0].tags.get("mlflow.runName", name)

    def _end_statuses(self) -> None:
        """The disk filled up again while the last runs were written (their logs are
        copied too): end every run with its trial's status alone, a few bytes each, so
        that none is left RUNNING and each done trial keeps its FINISHED run."""
        statuses = {"done": "FINISHED", "cached": "FINISHED", "failed": "FAILED"}
        ids: dict[str, list[str]] = {}
        for index, run_id in self.writer.created().items():
            outcome = self.outcomes.get(index)
            status = statuses.get(outcome.status, "KILLED") if outcome else "KILLED"
            ids.setdefault(status, []).append(run_id)
        now = int(time.time() * 1000)
        for status, run_ids in ids.items():
            with contextlib.suppress(Exception):
                self.tracker.store.set_status(run_ids, status, now)

    def publish(self, rows: list[TrialOutcome], counts: dict[str, int]) -> dict[str, Any]:
        """The trial table artifact; the summary the flow returns."""
        rows = [trial for row in rows for trial in self.units.rows.get(row.index, [row])]
        optimize = getattr(self.job, "optimize", None)
        metrics = getattr(optimize, "metrics", None) or ()
        trials_table(self.job.key, rows, metrics[0] if metrics else None)
        trials = [vars(o) for o in rows]
        return self.summary | {"counts": counts, "trials": trials, "parent_run": self.parent}


def _own_times(outcome: Outcome) -> dict[str, float]:
    """A trial that ran now: its run's start and end are the trial's (not its queue's)."""
    result = outcome.result
    if outcome.status != "done" or result is None:
        return {}
    return {"started": result.started, "ended": result.ended}
