"""The flow side of the engine's callbacks: MLflow runs, progress events, the trial table."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import get_run_logger, runtime

from flows._runtime import placement_tags, save_profile, trials_table
from sweepflow.cache.results import load_result, results_dir
from sweepflow.engine.progress import TrialOutcome, count_outcomes, current_sink, outcome_of
from sweepflow.engine.scheduler import Outcome
from sweepflow.errors import DiskFull
from sweepflow.execution.trial import TrialResult, TrialSpec
from sweepflow.faults import disk_full, is_disk_full, release
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
) -> tuple[Tracker, str]:
    """The job's tracker and this execution's parent run (stale runs reaped first, the
    resolved profile saved with it)."""
    tracker = Tracker(uri, job.experiment, job.key)
    tracker.reap_stale(cached)
    flow_run_id = str(runtime.flow_run.id or "")
    tags = {"prefect.flow_run_id": flow_run_id, "sweepflow.versions": versions()} | (tags or {})
    parent = tracker.start_parent(params | {"profile": profile.name}, tags)
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
    ) -> None:
        """Start the progress display: ``total`` trials, ``cached`` of them cache hits;
        ``notes`` say why some trials with a stored result run again (by index);
        ``state``: the state folder, whose reserve is freed when the disk fills up;
        ``since``: when the cache was looked up (default: now)."""
        self.job, self.tracker, self.parent, self.total = job, tracker, parent, total
        self.writer = RunWriter(tracker, parent)
        self.flow_run_id = str(runtime.flow_run.id or "")
        self.env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_ID": tracker.experiment_id}
        self.summary = {"job": job.key, "experiment": job.experiment, "tracking_uri": uri}
        self.sink = current_sink()
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
        self.sink.finished(self.outcomes[spec.index])

    def start(self, specs: Sequence[TrialSpec]) -> list[TrialSpec]:
        """Create (or mark RUNNING) the runs of ``specs``, and schedule the runs of the
        trials after them; return the specs with their run's environment."""
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
                    "env": self.env | {"MLFLOW_RUN_ID": self.writer.run_id(spec.index)},
                    "since": self.opened,
                }
            )
            for spec in specs
        ]

    def _prepare(self, spec: TrialSpec, scheduled: bool = False) -> None:
        tags = trial_tags(spec, self.flow_run_id)
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
        for spec in specs:
            if spec.index in self.outcomes:
                continue
            if spec.index in self.started:
                self._stopped.append(spec)
                continue
            self.writer.kill(spec.index)
            self.outcomes[spec.index] = outcome_of(
                spec, "cancelled", error=self._why("not started")
            )
            self.sink.finished(self.outcomes[spec.index])

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
            self.tracker.finish_parent(self.parent, counts, status)
        except Exception:
            if self.fault is None:
                raise
            with contextlib.suppress(Exception):  # its status alone, a few bytes
                self.tracker.store.set_status([self.parent], status, int(time.time() * 1000))
        return counts

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
