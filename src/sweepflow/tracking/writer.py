"""MLflow as the record of runs: the flow process writes everything, in batches.

One experiment per job, one parent run per ``sweepflow run``, one child run per trial.
Trial processes never import MLflow; their reports are read from files and logged here.
Runs left RUNNING by a killed sweep are finished (when their trial's result is cached)
or marked KILLED, so every trial ends with exactly one FINISHED run.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sweepflow.tracking._bulk import BulkStore, Finished, new_run_id
from sweepflow.tracking.uri import (
    default_tracking_uri,
    ensure_experiment,
    experiment_location,
    fast_commits,
    prepare_store,
    schema_head,
)

__all__ = ["RunWriter", "Tracker", "default_tracking_uri", "trial_tags", "versions", "warm_up"]

_BATCH = 900  # below MLflow's 1,000 metrics per log_batch call
# Opening a store (importing MLflow, checking the schema) takes seconds; warm_up does it
# on a thread while the caller waits on something else, and Tracker waits for it here.
_OPEN_LOCK = threading.Lock()
_CLOSED_AT_EXIT: set[str] = set()


def _open(uri: str) -> Any:
    """MLflow's client for ``uri`` (importing MLflow: ~4 s of CPU)."""
    from mlflow import MlflowClient

    with _OPEN_LOCK:
        _prepare(uri)
        client = MlflowClient(tracking_uri=uri)
        engine = getattr(client._tracking_client.store, "engine", None)  # built once per URI
        if engine is not None and uri not in _CLOSED_AT_EXIT:
            # Closing the connections folds SQLite's write-ahead log into mlflow.db, so
            # the file alone holds every run even when the process exits quickly.
            _CLOSED_AT_EXIT.add(uri)
            atexit.register(engine.dispose)
    return client


def _direct(uri: str) -> BulkStore | None:
    """The store of ``uri`` written without MLflow (a SQL store of the installed
    MLflow's schema), or None (see ``_bulk_mlflow``)."""
    with _OPEN_LOCK:
        _prepare(uri)
    return BulkStore.open(uri, schema_head())


def _prepare(uri: str) -> None:
    """Create the store's schema before anything fans out; commit without fsyncs."""
    prepare_store(uri)
    fast_commits(uri)


def warm_up(uri: str) -> threading.Thread:
    """Open the MLflow store of ``uri`` on a thread (e.g. while Prefect starts a server);
    a :class:`Tracker` made later finds it open. Errors surface in the Tracker."""

    def work() -> None:
        with contextlib.suppress(Exception):  # the Tracker opens it again and reports it
            if _direct(uri) is None:
                _open(uri)

    thread = threading.Thread(target=work, name="sweepflow-mlflow-open", daemon=True)
    thread.start()
    return thread


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Tracker:
    """The MLflow side of one job execution (used only in the flow's process)."""

    def __init__(self, uri: str, experiment: str, job: str) -> None:
        self.uri, self.job = uri, job
        self.bulk = _direct(uri)  # None: everything through MLflow's client
        if self.bulk is not None:
            location = experiment_location(experiment, uri)
            self.experiment_id = self.bulk.experiment(experiment, location)
        else:
            self.experiment_id = ensure_experiment(self.client, experiment, uri)

    @functools.cached_property
    def client(self) -> Any:
        """MLflow's client for the store (imports MLflow the first time)."""
        return _open(self.uri)

    # -- parent run ------------------------------------------------------------------
    def start_parent(self, params: dict[str, str], tags: dict[str, str]) -> str:
        """Open the parent run of this execution; return its id."""
        tags = {
            **tags,
            "sweepflow.role": "parent",
            "sweepflow.job": self.job,
            "sweepflow.host": socket.gethostname(),
            "sweepflow.pid": str(os.getpid()),
        }
        # Named by what was asked for ("train lr=0.1"), so runs of one job tell apart.
        name = " ".join(filter(None, (self.job, params.get("overrides"), params.get("extra"))))
        if self.bulk is not None:
            run_id, now = new_run_id(), int(time.time() * 1000)
            self.bulk.create(self.experiment_id, [(run_id, name[:250], tags)], now)
            logged = {k: str(v)[:6000] for k, v in params.items()}
            self.bulk.finish([Finished(run_id, None, now, params=logged)])
            return run_id
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name[:250])
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def finish_parent(self, run_id: str, counts: dict[str, int], status: str) -> None:
        """Record the trial counts and close the parent run."""
        now = int(time.time() * 1000)
        if self.bulk is not None:
            rows = [(f"trials_{k}", float(v), 0, now) for k, v in counts.items()]
            self.bulk.finish([Finished(run_id, status, now, metrics=rows)])
            return
        self._log(run_id, metrics=[(f"trials_{k}", float(v), None, now) for k, v in counts.items()])
        self.client.set_terminated(run_id, status=status)

    def log_text(self, run_id: str, name: str, text: str) -> None:
        """Save ``text`` as the artifact file ``name`` of ``run_id``."""
        if self.bulk is not None:
            self.bulk.write_artifact(run_id, name, text)
        else:
            self.client.log_text(run_id, text, name)

    # -- trial runs ------------------------------------------------------------------
    def trial_run_tags(self, parent_id: str, tags: dict[str, str]) -> dict[str, str]:
        """The tags a trial's child run is created with."""
        tags = {**tags, "sweepflow.role": "trial", "sweepflow.job": self.job}
        tags["mlflow.parentRunId"] = parent_id
        return tags

    def start_trial(self, parent_id: str, tags: dict[str, str]) -> str:
        """Create a trial's child run (RUNNING) before the trial starts; return its id.

        Params are logged with the results in one batch (:meth:`finish_trial`).
        """
        tags = self.trial_run_tags(parent_id, tags)
        run = self.client.create_run(
            self.experiment_id, tags=tags, run_name=tags.get("sweepflow.label", "")[:250]
        )
        return run.info.run_id

    def finish_trial(self, run_id: str, workdir: Path, **kwargs: Any) -> None:
        """Log a finished trial in one batch and close its run FINISHED or FAILED
        (``kwargs`` as :meth:`finished_record` takes them)."""
        self.write_finished(self.finished_record(run_id, workdir, **kwargs))

    def finished_record(
        self,
        run_id: str,
        workdir: Path,
        *,
        params: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        ok: bool = True,
        tags: dict[str, str] | None = None,
    ) -> Finished:
        """What a finished trial's run gets: params, metrics (reported ones with their
        steps, then returned ones), tags, log files and reported artifacts, status."""
        from sweepflow.reporting.channel import read_report

        report = read_report(workdir / "report.jsonl")
        now = int(time.time() * 1000)
        rows = [(m[0], m[1], m[2] or 0, m[3]) for m in report.metrics]
        reported = {m[0] for m in report.metrics}
        rows += [(k, float(v), 0, now) for k, v in (metrics or {}).items() if k not in reported]
        logged = dict(params or {})
        logged.update({k: v for k, v in report.params.items() if k not in logged})
        artifacts = [
            (workdir / name, None)
            for name in ("stdout.log", "stderr.log")
            if (workdir / name).is_file() and (workdir / name).stat().st_size
        ]
        artifacts += [(Path(p), folder) for p, folder in report.artifacts if Path(p).exists()]
        status = "FINISHED" if ok else "FAILED"
        return Finished(run_id, status, now, logged, rows, dict(tags or {}), artifacts)

    def write_finished(self, record: Finished) -> None:
        """Write one finished run through MLflow's client (any store)."""
        rows = [(k, v, step, ts) for k, v, step, ts in record.metrics]
        self._log(record.run_id, params=record.params, metrics=rows, tags=record.tags)
        for path, folder in record.artifacts:
            self.client.log_artifact(record.run_id, str(path), folder)
        if record.status is not None:
            self.client.set_terminated(record.run_id, status=record.status, end_time=record.end_ms)

    def reap_stale(self, cached: Callable[[str], Any | None]) -> tuple[int, int]:
        """Close runs left RUNNING by a killed ``sweepflow run`` on this host.

        A stale trial run whose result is cached is finished with that result; the others
        are marked KILLED. Returns (finished, killed).
        """
        if self.bulk is not None:
            return self._reap_direct(cached)
        finished = killed = 0
        host = socket.gethostname()
        parents = self.client.search_runs(
            [self.experiment_id],
            "attributes.status = 'RUNNING' and tags.`sweepflow.role` = 'parent'",
            max_results=1000,
        )
        for parent in parents:
            tags = parent.data.tags
            if tags.get("sweepflow.host") != host or _pid_alive(int(tags.get("sweepflow.pid", 0))):
                continue
            children = self.client.search_runs(
                [self.experiment_id],
                f"attributes.status = 'RUNNING' and tags.`mlflow.parentRunId` = "
                f"'{parent.info.run_id}'",
                max_results=50_000,
            )
            for child in children:
                result = cached(child.data.tags.get("sweepflow.cache_key", ""))
                if result is not None:
                    self.finish_trial(
                        child.info.run_id,
                        Path(result.workdir),
                        params=getattr(result, "params", None) or child.data.params,
                        metrics=result.metrics,
                    )
                    finished += 1
                else:
                    self.client.set_terminated(child.info.run_id, status="KILLED")
                    killed += 1
            self.client.set_terminated(parent.info.run_id, status="KILLED")
        return finished, killed

    def _reap_direct(self, cached: Callable[[str], Any | None]) -> tuple[int, int]:
        """:meth:`reap_stale` on the direct store (same rules, a few queries)."""
        assert self.bulk is not None
        finished = killed = 0
        host = socket.gethostname()
        for parent in self.bulk.running(self.experiment_id, "sweepflow.role", "parent"):
            tags = parent.tags
            if tags.get("sweepflow.host") != host or _pid_alive(int(tags.get("sweepflow.pid", 0))):
                continue
            records, lost = [], [parent.run_id]
            for child in self.bulk.running(self.experiment_id, "mlflow.parentRunId", parent.run_id):
                result = cached(child.tags.get("sweepflow.cache_key", ""))
                if result is None:
                    lost.append(child.run_id)
                    continue
                params = getattr(result, "params", None) or child.params
                records.append(
                    self.finished_record(
                        child.run_id, Path(result.workdir), params=params, metrics=result.metrics
                    )
                )
            finish_runs(self, records)
            self.bulk.set_status(lost, "KILLED")
            finished, killed = finished + len(records), killed + len(lost) - 1
        return finished, killed

    # -- helpers ---------------------------------------------------------------------
    def _log(
        self,
        run_id: str,
        *,
        params: dict[str, Any] | None = None,
        metrics: list[tuple[str, float, int | None, int]] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """One ``log_batch`` call when everything fits MLflow's limits, else several."""
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException

        param_list = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        metric_list = [Metric(k, v, ts, step or 0) for k, v, step, ts in metrics or []]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        if len(param_list) <= 100 and len(tag_list) <= 100 and len(metric_list) <= 800:
            try:
                self.client.log_batch(run_id, metric_list, param_list, tag_list)
                return
            except MlflowException:
                pass  # e.g. the program logged a param itself: go item by item below
        for chunk in _chunks(metric_list, _BATCH):
            self.client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(tag_list, 100):
            self.client.log_batch(run_id, tags=chunk)
        for param in param_list:
            try:
                self.client.log_batch(run_id, params=[param])
            except MlflowException:
                continue  # the program's own value for this key stands


class RunWriter:
    """Writes the trial runs of one execution on a background thread.

    SQLite takes one writer at a time and MLflow calls cost ~10 ms each; done on the
    scheduling loop they would leave workers idle. Runs are created ahead of the trials
    that need them (their ids go to the programs as ``MLFLOW_RUN_ID``). With a SQL
    store, whatever is queued is written together: hundreds of runs per transaction
    (see ``_bulk_mlflow``); otherwise one run at a time through MLflow's client.
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
        self._thread = threading.Thread(target=self._work, name="sweepflow-mlflow", daemon=True)
        self._thread.start()

    def prepare(self, index: int, tags: dict[str, str]) -> None:
        """Create the run of trial ``index`` soon (before it is needed)."""
        if self._bulk is not None:
            with self._ready:
                self._ids.setdefault(index, new_run_id())
        self._queue.put(("create", index, tags))

    def run_id(self, index: int) -> str:
        """The run id of trial ``index`` (waits until the run exists)."""
        with self._ready:
            self._ready.wait_for(lambda: index in self._created or self._error is not None)
            if self._error is not None:
                raise self._error
            return self._ids[index]

    def finish(self, index: int, workdir: Path, **kwargs: Any) -> None:
        """Log trial ``index``'s results and close its run (see Tracker.finish_trial)."""
        self._queue.put(("finish", index, (workdir, kwargs)))

    def kill(self, index: int) -> None:
        """Mark the run of a trial that will not finish KILLED (if it was created)."""
        self._queue.put(("kill", index, None))

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
                    if self._bulk is not None:
                        self._write_batch(batch)
                    else:
                        for item in batch:
                            self._write_one(*item)
                except BaseException as exc:  # surfaced to the flow by run_id()/close()
                    with self._ready:
                        self._error = exc
                        self._ready.notify_all()
            if any(what == "stop" for what, _, _ in batch):
                return

    def _created_now(self, indexes: list[int]) -> None:
        with self._ready:
            self._created.update(indexes)
            self._ready.notify_all()

    def _write_one(self, what: str, index: int, payload: Any) -> None:
        if what == "create" and index not in self._created:
            run_id = self.tracker.start_trial(self.parent_id, payload)
            with self._ready:
                self._ids[index] = run_id
            self._created_now([index])
        elif what == "finish":
            workdir, kwargs = payload
            self.tracker.finish_trial(self._ids[index], workdir, **kwargs)
        elif what == "kill" and index in self._created:
            self.tracker.client.set_terminated(self._ids[index], status="KILLED")

    def _write_batch(self, batch: list[tuple[str, int, Any]]) -> None:
        assert self._bulk is not None
        creates = [
            (i, tags) for what, i, tags in batch if what == "create" and i not in self._created
        ]
        if creates:
            rows = [
                (
                    self._ids[i],
                    tags.get("sweepflow.label", "")[:250] or f"{self.tracker.job}[{i}]",
                    self.tracker.trial_run_tags(self.parent_id, tags),
                )
                for i, tags in dict(creates).items()
            ]
            self._bulk.create(self.tracker.experiment_id, rows, int(time.time() * 1000))
            self._created_now([i for i, _ in creates])
        now = int(time.time() * 1000)
        records = []
        for what, i, payload in batch:
            if what == "finish":
                workdir, kwargs = payload
                records.append(self.tracker.finished_record(self._ids[i], workdir, **kwargs))
            elif what == "kill" and i in self._created:
                records.append(Finished(self._ids[i], "KILLED", now))
        finish_runs(self.tracker, records)


def finish_runs(tracker: Tracker, records: list[Finished]) -> None:
    """Write finished runs in one transaction of the direct store; if that fails (e.g.
    a program logged a param itself), one by one through MLflow's client, which merges."""
    if not records:
        return
    assert tracker.bulk is not None
    try:
        tracker.bulk.finish(records)
    except Exception:
        for record in records:
            tracker.write_finished(record)


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
