"""A search as units for the engine: asks from the study (one driver at a time), tells of
outcomes, crash recovery.

Optuna's public API only (``Study.ask``/``tell``, ``Trial.set_user_attr``), imported
inside functions so the core stays light. The flow supplies the Prefect runner and the
MLflow side; everything here runs with fakes of neither.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepflow.engine.scheduler import Outcome, Unit
from sweepflow.execution.trial import stop_orphan
from sweepflow.search.locations import lock_path
from sweepflow.search.study import (
    DRIVER_ATTR,
    counted,
    driver_id,
    holds_slot,
    make_sampler,
    open_storage,
    open_study,
    params_text,
    recover_stale,
    study_location,
)

if TYPE_CHECKING:
    import optuna

    from sweepflow.execution.trial import TrialResult, TrialSpec
    from sweepflow.plan.space import SearchSpace
    from sweepflow.spec.jobs import Job

__all__ = [
    "Asked",
    "Search",
    "StudySource",
    "ask_lock",
    "import_plotting",
    "objective_values",
    "recover",
    "run_tags",
    "start_search",
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
    """The engine's source for a search: asks until the study holds ``n_trials``.

    Several drivers may run one study at once (two ``sweepflow run`` of one job): each
    counts the trials holding a slot (:func:`~sweepflow.search.study.holds_slot`:
    finished or failed, or RUNNING under any driver) and asks one more only while they
    are fewer than ``n_trials``, holding ``lock`` (a lock shared by every driver of the
    study, :func:`ask_lock`) around the count and the ask, so together they never ask
    more. ``sampler(asked)``, if given, makes the sampler at the first ask, its seed
    offset by the trials then in the study: two drivers do not ask the same points.

    Each ask is marked with this driver (``DRIVER_ATTR``), so a later driver can tell
    a trial left RUNNING by a dead one. A trial whose spec has a cached result is
    settled at once (``cached``, looked up by its cache key): told without a task run.
    """

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        n_trials: int,
        make_spec: Callable[[int, dict[str, str]], TrialSpec],
        cached: Callable[[str], TrialResult | None],
        driver: str,
        *,
        lock: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
        sampler: Callable[[int], optuna.samplers.BaseSampler] | None = None,
    ) -> None:
        from sweepflow.search.study import distributions

        self.study, self.space, self.n_trials = study, space, n_trials
        self.make_spec, self.cached, self.driver = make_spec, cached, driver
        self.lock, self.sampler = lock, sampler
        self.dists = distributions(space)
        self.asked = 0
        self.full = False

    def take(self, inflight: int) -> Unit[Asked] | None:
        """Ask the next trial; None once the study holds ``n_trials``."""
        if self.full:
            return None
        with self.lock():
            trials = self.study.get_trials(deepcopy=False)
            if sum(holds_slot(t) for t in trials) >= self.n_trials:
                self.full = True
                return None
            if self.sampler is not None:
                self.study.sampler, self.sampler = self.sampler(len(trials)), None
            trial = self.study.ask(self.dists)
            trial.set_user_attr(DRIVER_ATTR, self.driver)  # before another driver looks
        self.asked += 1
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


@contextlib.contextmanager
def ask_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder) while the block
    runs: the drivers of one study count its trials and ask one at a time. The kernel
    drops it when its holder dies, SIGKILL included; NFSv4 and Lustre emulate it with
    POSIX locks, so drivers on other hosts sharing a journal take turns too."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    cached values; the others' leftover processes stopped. Returns (told, failed).
    Call it holding the ask lock: a live driver's fresh ask is not yet marked."""

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


@dataclass(frozen=True)
class Search:
    """A study ready to drive, as this driver found it.

    Attributes:
        study: The Optuna study, its sampler made at the first ask.
        name: The study's name.
        location: Its storage (placed: paths absolute).
        total: The trials the study is to hold (``n_trials``).
        before: Trials that count towards ``total``, found finished at the start.
        remaining: Slots free at the start (other drivers may take some).
        source: The engine's source of asks.
    """

    study: optuna.Study
    name: str
    location: str
    total: int
    before: int
    remaining: int
    source: StudySource


def start_search(
    job: Job,
    space: SearchSpace,
    state: Path,
    make_spec: Callable[[int, dict[str, str]], TrialSpec],
    cached: Callable[[str], TrialResult | None],
    n_trials: int | None = None,
    storage: str | None = None,
) -> Search:
    """Create or resume the study of ``job`` (a job with ``optimize:``), settle what
    dead drivers left in it (under the ask lock: a live driver may be asking), and make
    its source of asks. ``n_trials`` and ``storage`` override the job's (``--n-trials``,
    ``--storage``).
    """
    settings = job.optimize
    if settings is None:
        raise job.error("has no optimize: section: run it with run_job", "optimize")
    name, location = study_location(settings, job.key, state, storage)
    lock = partial(ask_lock, lock_path(location, state, name))
    with lock():  # another driver may be creating the study, or asking
        study = open_study(
            settings, space, open_storage(location), name, lambda m: job.error(m, "optimize")
        )
        recover(study, space, make_spec, cached, settings.metrics)
        trials = study.get_trials(deepcopy=False)
    total = n_trials or settings.n_trials or space.grid_size() or 20
    sampler = partial(make_sampler, settings, space)
    source = StudySource(
        study, space, total, make_spec, cached, driver_id(), lock=lock, sampler=sampler
    )
    before, held = sum(map(counted, trials)), sum(map(holds_slot, trials))
    return Search(study, name, location, total, before, max(0, total - held), source)


def import_plotting() -> None:
    """Import matplotlib and Optuna's plots (the history plot at the end needs them);
    call on a thread while trials run."""
    with contextlib.suppress(Exception):
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import optuna.visualization.matplotlib  # noqa: F401
