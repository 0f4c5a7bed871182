"""sweepflow: ML experiment campaigns (sweeps, pipelines, searches) as Prefect flows.

The core package is pure Python: importing it loads no framework (Prefect, Dask, JAX,
MLflow, Optuna); each heavy library is imported only inside the module that wraps it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sweepflow.analysis import Run, RunCollection, RunLookupError, RunQueryError, runs
from sweepflow.errors import JobError, JobFileError, SweepflowError, SweepSyntaxError
from sweepflow.execution.trial import TrialFailed, TrialPruned
from sweepflow.hashing import digest
from sweepflow.reporting.channel import (
    Report,
    log_artifact,
    log_metrics,
    log_params,
    read_report,
    should_prune,
)
from sweepflow.reporting.program import ConfigError, main
from sweepflow.spec.jobs import Job, JobFile, SweepSet, load_jobs

try:
    __version__ = version("sweepflow")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "Job",
    "JobError",
    "JobFile",
    "JobFileError",
    "Report",
    "Run",
    "RunCollection",
    "RunLookupError",
    "RunQueryError",
    "SweepSet",
    "SweepSyntaxError",
    "SweepflowError",
    "TrialFailed",
    "TrialPruned",
    "__version__",
    "digest",
    "load_jobs",
    "log_artifact",
    "log_metrics",
    "log_params",
    "main",
    "read_report",
    "runs",
    "should_prune",
]
