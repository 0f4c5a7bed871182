"""Pruning from inside a trial: report intermediate values to the study, ask its pruner.

Runs in the trial's process (a ``run:`` program, or a thread for ``call:``), which
reaches the study storage directly: an RDB URL, or a journal file on a shared file
system. The flow passes the study in the trial's environment, which the reporting
channel reads (per context for ``call:`` trials) and hands in as ``setting``:

- ``SWEEPFLOW_STUDY_STORAGE``: storage URL or journal path;
- ``SWEEPFLOW_STUDY_NAME``, ``SWEEPFLOW_STUDY_TRIAL_ID``: the study and the trial;
- ``SWEEPFLOW_STUDY_METRIC``: the objective metric (the one reported);
- ``SWEEPFLOW_STUDY_PRUNER``: ``median`` or ``hyperband``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

Setting = Callable[[str], "str | None"]

__all__ = ["STUDY_ENV", "pruned_at", "report_intermediate", "study_env"]

STUDY_ENV = (
    "SWEEPFLOW_STUDY_STORAGE",
    "SWEEPFLOW_STUDY_NAME",
    "SWEEPFLOW_STUDY_TRIAL_ID",
    "SWEEPFLOW_STUDY_METRIC",
    "SWEEPFLOW_STUDY_PRUNER",
)
_LOCK = threading.Lock()
_STUDIES: dict[tuple[str, str, str], Any] = {}
_LAST_STEP: dict[tuple[str | None, int], int] = {}  # (storage, trial id) -> step


def study_env(storage: str, study: str, trial_id: int, metric: str, pruner: str) -> dict[str, str]:
    """The environment a trial needs to report to ``study`` and ask its pruner."""
    values = (storage, study, str(trial_id), metric, pruner)
    return dict(zip(STUDY_ENV, values, strict=True))


def _trial(trial_setting: Setting) -> Any:
    """The current trial of the study (an ``optuna.Trial`` on the shared storage)."""
    import optuna

    from sweepflow.search.study import make_pruner, open_storage

    storage, name, trial_id, _, pruner = (trial_setting(k) or "" for k in STUDY_ENV)
    key = (storage, name, pruner)
    with _LOCK:
        study = _STUDIES.get(key)
        if study is None:
            study = optuna.load_study(
                study_name=name,
                storage=open_storage(storage),
                sampler=optuna.samplers.RandomSampler(),  # never samples here
                pruner=make_pruner(pruner),
            )
            _STUDIES[key] = study
    return optuna.trial.Trial(study, int(trial_id))


def report_intermediate(values: Mapping[str, float], step: int, trial_setting: Setting) -> None:
    """Report the objective's value at ``step`` to the study (other metrics: ignored)."""
    metric = trial_setting("SWEEPFLOW_STUDY_METRIC")
    if metric is None or metric not in values:
        return
    trial = _trial(trial_setting)
    trial.report(float(values[metric]), step)
    _LAST_STEP[(trial_setting(STUDY_ENV[0]), trial._trial_id)] = step


def pruned_at(trial_setting: Setting) -> int | None:
    """The last reported step if the pruner says to stop there, else None."""
    trial = _trial(trial_setting)
    if not trial.should_prune():
        return None
    return _LAST_STEP.get((trial_setting(STUDY_ENV[0]), trial._trial_id), 0)
