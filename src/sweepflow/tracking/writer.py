"""MLflow as the record of runs: the flow process writes everything, in batches.

One experiment per job, one parent run per ``sweepflow run``, one child run per trial.
Trial processes never import MLflow; their reports are read from files and logged here.
A trial's run is created with its params and tags when the trial is submitted, or
SCHEDULED a little before (so MLflow's UI shows it, named, while it waits and runs);
its results, and its own start and end, are logged when it ends.

Every record goes through :mod:`sweepflow.tracking.rules` once, then to one of two
routes with the same interface: :mod:`sweepflow.tracking._bulk` (SQL rows, many runs
per transaction, no ``import mlflow``) for a SQL store of the installed MLflow's schema,
else :mod:`sweepflow.tracking._client` (MLflow's client). Runs left RUNNING by a killed
sweep are finished (when their trial's result is cached) or marked KILLED.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sweepflow.execution.lifetime import pid_alive
from sweepflow.faults import is_disk_full
from sweepflow.tracking._bulk import BulkStore
from sweepflow.tracking._client import ClientStore
from sweepflow.tracking.records import Finished, NewRun, cleaned, new_run, new_run_id, run_name
from sweepflow.tracking.stores import open_client, open_direct, warm_up
from sweepflow.tracking.uri import default_tracking_uri, experiment_location

__all__ = [
    "Finished",
    "RunWriter",
    "Tracker",
    "default_tracking_uri",
    "trial_tags",
    "versions",
    "warm_up",
]


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


class Tracker:
    """The MLflow side of one job execution (used only in the flow's process).

    Args:
        uri: The tracking URI.
        experiment: The experiment name (created if missing).
        job: The job's key (tag ``sweepflow.job``).
        route: ``"auto"`` (SQL rows when the store allows, else MLflow's client),
            ``"sql"`` or ``"client"`` (to force one; the contract tests use both).
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        job: str,
        *,
        route: Literal["auto", "sql", "client"] = "auto",
    ) -> None:
        if route not in ("auto", "sql", "client"):
            raise ValueError(f"route must be 'auto', 'sql' or 'client', not {route!r}")
        self.uri, self.job = uri, job
        self.bulk = None if route == "client" else open_direct(uri)
        if route == "sql" and self.bulk is None:
            raise ValueError(f"{uri} is not a SQL store of the installed MLflow's schema")
        self.store: BulkStore | ClientStore = self.bulk or self.fallback
        self.experiment_id = self.store.experiment(experiment, experiment_location(experiment, uri))

    @functools.cached_property
    def client(self) -> Any:
        """MLflow's client for the store (imports MLflow the first time)."""
        return open_client(self.uri)

    @functools.cached_property
    def fallback(self) -> ClientStore:
        """The route through MLflow's client (imports MLflow the first time)."""
        return ClientStore(self.uri, self.client)

    # -- parent run ------------------------------------------------------------------
    def start_parent(
        self, params: dict[str, str], tags: dict[str, str], size: int | None = None
    ) -> str:
        """Open the parent run of this execution, with its params; return its id.

        Named by the job, what was asked for and the number of trials (``size``, else
        a search's ``n_trials`` param): ``train lr=0.1: 6 trials``."""
        tags = {
            **tags,
            "sweepflow.role": "parent",
            "sweepflow.job": self.job,
            "sweepflow.host": socket.gethostname(),
            "sweepflow.pid": str(os.getpid()),
        }
        # Named by what was asked for ("train lr=0.1"), so runs of one job tell apart.
        asked = " ".join(filter(None, (params.get("overrides"), params.get("extra"))))
        name = " ".join(filter(None, (self.job, run_name({}, None, asked))))
        size = size if size is not None else _int(params.get("n_trials"))
        name += "" if size is None else f": {size} trial{'s' if size != 1 else ''}"
        run = new_run(new_run_id(), name, tags, params, int(time.time() * 1000))
        return self.store.create(self.experiment_id, [run])[0]

    def finish_parent(
        self,
        run_id: str,
        counts: dict[str, int],
        status: str,
        summary: Finished | None = None,
    ) -> None:
        """Record the trial counts (metrics ``trials_<status>``) and what ``summary``
        holds (the best trial: metrics, params, tags), and close the parent run."""
        now = int(time.time() * 1000)
        rows = [(f"trials_{k}", float(v), 0, now) for k, v in counts.items()]
        extra = summary or Finished(run_id, status, now)
        rows += [(k, v, step, ts or now) for k, v, step, ts in extra.metrics]
        record = Finished(run_id, status, now, extra.params, rows, extra.tags)
        self.write([record])

    def log_text(self, run_id: str, name: str, text: str) -> None:
        """Save ``text`` as the artifact file ``name`` of ``run_id``."""
        self.store.write_artifact(run_id, name, text)

    # -- trial runs ------------------------------------------------------------------
    def trial_run(
        self,
        parent_id: str,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
        index: int | None = None,
        status: str = "RUNNING",
    ) -> NewRun:
        """The new child run of a trial: named by its tag ``mlflow.runName`` if given,
        else by its label; tagged, with its params."""
        name = tags.get("mlflow.runName") or tags.get("sweepflow.label", "")
        name = name or f"{self.job}[{'' if index is None else index}]"
        tags = {**tags, "sweepflow.role": "trial", "sweepflow.job": self.job}
        tags["mlflow.parentRunId"] = parent_id
        now = int(time.time() * 1000)
        return new_run(new_run_id(), name, tags, params, now, parent_id, status)

    def finished_record(
        self,
        run_id: str,
        workdir: Path,
        *,
        params: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        ok: bool = True,
        tags: dict[str, str] | None = None,
        started: float | None = None,
        ended: float | None = None,
    ) -> Finished:
        """What a finished trial's run gets: params, metrics (reported ones with their
        steps, then returned ones), tags, log files and reported artifacts, status, and
        the trial's own start and end (``started``/``ended``, seconds since the epoch,
        as in a ``TrialResult``; default: the run's creation, and now)."""
        from sweepflow.reporting.channel import read_report

        report = read_report(workdir / "report.jsonl")
        now = _ms(ended) or int(time.time() * 1000)
        rows = [(m[0], m[1], m[2] or 0, m[3]) for m in report.metrics]
        reported = {m[0] for m in report.metrics}
        rows += [(k, float(v), 0, now) for k, v in (metrics or {}).items() if k not in reported]
        logged = dict(params or {})
        logged.update({k: v for k, v in report.params.items() if k not in logged})
        artifacts: list[tuple[Path, str | None]] = [
            (workdir / name, None)
            for name in ("stdout.log", "stderr.log")
            if (workdir / name).is_file() and (workdir / name).stat().st_size
        ]
        artifacts += [(Path(p), folder) for p, folder in report.artifacts if Path(p).exists()]
        status = "FINISHED" if ok else "FAILED"
        record = Finished(run_id, status, now, logged, rows, dict(tags or {}), artifacts)
        record.start_ms = _ms(started)
        return record

    def write_finished(self, record: Finished) -> None:
        """Write one finished run through MLflow's client (any store)."""
        self.fallback.finish([cleaned(record)])
        if self.bulk is not None and record.start_ms is not None:
            self.bulk.set_start(record.run_id, record.start_ms)

    def write(self, records: list[Finished]) -> None:
        """Write finished runs: in one transaction of the direct store when it can; a
        run that fails there (e.g. a metric point the program logged itself) is
        written alone, else through MLflow's client, which merges. Same data either
        way: every record is :func:`~sweepflow.tracking.records.cleaned` first."""
        if not records:
            return
        records = [cleaned(record) for record in records]
        if self.bulk is None:
            self.store.finish(records)
            return
        try:
            self.bulk.finish(records)
            return
        except Exception as exc:
            if is_disk_full(exc):
                raise  # MLflow's client would fail the same way (with a traceback)
            if len(records) == 1:
                self.write_finished(records[0])
                return
        for record in records:
            try:
                self.bulk.finish([record])
            except Exception:
                self.write_finished(record)

    def stale_parents(self) -> list[Any]:
        """Parent runs left RUNNING by a ``sweepflow run`` on this host that is gone."""
        host = socket.gethostname()
        return [
            parent
            for parent in self.store.running(self.experiment_id, "sweepflow.role", "parent")
            if parent.tags.get("sweepflow.host") == host
            and not pid_alive(int(parent.tags.get("sweepflow.pid", 0)))
        ]

    def reap_stale(self, cached: Callable[[str], Any | None]) -> tuple[int, int]:
        """Close the runs of a killed ``sweepflow run`` on this host.

        Its trial runs left RUNNING or SCHEDULED are finished with their trial's cached
        result, or marked KILLED when there is none. A trial run FINISHED by its own
        program (one that logs to MLflow itself) whose result the killed driver never
        stored is marked KILLED too: the trial runs again, and only that run counts.
        Returns (finished, killed).
        """
        finished = killed = 0
        for parent in self.stale_parents():
            records, lost, superseded = [], [parent.run_id], []
            children = self.store.running(
                self.experiment_id,
                "mlflow.parentRunId",
                parent.run_id,
                statuses=("RUNNING", "SCHEDULED", "FINISHED"),
            )
            for child in children:
                result = cached(child.tags.get("sweepflow.cache_key", ""))
                if child.status == "FINISHED":
                    if result is None:
                        superseded.append(child.run_id)
                    continue
                if result is None:
                    lost.append(child.run_id)
                    continue
                params = getattr(result, "params", None) or child.params
                record = self.finished_record(
                    child.run_id,
                    Path(result.workdir),
                    params=params,
                    metrics=result.metrics,
                    started=getattr(result, "started", None),
                    ended=getattr(result, "ended", None),
                )
                records.append(record)
            now = int(time.time() * 1000)
            note = {"sweepflow.note": _SUPERSEDED}
            records += [Finished(run_id, "KILLED", now, tags=note) for run_id in superseded]
            self.write(records)
            self.store.set_status(lost, "KILLED", now)
            finished += len(records) - len(superseded)
            killed += len(lost) - 1 + len(superseded)
        return finished, killed


_SUPERSEDED = (
    "finished by its program, but its sweep was killed before the result was stored; "
    "the trial ran again in a later run"
)


class RunWriter:
    """Writes the trial runs of one execution on a background thread.

    SQLite takes one writer at a time and MLflow calls cost ~10 ms each; done on the
    scheduling loop they would leave workers idle. :meth:`prepare` creates a trial's
    run (RUNNING, with its params and tags) as soon as the thread gets to it; its id
    goes to the program as ``MLFLOW_RUN_ID``. Trials known ahead (a sweep's) can be
    prepared SCHEDULED before their turn and :meth:`start`-ed when submitted, so the
    scheduling loop never waits for a run to be written. With a SQL store whatever is queued is
    written together, hundreds of runs per transaction; otherwise one run at a time
    through MLflow's client.
    """

    BATCH = 500

    def __init__(self, tracker: Tracker, parent_id: str) -> None:
        self.tracker, self.parent_id = tracker, parent_id
        self._bulk = tracker.bulk
        self._queue: queue.Queue = queue.Queue()
        self._ids: dict[int, str] = {}
        self._created: set[int] = set()
        self._ready = threading.Condition()
        self._error: BaseException | None = None
        # Told when a write finds the disk full; the writes wait for close(), by which
        # time room was made (a SQL batch is one transaction, undone as a whole).
        self.on_full: Callable[[], BaseException] | None = None
        self.full: BaseException | None = None  # what on_full answered
        self._lean = False
        self._deferred: list[tuple[str, int, Any]] = []
        self._thread = threading.Thread(target=self._work, name="sweepflow-mlflow", daemon=True)
        self._thread.start()

    def prepare(
        self,
        index: int,
        tags: dict[str, str],
        params: dict[str, str] | None = None,
        scheduled: bool = False,
    ) -> None:
        """Create the run of trial ``index`` soon, with its ``tags`` and ``params``:
        RUNNING (call it when the trial starts), or SCHEDULED (ahead of its turn; then
        :meth:`start` it). Its start and end become the trial's own when it finishes."""
        status = "SCHEDULED" if scheduled else "RUNNING"
        self._queue.put(("create", index, (tags, params, status)))

    def start(self, index: int) -> None:
        """Mark the SCHEDULED run of trial ``index`` RUNNING (its trial was submitted)."""
        self._queue.put(("start", index, None))

    def run_id(self, index: int) -> str:
        """The run id of trial ``index`` (waits until the run exists)."""
        with self._ready:
            self._ready.wait_for(
                lambda: index in self._created or self._error is not None or self.full is not None
            )
            if self._error is not None:
                raise self._error
            if index not in self._created:
                raise self.full  # type: ignore[misc]
            return self._ids[index]

    def created(self) -> dict[int, str]:
        """The run ids of the trials whose runs exist, by trial index."""
        with self._ready:
            return {i: self._ids[i] for i in self._created}

    def finish(self, index: int, workdir: Path, **kwargs: Any) -> None:
        """Log trial ``index``'s results and close its run (``kwargs`` as
        :meth:`Tracker.finished_record` takes them; params the run was created with
        keep their value)."""
        self._queue.put(("finish", index, (workdir, kwargs)))

    def kill(self, index: int, tags: dict[str, str] | None = None) -> None:
        """Mark the run of a trial that will not finish KILLED (if it was created),
        with ``tags`` saying why."""
        self._queue.put(("kill", index, tags))

    def close(self) -> None:
        """Wait for every queued write; raise the first error the writer met."""
        self._queue.put(("stop", -1, None))
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._error is None:
                try:
                    self._write_or_defer(batch)
                except BaseException as exc:  # surfaced to the flow by run_id()/close()
                    with self._ready:
                        self._error = exc
                        self._ready.notify_all()
            if any(what == "stop" for what, _, _ in batch):
                return

    def _write_or_defer(self, batch: list[tuple[str, int, Any]]) -> None:
        """Write ``batch``; while the disk is full (``on_full`` was told), keep it and
        what follows for the end: :meth:`close` writes it all once room was made."""
        stopping = any(what == "stop" for what, _, _ in batch)
        if self._deferred or (self.full and not stopping):
            self._deferred.extend(batch)
            if not stopping:
                return
            batch, self._deferred = self._deferred, []
            self._lean = True  # room is short: the logs stay in the trial folders
        try:
            self._write_batch(batch)
        except Exception as exc:
            if self.on_full is None or not is_disk_full(exc) or stopping:
                raise
            self._deferred.extend(batch)
            with self._ready:
                self.full = self.on_full()
                self._ready.notify_all()

    def _write_batch(self, batch: list[tuple[str, int, Any]]) -> None:
        creates: dict[int, NewRun] = {}
        for what, i, payload in batch:
            if what == "create" and i not in self._created and i not in creates:
                tags, params, status = payload
                creates[i] = self.tracker.trial_run(self.parent_id, tags, params, i, status=status)
        # One transaction for the direct store; one run at a time through the client,
        # each id handed out as soon as its run exists.
        groups = [list(creates)] if self._bulk is not None else [[i] for i in creates]
        for group in groups:
            if not group:
                continue
            ids = self.tracker.store.create(self.tracker.experiment_id, [creates[i] for i in group])
            with self._ready:
                self._ids.update(zip(group, ids, strict=True))
                self._created.update(group)
                self._ready.notify_all()
        starts = [self._ids[i] for what, i, _ in batch if what == "start" and i in self._created]
        self.tracker.store.mark_running(starts)
        now = int(time.time() * 1000)
        records = []
        for what, i, payload in batch:
            if what == "finish":
                workdir, kwargs = payload
                record = self.tracker.finished_record(self._ids[i], workdir, **kwargs)
                if self._lean:
                    record.artifacts = []
                records.append(record)
            elif what == "kill" and i in self._created:
                records.append(Finished(self._ids[i], "KILLED", now, tags=dict(payload or {})))
        self.tracker.write(records)


@functools.cache
def versions() -> str:
    """Versions of the packages a result depends on (a JSON tag)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("sweepflow", "prefect", "mlflow", "pydantic", "numpy", "jax"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return json.dumps(found, sort_keys=True)


def trial_tags(spec: Any, flow_run_id: str) -> dict[str, str]:
    """The tags of a trial's run: what it is, what it was made from, where it ran."""
    return {
        "sweepflow.trial": spec.digest,
        "sweepflow.cache_key": spec.cache_key,
        "sweepflow.fingerprint": spec.fingerprint,
        "sweepflow.label": spec.label,
        "prefect.flow_run_id": flow_run_id,
        "sweepflow.versions": versions(),
    }
