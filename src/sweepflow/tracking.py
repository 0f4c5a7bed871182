"""MLflow as the record of runs: the flow process writes everything, in batches.

One experiment per job, one parent run per ``sweepflow run``, one child run per trial.
Trial processes never import MLflow; their reports are read from files and logged here.
Runs left RUNNING by a killed sweep are finished (when their trial's result is cached)
or marked KILLED, so every trial ends with exactly one FINISHED run.
"""

from __future__ import annotations

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

from ._tracking_uri import default_tracking_uri, ensure_experiment, fast_commits, prepare_store

__all__ = ["RunWriter", "Tracker", "default_tracking_uri", "trial_tags", "versions"]

_BATCH = 900  # below MLflow's 1,000 metrics per log_batch call


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
        from mlflow import MlflowClient

        prepare_store(uri)  # create the schema before anything fans out
        fast_commits(uri)
        self.uri, self.job = uri, job
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = ensure_experiment(self.client, experiment, uri)

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
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=name[:250])
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def finish_parent(self, run_id: str, counts: dict[str, int], status: str) -> None:
        """Record the trial counts and close the parent run."""
        now = int(time.time() * 1000)
        self._log(run_id, metrics=[(f"trials_{k}", float(v), None, now) for k, v in counts.items()])
        self.client.set_terminated(run_id, status=status)

    # -- trial runs ------------------------------------------------------------------
    def start_trial(self, parent_id: str, tags: dict[str, str]) -> str:
        """Create a trial's child run (RUNNING) before the trial starts; return its id.

        Params are logged with the results in one batch (:meth:`finish_trial`).
        """
        tags = {**tags, "sweepflow.role": "trial", "sweepflow.job": self.job}
        tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(
            self.experiment_id, tags=tags, run_name=tags.get("sweepflow.label", "")[:250]
        )
        return run.info.run_id

    def finish_trial(
        self,
        run_id: str,
        workdir: Path,
        *,
        params: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        ok: bool = True,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Log a finished trial in one batch: its params, its report (metrics with
        steps, params, artifacts), returned metrics and tags; attach its logs; close the
        run FINISHED or FAILED."""
        from .report import read_report

        report = read_report(workdir / "report.jsonl")
        now = int(time.time() * 1000)
        rows = [(m[0], m[1], m[2], m[3]) for m in report.metrics]
        reported = {m[0] for m in report.metrics}
        rows += [(k, v, None, now) for k, v in (metrics or {}).items() if k not in reported]
        logged = dict(params or {})
        logged.update({k: v for k, v in report.params.items() if k not in logged})
        self._log(run_id, params=logged, metrics=rows, tags=tags or {})
        for name in ("stdout.log", "stderr.log"):
            path = workdir / name
            if path.is_file() and path.stat().st_size:
                self.client.log_artifact(run_id, str(path))
        for path, artifact_path in report.artifacts:
            if Path(path).exists():
                self.client.log_artifact(run_id, str(path), artifact_path)
        self.client.set_terminated(run_id, status="FINISHED" if ok else "FAILED")

    def reap_stale(self, cached: Callable[[str], Any | None]) -> tuple[int, int]:
        """Close runs left RUNNING by a killed ``sweepflow run`` on this host.

        A stale trial run whose result is cached is finished with that result; the others
        are marked KILLED. Returns (finished, killed).
        """
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
    that need them (their ids go to the programs as ``MLFLOW_RUN_ID``).
    """

    def __init__(self, tracker: Tracker, parent_id: str) -> None:
        self.tracker, self.parent_id = tracker, parent_id
        self._queue: queue.Queue = queue.Queue()
        self._ids: dict[int, str] = {}
        self._ready = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="sweepflow-mlflow", daemon=True)
        self._thread.start()

    def prepare(self, index: int, tags: dict[str, str]) -> None:
        """Create the run of trial ``index`` soon (before it is needed)."""
        self._queue.put(("create", index, tags))

    def run_id(self, index: int) -> str:
        """The run id of trial ``index`` (waits until it is created)."""
        with self._ready:
            self._ready.wait_for(lambda: index in self._ids or self._error is not None)
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
            what, index, payload = self._queue.get()
            if what == "stop":
                return
            if self._error is not None:
                continue
            try:
                if what == "create" and index not in self._ids:
                    run_id = self.tracker.start_trial(self.parent_id, payload)
                    with self._ready:
                        self._ids[index] = run_id
                        self._ready.notify_all()
                elif what == "finish":
                    workdir, kwargs = payload
                    self.tracker.finish_trial(self._ids[index], workdir, **kwargs)
                elif what == "kill" and index in self._ids:
                    self.tracker.client.set_terminated(self._ids[index], status="KILLED")
            except BaseException as exc:  # surfaced to the flow by run_id()/close()
                with self._ready:
                    self._error = exc
                    self._ready.notify_all()


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
