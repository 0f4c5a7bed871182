"""MLflow as the record of runs: the flow process writes everything, in batches.

One experiment per job, one parent run per ``sweepflow run``, one child run per trial.
Trial processes never import MLflow; their reports are read from files and logged here.
Runs left RUNNING by a killed sweep are finished (when their trial's result is cached)
or marked KILLED, so every trial ends with exactly one FINISHED run.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ._tracking_uri import default_tracking_uri, ensure_experiment, prepare_store

__all__ = ["Tracker", "default_tracking_uri", "versions"]

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
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{self.job}")
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def finish_parent(self, run_id: str, counts: dict[str, int], status: str) -> None:
        """Record the trial counts and close the parent run."""
        now = int(time.time() * 1000)
        self._log(run_id, metrics=[(f"trials_{k}", float(v), None, now) for k, v in counts.items()])
        self.client.set_terminated(run_id, status=status)

    # -- trial runs ------------------------------------------------------------------
    def start_trial(self, parent_id: str, params: dict[str, str], tags: dict[str, str]) -> str:
        """Create a trial's child run (RUNNING) before the trial starts; return its id."""
        tags = {**tags, "sweepflow.role": "trial", "sweepflow.job": self.job}
        tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(
            self.experiment_id, tags=tags, run_name=tags.get("sweepflow.label", "")[:250]
        )
        self._log(run.info.run_id, params=params)
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
        """Log a finished trial: its report (metrics with steps, params, artifacts), the
        returned metrics, its logs; then close the run FINISHED or FAILED."""
        from .report import read_report

        report = read_report(workdir / "report.jsonl")
        now = int(time.time() * 1000)
        rows = [(m[0], m[1], m[2], m[3]) for m in report.metrics]
        reported = {m[0] for m in report.metrics}
        rows += [(k, v, None, now) for k, v in (metrics or {}).items() if k not in reported]
        logged = params or {}
        extra = {k: v for k, v in report.params.items() if k not in logged}
        self._log(run_id, params=extra, metrics=rows, tags=tags or {})
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
                        params=child.data.params,
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
        from mlflow.entities import Metric, Param, RunTag

        param_list = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        metric_list = [Metric(k, v, ts, step or 0) for k, v, step, ts in metrics or []]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        for chunk in _chunks(param_list, 100):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(metric_list, _BATCH):
            self.client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(tag_list, 100):
            self.client.log_batch(run_id, tags=chunk)


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
