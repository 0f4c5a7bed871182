"""A search as units for the engine: asks from the study, tells of outcomes, crash recovery.

Optuna's public API only (``Study.ask``/``tell``, ``Trial.set_user_attr``), imported
inside functions so the core stays light. The flow supplies the Prefect runner and the
MLflow side; everything here runs with fakes of neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepflow.engine.scheduler import Outcome, Unit
from sweepflow.execution.trial import stop_orphan
from sweepflow.search.study import DRIVER_ATTR, params_text, recover_stale

if TYPE_CHECKING:
    import optuna

    from sweepflow.execution.trial import TrialResult, TrialSpec
    from sweepflow.plan.space import SearchSpace

__all__ = [
    "Asked",
    "StudySource",
    "import_plotting",
    "objective_values",
    "recover",
    "run_tags",
    "tell",
]

_OPTUNA_STATE = {"done": "COMPLETE", "cached": "COMPLETE", "pruned": "PRUNED"}  # else FAIL


@dataclass(frozen=True)
class Asked:
    """A trial asked from the study, with the spec that evaluates it."""

    trial: optuna.Trial
    spec: TrialSpec


def objective_values(metrics: Mapping[str, float], names: tuple[str, ...]) -> list[float] | str:
    """The objective values a trial reported, or why they are missing.

    >>> objective_values({"loss": 1, "acc": 0.5}, ("loss",))
    [1.0]
    >>> objective_values({"acc": 0.5}, ("loss",))[:45]
    "the trial reported no 'loss' metric (it repor"
    """
    missing = [name for name in names if name not in metrics]
    if not missing:
        return [float(metrics[name]) for name in names]
    name = missing[0]
    reported = ", ".join(sorted(metrics)) or "nothing"
    return (
        f"the trial reported no '{name}' metric (it reported: {reported}): return "
        f"{{'{name}': value}} from the function, or call "
        f"sweepflow.log_metrics({{'{name}': value}}) in the program"
    )


class StudySource:
    """The engine's source for a search: ``n`` asks, one trial per unit.

    Each ask is marked with this driver (``DRIVER_ATTR``), so a later driver can tell
    a trial left RUNNING by a dead one. A trial whose spec has a cached result is
    settled at once (``cached``, looked up by its cache key): told without a task run.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        n: int,
        make_spec: Callable[[int, dict[str, str]], TrialSpec],
        cached: Callable[[str], TrialResult | None],
        driver: str,
    ) -> None:
        from sweepflow.search.study import distributions

        self.study, self.space, self.n = study, space, n
        self.make_spec, self.cached, self.driver = make_spec, cached, driver
        self.dists = distributions(space)
        self.asked = 0

    def take(self, inflight: int) -> Unit[Asked] | None:
        """Ask the next trial; None once ``n`` were asked."""
        if self.asked >= self.n:
            return None
        trial = self.study.ask(self.dists)
        self.asked += 1
        trial.set_user_attr(DRIVER_ATTR, self.driver)
        item = Asked(trial, self.make_spec(trial.number, params_text(trial, self.space)))
        hit = self.cached(item.spec.cache_key)
        if hit is None:
            return Unit([item])
        return Unit([item], settled=[Outcome("cached", hit, seconds=hit.duration)])

    def observe(self, outcome: Outcome) -> None:
        """Nothing to learn: a search never chunks."""

    def rest(self) -> list[Asked]:
        """Trials are asked when taken: none is ever left over."""
        return []


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: Outcome,
    names: tuple[str, ...],
    logged: Callable[[], Mapping[str, float]] | None = None,
) -> Outcome:
    """Tell the study how ``trial`` ended; return the outcome as told.

    A trial that ran but reported no objective (neither in its result nor in
    ``logged()``, the metrics its program logged to its tracking run) is failed. A
    failed trial's error is kept as its ``error`` user attribute.
    """
    from optuna.trial import TrialState

    status, error, values = outcome.status, outcome.error, None
    if outcome.result is not None and status in ("done", "cached"):
        metrics = outcome.result.metrics
        found = objective_values(metrics, names)
        if isinstance(found, str) and logged is not None:
            found = objective_values({**logged(), **metrics}, names)
        if isinstance(found, str):
            status, error = "failed", found
        else:
            values = found
    if status in ("done", "cached"):
        study.tell(trial.number, values)
    elif status == "pruned":
        study.tell(trial.number, state=TrialState.PRUNED)
    else:
        trial.set_user_attr("error", error[:2000])
        study.tell(trial.number, state=TrialState.FAIL)
    return replace(outcome, status=status, error=error)


def run_tags(number: int, study_name: str, status: str) -> dict[str, str]:
    """The tracking tags of a search trial's run that ended with ``status``.

    >>> run_tags(3, "tune", "cached")["optuna.state"]
    'COMPLETE'
    """
    return {
        "optuna.trial_number": str(number),
        "optuna.study_name": study_name,
        "optuna.state": _OPTUNA_STATE.get(status, "FAIL"),
        "sweepflow.cached": str(status == "cached").lower(),
    }


def recover(
    study: optuna.Study,
    space: SearchSpace,
    make_spec: Callable[[int, dict[str, str]], TrialSpec],
    cached: Callable[[str], TrialResult | None],
    names: tuple[str, ...],
) -> tuple[int, int]:
    """Settle the trials a dead driver left RUNNING (see ``recover_stale``): told their
    cached values; the others' leftover processes stopped. Returns (told, failed)."""

    def stale_values(trial: Any) -> list[float] | None:
        if any(dim.key not in trial.params for dim in space.dimensions):
            return None  # died while asking: nothing ran
        spec = make_spec(trial.number, params_text(trial, space))
        hit = cached(spec.cache_key)
        values = objective_values(hit.metrics, names) if hit else None
        if not isinstance(values, list):
            stop_orphan(Path(spec.workdir))  # its slot is asked again
            return None
        return values

    return recover_stale(study, stale_values)


def import_plotting() -> None:
    """Import matplotlib and Optuna's plots (the history plot at the end needs them);
    call on a thread while trials run."""
    with contextlib.suppress(Exception):
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import optuna.visualization.matplotlib  # noqa: F401
