"""The light reporting channel: programs log metrics, params and artifacts cheaply.

Under sweepflow (``SWEEPFLOW_REPORT`` is set) every call appends one JSON line to the
trial's report file and imports nothing heavy; the flow later reads the file with
:func:`read_report` and writes it into the trial's MLflow run in batches. Run by hand
(no ``SWEEPFLOW_REPORT``), the same calls go straight to MLflow.

Every trial process imports this module, so it loads only the standard library:
the reading side (:class:`Report`, with pydantic) lives in
:mod:`sweepflow.reporting.reader` and is re-exported here on first use, and pruning
(Optuna) is imported only when a trial of a search reports or asks.

Report lines, one JSON object each, append-only, a single writer per file::

    {"kind": "metrics", "values": {"loss": 0.5}, "step": 3, "time": 1700000000000}
    {"kind": "params", "values": {"model.depth": "3"}}
    {"kind": "artifact", "path": "/abs/plot.png", "artifact_path": "plots"}
    {"kind": "pruned", "step": 3}
    {"kind": "ended"}   (a trial of a batch or submit unit returned; see members)

Inside a batch or ``submit:`` unit every line also names its trial, ``"trial": 2``
(:mod:`sweepflow.reporting.members`).

An ``artifact_path`` is a folder inside the run's artifacts, normalised
(:func:`artifact_folder`); one that is absolute or leaves them is refused in the
trial, before anything is recorded.

In a search with a pruner, a metric logged with a step is also reported to the study
as an intermediate value, and :func:`should_prune` asks the study's pruner.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import numbers
import os
import posixpath
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from sweepflow.errors import SweepflowError
from sweepflow.reporting import members

# Type checkers read this as True; at run time it spares every trial importing `typing`.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from sweepflow.reporting.reader import ArtifactEntry, MetricPoint, Report, read_report

__all__ = [
    "EXPERIMENT_ENV",
    "REPORT_ENV",
    "ArtifactEntry",
    "ArtifactPathError",
    "MetricPoint",
    "Report",
    "artifact_folder",
    "by_hand_experiment_id",
    "flatten",
    "in_process",
    "log_artifact",
    "log_metrics",
    "log_params",
    "program_experiment",
    "read_report",
    "report_path",
    "reporting_to",
    "should_prune",
    "trial_ended",
    "trial_setting",
    "unflatten",
]
REPORT_ENV = "SWEEPFLOW_REPORT"
# The experiment of a program run by hand (default: the program's name).
EXPERIMENT_ENV = "SWEEPFLOW_EXPERIMENT"
# A call: trial runs in a thread of the flow's process, where the environment is
# shared; its report file is set per context instead.
_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sweepflow_report", default=None
)
# ... and so is the rest of its environment (the study to report to when pruning).
_ENV: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "sweepflow_trial_env", default=None
)

# Report files this process has appended to; before the first append to a file we
# make sure it ends with a newline, so a line cut short by an earlier killed writer
# cannot swallow the next one.
_CHECKED: set[str] = set()

# The reading side, re-exported here: loaded on first use (it imports pydantic).
_READER = ("ArtifactEntry", "MetricPoint", "Report", "read_report")


class ArtifactPathError(SweepflowError, ValueError):
    """An ``artifact_path`` that would put files outside the run's artifacts (absolute,
    or leaving them with ``..``); nothing is logged."""


def __getattr__(name: str) -> Any:
    if name in _READER:
        from sweepflow.reporting import reader

        return getattr(reader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_READER})


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys.

    >>> flatten({"model": {"depth": 3, "act": "relu"}, "lr": 0.1})
    {'model.depth': 3, 'model.act': 'relu', 'lr': 0.1}
    """
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Nest dotted keys: the inverse of :func:`flatten`.

    A key that clashes with a section (``a=1`` and ``a.b=2``) stays flat.

    >>> unflatten({"model.depth": "3", "model.act": "relu", "lr": "0.1"})
    {'model': {'depth': '3', 'act': 'relu'}, 'lr': '0.1'}
    """
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                break
        if isinstance(node, dict) and not isinstance(node.get(leaf), dict):
            node[leaf] = value
        else:
            tree[key] = value
    return tree


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{what} names must be non-empty strings, got {name!r}")
    return name


def _metric_value(name: str, value: object) -> float:
    """``value`` as a float; reject bools, strings and anything not a real number."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):
        raise TypeError(
            f"metric {name!r} is a bool ({value!r}); log a number, e.g. float({value!r})"
        )
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (str, bytes, complex, numbers.Complex)) or not hasattr(value, "__float__"):
        raise TypeError(
            f"metric {name!r} must be a real number, got {type(value).__name__} {value!r}"
        )
    try:  # 0-d arrays (numpy, JAX, torch scalars) convert with float()
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"metric {name!r} must be a single real number, got {type(value).__name__} "
            f"{value!r} ({exc})"
        ) from None


def _check_step(step: object) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int or None, got {type(step).__name__} {step!r}")
    return int(step)


def report_path() -> str | None:
    """The report file of the current trial, or None when run by hand."""
    return _TARGET.get() or os.environ.get(REPORT_ENV)


def in_process() -> bool:
    """Whether the current trial is a ``call:`` trial in the flow's process."""
    return _TARGET.get() is not None


def trial_setting(name: str) -> str | None:
    """A setting of the current trial's environment (per context for ``call:`` trials)."""
    env = _ENV.get()
    if env is not None:
        return env.get(name)
    return os.environ.get(name)


@contextlib.contextmanager
def reporting_to(path: str | Path, env: dict[str, str] | None = None) -> Iterator[None]:
    """Send this context's ``log_*`` calls to the report file ``path``.

    Used for ``call:`` trials, which run in the flow's process (threads share the
    environment, so ``SWEEPFLOW_REPORT`` cannot tell them apart); ``env`` is the
    trial's own environment, read by :func:`trial_setting`.
    """
    token = _TARGET.set(str(path))
    env_token = _ENV.set(dict(env or {}))
    try:
        yield
    finally:
        _ENV.reset(env_token)
        _TARGET.reset(token)


def _append(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write (flushed: no buffering in between),
    tagged with the trial it is for inside a batch or submit unit (see :mod:`.members`)."""
    position = members.current(trial_setting)
    if position is not None:
        record = {**record, "trial": position}
    line = (json.dumps(record, ensure_ascii=False, allow_nan=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if path not in _CHECKED:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            _CHECKED.add(path)
        os.write(fd, line)
    finally:
        os.close(fd)


def program_experiment(argv0: str | None = None) -> str:
    """The experiment a program run by hand records into, unless MLflow's environment
    (``$MLFLOW_EXPERIMENT_ID``, ``$MLFLOW_EXPERIMENT_NAME``) names one.

    ``$SWEEPFLOW_EXPERIMENT``, else the program's name: the stem of its script
    (``sys.argv[0]``; the package for ``python -m package``), else ``Default``
    (an interactive session, ``python -c``).

    >>> program_experiment("/home/me/example.py"), program_experiment("/src/pkg/__main__.py")
    ('example', 'pkg')
    """
    named = os.environ.get(EXPERIMENT_ENV)
    if named:
        return named
    if argv0 is None:
        argv0 = sys.argv[0] if sys.argv else ""
    script = Path(argv0)
    name = script.parent.name if script.stem == "__main__" else script.stem
    return name if name and not argv0.startswith("-") else "Default"


def by_hand_experiment_id() -> str:
    """Point MLflow at the by-hand store and return the id of the experiment to record
    into: MLflow's environment if it names one, else :func:`program_experiment`."""
    import mlflow

    from sweepflow.tracking.uri import by_hand_experiment, ensure_experiment

    experiment_id = by_hand_experiment()  # pins the store; reads MLFLOW_EXPERIMENT_*
    if os.environ.get("MLFLOW_EXPERIMENT_ID") or os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return experiment_id
    uri = mlflow.get_tracking_uri()
    return ensure_experiment(mlflow.MlflowClient(uri), program_experiment(), uri)


def _by_hand() -> Any:
    """The ``mlflow`` module with an active run for by-hand use (started if needed)."""
    import mlflow

    if mlflow.active_run() is None:
        experiment_id = by_hand_experiment_id()
        if os.environ.get("MLFLOW_RUN_ID"):
            mlflow.start_run()  # resumes the run named by the environment
        else:
            mlflow.start_run(experiment_id=experiment_id)
    return mlflow


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log metric values at an optional step.

    Under sweepflow this appends one line to the trial's report file; run by hand it
    logs to the active MLflow run (started in the default tracking URI if none).

    Args:
        metrics: Metric names and real-number values (numpy/JAX scalars are fine).
        step: The training step, or None.

    Raises:
        TypeError: A name is not a string, a value is not a real number (bools are
            rejected), or the step is not an int.
        ValueError: A value is an array with more than one element.
    """
    values = {_check_name(k, "metric"): _metric_value(k, v) for k, v in dict(metrics).items()}
    step = _check_step(step)
    report = report_path()
    if report:
        stamp = time.time_ns() // 1_000_000
        _append(report, {"kind": "metrics", "values": values, "step": step, "time": stamp})
        if step is not None and trial_setting("SWEEPFLOW_STUDY_STORAGE"):
            from sweepflow.search.pruning import report_intermediate

            report_intermediate(values, step, trial_setting)
        return
    if values:
        _by_hand().log_metrics(values, step=step)


def trial_ended() -> None:
    """Record that the program of one trial of a batch or ``submit:`` unit returned
    (``@sweepflow.main`` calls it): that trial is done even if the unit fails later."""
    report = report_path()
    if report and members.current(trial_setting) is not None:
        _append(report, {"kind": "ended"})


def should_prune() -> bool:
    """Whether the search's pruner says to stop this trial now.

    Only in a search with ``pruner:`` set, after the objective metric was logged with a
    step; always False otherwise (a sweep, or run by hand). When it says yes, stop
    the trial (return, exit, or raise :class:`sweepflow.TrialPruned`): it is told
    PRUNED with its last reported value, whatever its exit status.
    """
    report = report_path()
    if not report or not trial_setting("SWEEPFLOW_STUDY_STORAGE"):
        return False
    from sweepflow.search.pruning import pruned_at

    step = pruned_at(trial_setting)
    if step is None:
        return False
    _append(report, {"kind": "pruned", "step": step})
    return True


def log_params(params: Mapping[str, Any]) -> None:
    """Log params; nested mappings become dotted keys and values are stored as ``str()``.

    Under sweepflow this appends one line to the trial's report file; run by hand it
    logs to the active MLflow run (started in the default tracking URI if none).

    Args:
        params: Param names and values.

    Raises:
        TypeError: A name is not a non-empty string.
    """
    values = {_check_name(k, "param"): str(v) for k, v in flatten(dict(params)).items()}
    report = report_path()
    if report:
        _append(report, {"kind": "params", "values": values})
        return
    if values:
        _by_hand().log_params(values)


def artifact_folder(artifact_path: str | os.PathLike[str] | None) -> str | None:
    """``artifact_path`` checked and normalised: a folder inside the run's artifacts,
    or None for their top. Absolute paths and paths leaving them (``..``) are refused,
    whichever separator they use.

    >>> artifact_folder("plots/./epoch-1/")
    'plots/epoch-1'
    >>> artifact_folder("plots/../.") is None
    True
    >>> artifact_folder("plots/../../..")
    Traceback (most recent call last):
    ...
    sweepflow.reporting.channel.ArtifactPathError: artifact path 'plots/../../..' leaves ...

    Raises:
        ArtifactPathError: An absolute path, or one whose normalised form starts with
            ``..`` (the message says how to fix it).
    """
    if artifact_path is None:
        return None
    text = os.fspath(artifact_path)
    if not isinstance(text, str):
        raise TypeError(f"artifact_path must be a str or None, got {artifact_path!r}")
    fix = (
        "give a folder inside the run's artifacts, relative to them (e.g. 'plots' or "
        "'plots/epoch-1'), or None for the top"
    )
    slashed = text.replace("\\", "/")  # a Windows store would read it so
    if slashed.startswith("/") or re.match(r"[A-Za-z]:", slashed):
        raise ArtifactPathError(f"artifact path {text!r} is absolute: {fix}")
    normal = posixpath.normpath(slashed) if slashed else "."
    if normal == ".." or normal.startswith("../"):
        raise ArtifactPathError(f"artifact path {text!r} leaves the run's artifacts: {fix}")
    return None if normal == "." else posixpath.normpath(text)


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file or folder as an artifact of the run.

    Under sweepflow the absolute path is recorded and the flow copies the file when the
    trial ends (so write it completely first); run by hand it is copied right away.

    Args:
        path: The file or folder.
        artifact_path: A folder inside the run's artifacts (relative, normalised by
            :func:`artifact_folder`), or None for the top.

    Raises:
        ArtifactPathError: ``artifact_path`` is absolute or leaves the run's artifacts
            (``..``); nothing is logged.
        FileNotFoundError: ``path`` does not exist.
    """
    folder = artifact_folder(artifact_path)
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise FileNotFoundError(f"cannot log artifact {str(path)!r}: no such file or folder")
    report = report_path()
    if report:
        record = {"kind": "artifact", "path": str(source), "artifact_path": folder}
        _append(report, record)
        return
    mlflow = _by_hand()
    if source.is_dir():
        mlflow.log_artifacts(str(source), folder)
    else:
        mlflow.log_artifact(str(source), folder)
