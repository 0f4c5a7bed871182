"""The Optuna side of a search: storage, study, sampler, pruner, and crash recovery.

The only module (with :mod:`sweepflow.search.pruning`) that imports Optuna. A study lives in
a storage that outlives the driver: by default a journal file in the state folder
(``.sweepflow/studies/<job>.journal``), or any Optuna storage URL (an RDB for
clusters). Every trial records which driver process asked it, so a new driver can tell
a trial left RUNNING by a dead one from one still being evaluated.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepflow.errors import JobError
from sweepflow.plan.space import SearchSpace, format_value
from sweepflow.search.locations import file_stem, place_storage

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

    from sweepflow.spec.jobs import Optimize

__all__ = [
    "DRIVER_ATTR",
    "INTERRUPTED_ATTR",
    "counted",
    "distributions",
    "driver_id",
    "holds_slot",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "params_text",
    "recover_stale",
    "study_location",
]

DRIVER_ATTR = "sweepflow:driver"  # host:pid:start of the process that asked the trial
INTERRUPTED_ATTR = "sweepflow:interrupted"  # FAIL because its driver died: not counted


def _optuna() -> Any:
    """The ``optuna`` module, quiet (imported here: the core package stays light)."""
    import optuna

    if not getattr(_optuna, "done", False):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Multivariate TPE (joint densities) is still marked experimental.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        _optuna.done = True  # type: ignore[attr-defined]
    return optuna


def study_location(
    settings: Optimize, job: str, state: Path, storage: str | None = None
) -> tuple[str, str]:
    """(study name, storage) of a search: ``storage`` (``--storage``), else the job's
    ``storage:``, else the journal file ``<state>/studies/<study>.journal``. Paths are
    placed (see :func:`~sweepflow.search.locations.place_storage`): absolute, relative
    ones inside the state folder, so trials on other processes or hosts reach the
    same file.

    Raises:
        JobError: The storage is not one Optuna opens, or leaves the state folder.
    """
    name = settings.study or job
    text = storage or settings.storage
    if text is None:
        return name, str(state / "studies" / f"{file_stem(name)}.journal")
    try:
        return name, place_storage(text, state)
    except ValueError as exc:
        key = "--storage" if storage else "optimize.storage"
        raise JobError(f"{key} {exc}") from None


def open_storage(location: str) -> optuna.storages.BaseStorage:
    """An Optuna storage: a URL (``sqlite:///...``, ``postgresql://...``) or a journal
    file path (created with its folder)."""
    optuna = _optuna()
    if "://" in location:
        return optuna.storages.RDBStorage(location)
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """Optuna distributions of the searched dimensions."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for dim in space.dimensions:
        if dim.kind == "categorical":
            out[dim.key] = CategoricalDistribution(dim.choices)
        elif dim.kind == "int":
            low, high = dim.low or 0, dim.high or 0  # a range always has both
            out[dim.key] = IntDistribution(int(low), int(high), step=int(dim.step or 1))
        else:
            low, high = dim.low or 0.0, dim.high or 0.0
            out[dim.key] = FloatDistribution(float(low), float(high), log=dim.log, step=dim.step)
    return out


def make_sampler(settings: Optimize, space: SearchSpace, asked: int) -> optuna.samplers.BaseSampler:
    """The job's sampler (settings already checked by ``search_space``), its seed offset
    by ``asked``, the trials already in the study: a resumed search, or a second driver
    of the study, does not ask the same random start-up points again."""
    seed = None if settings.seed is None else settings.seed + asked
    samplers = _optuna().samplers
    if settings.sampler == "tpe":
        return samplers.TPESampler(seed=seed, constant_liar=True, multivariate=True)
    if settings.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if settings.sampler == "qmc":
        return samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
    if settings.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    grid = {dim.key: list(dim.grid or ()) for dim in space.dimensions}  # checked finite

    class AskTellGrid(samplers.GridSampler):  # type: ignore[name-defined]
        """Optuna's grid sampler, minus its ``study.stop()`` once the grid is done,
        which only works inside ``study.optimize``: the search stops at ``n_trials``
        (the grid's size by default)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            pass

    return AskTellGrid(grid, seed=seed)


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner called ``name`` (``none``, ``median``, ``hyperband``)."""
    optuna = _optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(
    settings: Optimize,
    space: SearchSpace,
    storage: optuna.storages.BaseStorage,
    name: str,
    where: Callable[[str], JobError],
) -> optuna.Study:
    """Create the study or load it to resume.

    The sampler's seed is offset by the trials already in the study, so a resumed
    search does not ask its random start-up points again.

    Raises:
        JobError: The stored study optimises other directions.
    """
    optuna = _optuna()
    directions = list(settings.directions)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=directions,
        load_if_exists=True,
        sampler=optuna.samplers.RandomSampler(),  # replaced below, once the size is known
        pruner=make_pruner(settings.pruner),
    )
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise where(
            f"asks to {'/'.join(directions)} but study '{name}' in its storage is set to "
            f"{'/'.join(stored)}: name another study (optimize.study) or delete the old one"
        )
    study.sampler = make_sampler(settings, space, len(study.get_trials(deepcopy=False)))
    return study


def driver_id() -> str:
    """``host:pid:start`` of this process (start time tells a reused pid apart)."""
    import psutil

    started = int(psutil.Process().create_time())
    return f"{socket.gethostname()}:{os.getpid()}:{started}"


def _driver_alive(driver: str) -> bool:
    """Whether the driver process named ``host:pid:start`` is still running."""
    import psutil

    host, _, rest = driver.partition(":")
    pid_text, _, start_text = rest.partition(":")
    if host != socket.gethostname():
        return False  # one driver per study: a trial from another host is stale
    try:
        process = psutil.Process(int(pid_text))
        return int(process.create_time()) == int(start_text)
    except (psutil.Error, ValueError):
        return False


def counted(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards ``n_trials``: finished, or failed on its own
    (not because its driver died)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and not trial.system_attrs.get(INTERRUPTED_ATTR)


def holds_slot(trial: FrozenTrial) -> bool:
    """Whether a trial holds one of the ``n_trials`` slots: counted, or RUNNING (asked
    by this or another driver; one left by a dead driver holds its slot until a
    driver's start settles it, see :func:`recover_stale`). WAITING trials (enqueued)
    hold none: the next ask takes them."""
    from optuna.trial import TrialState

    return trial.state == TrialState.RUNNING or counted(trial)


def params_text(trial: FrozenTrial | optuna.Trial, space: SearchSpace) -> dict[str, str]:
    """A trial's parameters as program text: sampled values, then the fixed ones."""
    sampled = {dim.key: format_value(trial.params[dim.key]) for dim in space.dimensions}
    return {**sampled, **space.fixed}


def recover_stale(
    study: optuna.Study, cached_values: Callable[[FrozenTrial], list[float] | None]
) -> tuple[int, int]:
    """Settle the trials a dead driver left RUNNING.

    A trial whose result is cached (it finished, the driver died before telling) is
    told that value; the others are marked FAIL as interrupted, which does not count
    towards ``n_trials``: their slots are asked again. Returns (told, failed).
    """
    from optuna.trial import TrialState

    told = failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        driver = trial.user_attrs.get(DRIVER_ATTR) or trial.system_attrs.get(DRIVER_ATTR)
        if driver and _driver_alive(str(driver)):
            continue
        values = cached_values(trial)
        if values is not None:
            study.tell(trial.number, values, skip_if_finished=True)
            told += 1
            continue
        study._storage.set_trial_system_attr(trial._trial_id, INTERRUPTED_ATTR, True)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        failed += 1
    return told, failed
