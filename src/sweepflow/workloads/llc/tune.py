"""``sweepflow llc tune``: an Optuna search over one sampler's hyperparameters, scored
against a reference λ per target.

The sampler tuned is the experiments file's sampler ``--sampler NAME``: its config is
the base, and each trial overrides the fields its space names. The space is written in
the sweep language (``step_size=log(1e-6:1e-3) batch_size=32,64,128``) and parsed by the
parser ``optimize: space`` uses; without ``--space`` the kind's default
(:func:`default_space`) is searched.

What is estimated stays fixed: ``gamma``, ``beta`` (the localised, tempered posterior),
and the target's keys (loss, data, ``w*``) are the same for every trial and for the
reference; a space naming one is refused before anything runs (:func:`tuning_space`).

λ_ref of each target is the estimate of a long HMC run (NUTS with ``--reference nuts``)
with the tuned sampler's ``gamma`` and ``beta`` (:func:`reference_config`). It and every
trial's run go through :func:`~sweepflow.workflow.run.run_step` with the LLC steps and
the project's artifact store (``<state>/store``): the reference is an ``llc-run``
artifact made once and a hit for every later tuning run, and a trial repeating a param
set is a hit too. The score of a trial is :func:`objective`.

The study is kept where searches keep theirs: ``<state>/studies/<study>.journal``,
study ``llc-tune-<experiment>-<sampler>``, TPE seeded by ``--seed`` (offset by the trials
already asked, as searches do). A run continues the study to ``n_trials`` counted
trials (a failed one counts, as in searches; one left running by a killed driver is
asked again): the same N again runs nothing, a larger N runs the difference. ``--study``
names another study. The study records
a digest of its setup (targets, base sampler, space, reference, objective); another
setup under the same name is refused rather than mixed in. Everything runs in this
process; nothing is tracked in MLflow (the study and the store hold the record).

The space, the reference config and the objective are pure functions of the private
``_tune_space`` module, imported from here.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sweepflow.hashing import digest
from sweepflow.plan.space import SearchSpace
from sweepflow.spec.source import suggest

from ._errors import LLCError
from ._sampler_config import SamplerConfig
from ._tune_space import (
    ESTIMAND_KEYS,
    _overridden,
    _shown,
    default_space,
    objective,
    reference_config,
    tuning_space,
)
from .experiment import Matrix, SamplerEntry

__all__ = [
    "ESTIMAND_KEYS",
    "TuneRequest",
    "TuneResult",
    "default_space",
    "objective",
    "reference_config",
    "run_cli",
    "study_name",
    "tune",
    "tuning_space",
]

_SETUP_ATTR = "sweepflow:llc-tune-setup"
_LAMBDAS_ATTR = "sweepflow:llc-tune-lambdas"


def study_name(experiment: str, sampler: str) -> str:
    """``llc-tune-<experiment>-<sampler>``: one study per tuned sampler."""
    return f"llc-tune-{experiment}-{sampler}"


class TuneRequest(BaseModel):
    """What ``sweepflow llc tune`` was asked."""

    model_config = ConfigDict(frozen=True)

    sampler: str = Field(..., description="Name of the experiments file's sampler to tune.")
    n_trials: int = Field(..., gt=0, description="Counted trials the study is continued to.")
    space: str | None = Field(None, description="Search space (None: the kind's default).")
    reference: Literal["hmc", "nuts"] = Field("hmc", description="The reference sampler.")
    reference_draws: int = Field(2000, gt=0, description="Draws per reference chain.")
    huber: float | None = Field(None, gt=0, description="Huber δ (None: absolute error).")
    per_work: bool = Field(False, description="Multiply the error by log10(grad evals).")
    seed: int = Field(0, description="Seed of the TPE sampler.")
    study: str | None = Field(None, description="Study name (None: :func:`study_name`).")


class TuneResult(BaseModel):
    """The study after a tuning run."""

    model_config = ConfigDict(frozen=True)

    study: str
    storage: str
    ran: int = Field(..., description="Trials run by this invocation.")
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    references: dict[str, float] = Field(..., description="Target name -> λ_ref.")


def _entry(matrix: Matrix, name: str) -> SamplerEntry:
    names = [s.name for s in matrix.samplers]
    for entry in matrix.samplers:
        if entry.name == name:
            return entry
    raise LLCError(
        f"--sampler {name}: {matrix.path.name} has no sampler named so{suggest(name, names)}"
    )


def tune(matrix: Matrix, request: TuneRequest, echo: Callable[[str], None]) -> TuneResult:
    """Continue the study of ``request.sampler`` to ``request.n_trials`` trials.

    Every check (sampler, space, precision) is made before anything is written.

    Raises:
        LLCError: Bad input (one line), a reference whose every chain diverged, or a
            study with another setup under the same name.
    """
    from .estimation import check_sampler_precision

    entry = _entry(matrix, request.sampler)
    base = entry.config
    space = tuning_space(request.space or default_space(base), base, entry.name)
    ref_cfg = reference_config(base, request.reference, request.reference_draws)
    for target in matrix.targets:
        check_sampler_precision(target.config, base)
        if not target.config.x64:
            raise LLCError(
                f"target '{target.name}' in {matrix.path.name} has precision float32, but the "
                f"{ref_cfg.kind} reference runs in float64 only: set precision: float64 on it"
            )
    return _Tuning(matrix, request, entry, space, ref_cfg, echo).run()


class _Tuning:
    """One invocation: the store and study opened, the references, then the trials."""

    def __init__(
        self,
        matrix: Matrix,
        request: TuneRequest,
        entry: SamplerEntry,
        space: SearchSpace,
        ref_cfg: SamplerConfig,
        echo: Callable[[str], None],
    ) -> None:
        from sweepflow.settings import state_dir

        self.matrix, self.request, self.entry, self.space = matrix, request, entry, space
        self.ref_cfg, self.echo = ref_cfg, echo
        self.project = matrix.path.parent.resolve()
        self.state = state_dir(self.project)
        self.name = request.study or study_name(matrix.experiment, entry.name)
        self.setup = digest(
            {
                "llc_tune": [t.id for t in matrix.targets],
                "base": entry.config,
                "space": [d.describe() for d in space.dimensions],
                "fixed": space.fixed,
                "reference": ref_cfg,
                "objective": [request.huber, request.per_work],
            }
        )
        self.used: set[str] = set()

    def run(self) -> TuneResult:
        from sweepflow.search.locations import file_stem, lock_path
        from sweepflow.search.loop import ask_lock
        from sweepflow.search.study import open_storage
        from sweepflow.store import Catalog, hold
        from sweepflow.workflow.executor import base_provenance
        from sweepflow.workflow.run import store_root

        location = str(self.state / "studies" / f"{file_stem(self.name)}.journal")
        root = store_root(self.state)
        with ask_lock(lock_path(location, self.state, self.name)):
            study = self._study(open_storage(location), location)
            done = self._header(study)
            with Catalog(root) as catalog, hold(root) as lease:
                self.catalog, self.lease = catalog, lease
                self.provenance = base_provenance(self.project, "llc-tune", None)
                targets = {t.name: self._target(t.config) for t in self.matrix.targets}
                refs = {name: self._reference(name, made) for name, made in targets.items()}
                ran = self._trials(study, done, targets, refs)
                catalog.add_run(uuid.uuid4().hex[:16], "llc-tune", self.used)
        return self._result(study, location, ran, refs)

    def _study(self, storage: Any, location: str) -> Any:
        from sweepflow.search.study import _optuna, recover_stale

        optuna = _optuna()
        study = optuna.create_study(
            storage=storage, study_name=self.name, direction="minimize", load_if_exists=True
        )
        stored = study.user_attrs.get(_SETUP_ATTR)
        if stored is None:
            study.set_user_attr(_SETUP_ATTR, self.setup)
        elif stored != self.setup:
            raise LLCError(
                f"study '{self.name}' in {location} was made for another setup (its targets, "
                "base sampler, space, reference or objective differ): name a new study "
                "with --study NAME, or delete that file to start again"
            )
        recover_stale(study, lambda trial: None)  # a dead driver's trials are asked again
        return study

    def _target(self, cfg: BaseModel) -> Any:
        from .steps import build_llc_target

        (made,) = self._step(build_llc_target, cfg, {})[1].values()
        return made

    def _step(self, step: Any, cfg: BaseModel, inputs: dict[str, Any]) -> tuple[Any, dict]:
        from sweepflow.workflow.run import run_step

        outcome, outputs = run_step(
            step,
            cfg,
            inputs,
            project=self.project,
            catalog=self.catalog,
            provenance=self.provenance,
            lease=self.lease,
        )
        self.used |= set(outcome.outputs.values())
        return outcome, outputs

    def _sample(self, target: Any, cfg: SamplerConfig) -> tuple[Any, Any]:
        """A run of ``cfg`` on ``target`` (stored or made now) and its estimate."""
        from .analysis import summarize
        from .steps import SampleConfig, load_run, sample_llc_target

        config = SampleConfig(sampler=cfg)
        outcome, outputs = self._step(sample_llc_target, config, {"target": target})
        made = outputs["run"]
        run = load_run(made.path, metadata=made.meta)
        return outcome, (summarize(run), run)

    def _reference(self, name: str, target: Any) -> float:
        outcome, (estimate, _) = self._sample(target, self.ref_cfg)
        how = "reused" if outcome.status == "hit" else f"ran in {outcome.seconds:.1f} s"
        cfg = self.ref_cfg
        if math.isnan(estimate.llc):
            raise LLCError(
                f"reference {cfg.kind} on target '{name}' diverged in every chain "
                f"({outcome.ids[0]}): raise gamma on sampler '{self.entry.name}', "
                "or check the target"
            )
        from .analysis import true_llc

        exact = true_llc(estimate)
        known = "" if exact is None else f", exact {exact:.4g}"
        self.echo(
            f"reference {name}: λ_ref = {estimate.llc:.4g} ± {estimate.llc_sd:.2g}{known} "
            f"({cfg.kind} {cfg.chains} x {cfg.draws}, {how}, {outcome.ids[0]})"
        )
        return float(estimate.llc)

    def _header(self, study: Any) -> int:
        """Print the study's state and space; return its counted trials."""
        from sweepflow.search.study import counted

        done = sum(counted(t) for t in study.get_trials(deepcopy=False))
        self.echo(
            f"study {self.name}: {done} trial(s) before, {max(0, self.request.n_trials - done)} "
            f"to run; space {'; '.join(d.describe() for d in self.space.dimensions)}"
        )
        return done

    def _trials(
        self, study: Any, done: int, targets: Mapping[str, Any], refs: Mapping[str, float]
    ) -> int:
        """Ask, run and tell trials until ``done`` reaches ``n_trials``; return how many ran."""
        from sweepflow.search.study import DRIVER_ATTR, _optuna, distributions, driver_id

        optuna = _optuna()
        study.sampler = optuna.samplers.TPESampler(seed=self.request.seed + len(study.trials))
        wanted, driver, ran = distributions(self.space), driver_id(), 0
        while done < self.request.n_trials:
            trial = study.ask(wanted)
            trial.set_user_attr(DRIVER_ATTR, driver)
            shown = _shown(trial.params | self.space.fixed)
            try:
                value, how = self._score(trial, targets, refs)
            except LLCError as exc:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self.echo(f"trial {trial.number}: failed ({exc})  {shown}")
            else:
                study.tell(trial, value)
                self.echo(f"trial {trial.number}: objective {value:.4g}  {shown}  ({how})")
            done, ran = done + 1, ran + 1
        return ran

    def _score(
        self, trial: Any, targets: Mapping[str, Any], refs: Mapping[str, float]
    ) -> tuple[float, str]:
        from sweepflow.workflow.executor import StepFailed

        cfg = _overridden(self.entry.config, dict(trial.params) | self.space.fixed, "trial")
        errors, work, lambdas, hits, seconds = [], [], {}, 0, 0.0
        for name, target in targets.items():
            try:
                outcome, (estimate, run) = self._sample(target, cfg)
            except StepFailed as exc:
                raise LLCError(str(exc).splitlines()[0]) from None
            if math.isnan(estimate.llc):
                raise LLCError(f"every chain diverged on target '{name}'")
            errors.append(estimate.llc - refs[name])
            work.append(float(sum(run.grad_evals)))
            lambdas[name] = float(estimate.llc)
            hits += outcome.status == "hit"
            seconds += outcome.seconds
        trial.set_user_attr(_LAMBDAS_ATTR, lambdas)
        value = objective(errors, work, self.request.huber, self.request.per_work)
        how = "cached" if hits == len(targets) else f"ran in {seconds:.1f} s"
        return value, f"λ̂ {', '.join(f'{v:.4g}' for v in lambdas.values())}; {how}"

    def _result(self, study: Any, location: str, ran: int, refs: Mapping[str, float]) -> TuneResult:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise LLCError(
                f"no trial of study '{self.name}' finished (every one failed): narrow the "
                "space (a smaller step_size), or raise --n-trials"
            )
        best = study.best_trial
        params = dict(best.params) | self.space.fixed
        self.echo(f"best: trial {best.number}, objective {best.value:.4g}: {_shown(params)}")
        for name, value in refs.items():
            self.echo(f"λ_ref {name} = {value:.6g}")
        self.echo(f"study: {location}")
        return TuneResult(
            study=self.name,
            storage=location,
            ran=ran,
            best_params=params,
            best_value=float(best.value),
            best_trial=best.number,
            references=dict(refs),
        )


def run_cli(
    file: Path,
    sampler: str,
    n_trials: int,
    space: str | None,
    reference: str,
    reference_draws: int,
    per_work: bool,
    huber: float | None,
    seed: int,
    echo: Callable[[str], None],
    study: str | None = None,
) -> int:
    """``sweepflow llc tune``: check the options, read the experiments file, tune.

    Raises:
        LLCError: A bad option or experiments file (one line), before anything runs.
    """
    from .experiment import load_experiment

    if reference not in ("hmc", "nuts"):
        raise LLCError(f"--reference {reference}: not a reference sampler; use hmc or nuts")
    if huber is not None and not huber > 0:
        raise LLCError(f"--huber {huber:g}: the Huber delta must be positive, e.g. --huber 0.1")
    request = TuneRequest(
        sampler=sampler,
        n_trials=n_trials,
        space=space,
        reference="nuts" if reference == "nuts" else "hmc",
        reference_draws=reference_draws,
        huber=huber,
        per_work=per_work,
        seed=seed,
        study=study,
    )
    tune(load_experiment(file), request, echo)
    return 0
