"""sweepflow: ML experiment campaigns (sweeps, pipelines, searches) as Prefect flows.

The core package is pure Python: importing it loads no framework (Prefect, Dask, JAX,
MLflow, Optuna); each heavy library is imported only inside the module that wraps it.

Every trial process imports this package to call :func:`log_metrics`, so ``import
sweepflow`` loads nothing and starts nothing: each public name is imported from its
module on first use (PEP 562), and the reporting functions need only the standard
library.
"""

from __future__ import annotations

import importlib

# Type checkers read this as True; at run time it spares every trial importing `typing`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sweepflow.analysis import Run, RunCollection, RunLookupError, RunQueryError, runs
    from sweepflow.errors import (
        JobError,
        JobFileError,
        SweepflowError,
        SweepSyntaxError,
        TrialFailed,
        TrialPruned,
    )
    from sweepflow.hashing import digest
    from sweepflow.reporting.channel import (
        log_artifact,
        log_metrics,
        log_params,
        should_prune,
    )
    from sweepflow.reporting.program import ConfigError, main
    from sweepflow.reporting.reader import Report, read_report
    from sweepflow.spec.jobs import Job, JobFile, SweepSet, load_jobs
    from sweepflow.workflow.artifact import Artifact
    from sweepflow.workflow.steps import step
    from sweepflow.workflow.workflow import Workflow

    __version__: str

__all__ = [
    "Artifact",
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
    "Workflow",
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
    "step",
]

# Public name -> the module that defines it, imported on first access.
_HOMES = {
    "Artifact": "sweepflow.workflow.artifact",
    "ConfigError": "sweepflow.reporting.program",
    "Job": "sweepflow.spec.jobs",
    "JobError": "sweepflow.errors",
    "JobFile": "sweepflow.spec.jobs",
    "JobFileError": "sweepflow.errors",
    "Report": "sweepflow.reporting.reader",
    "Run": "sweepflow.analysis",
    "RunCollection": "sweepflow.analysis",
    "RunLookupError": "sweepflow.analysis",
    "RunQueryError": "sweepflow.analysis",
    "SweepSet": "sweepflow.spec.jobs",
    "SweepSyntaxError": "sweepflow.errors",
    "SweepflowError": "sweepflow.errors",
    "TrialFailed": "sweepflow.errors",
    "TrialPruned": "sweepflow.errors",
    "Workflow": "sweepflow.workflow.workflow",
    "digest": "sweepflow.hashing",
    "load_jobs": "sweepflow.spec.jobs",
    "log_artifact": "sweepflow.reporting.channel",
    "log_metrics": "sweepflow.reporting.channel",
    "log_params": "sweepflow.reporting.channel",
    "main": "sweepflow.reporting.program",
    "read_report": "sweepflow.reporting.reader",
    "runs": "sweepflow.analysis",
    "should_prune": "sweepflow.reporting.channel",
    "step": "sweepflow.workflow.steps",
}


def _version() -> str:
    """The installed distribution's version (``importlib.metadata`` is slow to import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sweepflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access, then keep it here."""
    if name == "__version__":
        value: Any = _version()
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    """The module's names, including the public names not imported yet."""
    return sorted({*globals(), *__all__})
