"""Run a workflow in this process: each selected step a cache hit from the store, or
run and stored (see :mod:`sweepflow.workflow.executor` for the parts of one step).

:func:`run_step` runs one step (or returns its hit); :func:`run_workflow` checks the
selection (:func:`check_stages`), runs the selected steps in order, takes the inputs of
steps not selected from the store, holds a store lease on everything it uses, and
records the run as a root for ``gc``. A Prefect flow (``flows/workflow.py``) passes an
``execute`` that runs each step that missed as a task.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sweepflow.store import Atom, Catalog, Lease, hold
from sweepflow.workflow.artifact import Artifact
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.executor import (
    Execute,
    Executed,
    StepFailed,
    StepPlan,
    StepWork,
    artifact,
    base_provenance,
    cached_outputs,
    plan_step,
    record_step,
)
from sweepflow.workflow.steps import Step
from sweepflow.workflow.workflow import Workflow

#: A cache key -> a context manager held while the step of that key is made; it yields
#: True when the key was made in this process before (see :func:`run_step`).
Claim = Callable[[str], AbstractContextManager[Any]]

__all__ = [
    "Claim",
    "Execute",
    "Executed",
    "StepFailed",
    "StepOutcome",
    "WorkflowResult",
    "check_stages",
    "import_workflow",
    "run_step",
    "run_workflow",
    "store_root",
    "stored_result",
    "trial_metrics",
]


def import_workflow(ref: str, project: str | Path) -> Workflow:
    """The workflow ``module:attribute`` names, imported with the project folder first
    on ``sys.path``.

    Raises:
        WorkflowError: A malformed reference, a module that fails to import, or an
            attribute that is missing or not a workflow.
    """
    module_name, colon, attribute = ref.partition(":")
    if not colon or not module_name or not attribute:
        raise WorkflowError(
            f"workflow {ref!r} is not module:attribute: write e.g. pipeline:train_and_evaluate"
        )
    folder = str(Path(project).resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise WorkflowError(
            f"workflow {ref!r}: cannot import module '{module_name}' from {folder} ({exc}): "
            "check the name, or run from the project folder"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        value = getattr(value, part, None)
    if not isinstance(value, Workflow):
        found = "nothing" if value is None else type(value).__name__
        raise WorkflowError(
            f"workflow {ref!r}: {module_name}.{attribute} is {found}, not a workflow: point "
            "at a sweepflow.Workflow(...) defined at module level"
        )
    return value


def store_root(state: Path) -> Path:
    """The artifact store of a state folder (``<state>/store``)."""
    return Path(state) / "store"


class StepOutcome(BaseModel):
    """What one step of a run did.

    Attributes:
        step: The step's name.
        status: ``hit`` (reused from the store) or ``ran``.
        seconds: Wall time of the step (lookup included).
        key: Its cache key.
        outputs: Output name -> full digest.
        types: Output name -> artifact type.
        inputs: Input name -> full digest of the artifact it took.
        input_types: Input name -> artifact type.
        metrics: The metrics it reported (last value of each); a hit's are those the
            run that made it reported.
    """

    model_config = ConfigDict(frozen=True)

    step: str
    status: Literal["hit", "ran"]
    seconds: float
    key: str
    outputs: dict[str, str]
    types: dict[str, str]
    inputs: dict[str, str] = {}
    input_types: dict[str, str] = {}
    metrics: dict[str, float] = {}

    @property
    def ids(self) -> list[str]:
        """The readable ids of its outputs (``dataset:3f2a9c81d0e4``)."""
        return [f"{self.types[name]}:{d[:12]}" for name, d in self.outputs.items()]


class WorkflowResult(BaseModel):
    """A workflow run: its id and each selected step's outcome, in order."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    run_id: str
    steps: list[StepOutcome]

    def by_step(self) -> dict[str, StepOutcome]:
        """Step name -> outcome."""
        return {o.step: o for o in self.steps}


def _outcome(
    step: Step,
    plan: StepPlan,
    status: Literal["hit", "ran"],
    started: float,
    atoms: Mapping[str, Atom],
    metrics: Mapping[str, float],
) -> StepOutcome:
    return StepOutcome(
        step=step.name,
        status=status,
        seconds=time.perf_counter() - started,
        key=plan.key,
        outputs={n: a.digest for n, a in atoms.items()},
        types={n: a.type for n, a in atoms.items()},
        inputs=plan.input_digests,
        input_types={n: a.type for n, a in plan.inputs.items()},
        metrics=dict(metrics),
    )


def _made_with(atoms: Mapping[str, Atom]) -> dict[str, float]:
    """The metrics the run that made ``atoms`` reported (kept in their meta.json)."""
    for atom in atoms.values():
        metrics = atom.meta.metadata.get("metrics")
        if isinstance(metrics, dict):
            return {str(k): float(v) for k, v in metrics.items()}
    return {}


def run_step(
    step: Step,
    cfg: BaseModel | None,
    inputs: Mapping[str, Artifact],
    *,
    project: Path,
    catalog: Catalog,
    provenance: Mapping[str, Any],
    no_cache: bool = False,
    watch: Iterable[str] = (),
    lease: Lease | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
    memo: dict[Path, Any] | None = None,
    execute: Execute | None = None,
    claim: Claim | None = None,
) -> tuple[StepOutcome, dict[str, Artifact]]:
    """One step: a hit from the store, else run, stored and recorded.

    ``execute`` (default: call it here) is given the step and the work, a function of
    extra provenance fields (a Prefect flow wraps it in a task and passes the run ids).
    ``claim`` (a cache key -> context manager) makes runs in this process that need the
    same step at once run it once: the others wait, then find it stored (the context
    manager yields whether that key was already made by this process).
    Returns the outcome and the outputs as artifacts.
    """
    started = time.perf_counter()
    plan = plan_step(step, cfg, inputs, project, watch, memo)
    found = None if no_cache else cached_outputs(step, plan, catalog)
    if found is None:
        work = StepWork(
            step,
            cfg,
            plan,
            catalog.root,
            provenance,
            project=project,
            lease=lease,
            retries=retries,
            retry_delay=retry_delay,
        )
        with claim(plan.key) if claim is not None else contextlib.nullcontext() as made_here:
            # Another run of this process may have made it while this one waited (with
            # no_cache: only what it made, not what earlier runs stored).
            again = claim is not None and (not no_cache or bool(made_here))
            found = cached_outputs(step, plan, catalog) if again else None
            if found is None:
                executed = work() if execute is None else execute(step, work)
                record_step(catalog, step, plan, executed)
    if found is not None:
        if lease is not None:
            lease.add(a.digest for a in found.values())
        outcome = _outcome(step, plan, "hit", started, found, _made_with(found))
        return outcome, {n: artifact(a) for n, a in found.items()}
    outcome = _outcome(step, plan, "ran", started, executed.atoms, executed.metrics)
    return outcome, {n: artifact(a) for n, a in executed.atoms.items()}


def _resolve_unselected(
    step: Step,
    cfg: BaseModel | None,
    available: Mapping[str, Artifact],
    project: Path,
    catalog: Catalog,
    watch: Iterable[str],
    memo: dict[Path, Any],
) -> dict[str, Artifact] | None:
    """The stored outputs of a step not selected, keyed as if it ran now; None if absent."""
    if any(name not in available for name in step.inputs):
        return None
    plan = plan_step(step, cfg, available, project, watch, memo)
    found = cached_outputs(step, plan, catalog)
    return None if found is None else {n: artifact(a) for n, a in found.items()}


def check_stages(
    workflow: Workflow,
    configs: Mapping[str, BaseModel],
    project_dir: str | Path,
    state_dir: str | Path,
    stages: str | None = None,
    watch: Iterable[str] = (),
) -> list[Step]:
    """The selected steps, once every input they take from a step not selected is
    found in the store (checked before anything runs; nothing is written).

    An unselected step fed by a selected one cannot be checked before the run; the run
    checks it when it gets there.

    Raises:
        WorkflowError: A bad selection, or an input the store does not hold (the line
            names the step to run first).
    """
    selected = workflow.stages(stages)
    chosen = {s.name for s in selected}
    project = Path(project_dir).resolve()
    producers = {(e.consumer, e.input): e for e in workflow.wiring()}
    available: dict[str, Artifact | None] = {}  # None: made by a selected step this run
    memo: dict[Path, Any] = {}
    root = store_root(Path(state_dir))
    with Catalog(root) as catalog:
        for step in workflow.steps:
            if step.name in chosen:
                for name in step.inputs:
                    if name not in available:
                        edge = producers[(step.name, name)]
                        raise WorkflowError(workflow.missing_from_store(edge))
                available.update(dict.fromkeys(step.outputs))
                continue
            pending = any(n in available and available[n] is None for n in step.inputs)
            known = {n: a for n in step.inputs if (a := available.get(n)) is not None}
            for name in step.outputs:
                available.pop(name, None)
            if pending:
                available.update(dict.fromkeys(step.outputs))  # the run decides
            elif len(known) == len(step.inputs):
                cfg = configs.get(step.name)
                found = _resolve_unselected(step, cfg, known, project, catalog, watch, memo)
                available.update(found or {})
    return selected


def run_workflow(
    workflow: Workflow,
    configs: Mapping[str, BaseModel],
    project_dir: str | Path,
    state_dir: str | Path,
    stages: str | Sequence[Step] | None = None,
    no_cache: bool = False,
    watch: Iterable[str] = (),
    on_step: Callable[[StepOutcome], None] | None = None,
    *,
    retries: int = 0,
    retry_delay: float = 1.0,
    execute: Execute | None = None,
    run_id: str | None = None,
    claim: Claim | None = None,
    memo: dict[Path, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    record_as: str | None = None,
) -> WorkflowResult:
    """Run the selected steps of ``workflow`` in order, reusing stored results.

    Args:
        workflow: The workflow (validated first).
        configs: Step name -> validated config (:func:`load_config`).
        project_dir: The project folder (code fingerprints and git are read here).
        state_dir: The state folder; the store is ``<state>/store``.
        stages: A ``--stages`` selection, or the steps; None runs every step.
        no_cache: Run every selected step even when its result is stored.
        watch: Extra globs of files in each step's code fingerprint.
        on_step: Called with each step's outcome as it finishes.
        retries, retry_delay: Transient errors of a step are retried this often.
        execute: Runs a step that missed (default: :func:`execute_step` here).
        run_id: The run's id (default: a new one); the run is recorded as a ``gc`` root.
        claim: Makes concurrent runs in this process make a step once (:func:`run_step`).
        memo: Code fingerprints already computed (shared by the runs of a sweep).
        provenance: Extra fields of every output's provenance (``mlflow_run_id``); with
            ``packages`` in it, the base fields too (:func:`base_provenance`, computed
            once for the runs of a sweep).
        record_as: The name its ``gc`` root is recorded under (default: the workflow's;
            ``gc --keep-last`` keeps the newest runs of each name).

    Raises:
        WorkflowError: A wiring problem, or an input of a selected step whose producer
            is not selected and has no stored result (names the step to run first).
    """
    workflow.validate()
    project = Path(project_dir).resolve()
    if stages is None or isinstance(stages, str):  # checked whole before anything runs
        selected = check_stages(workflow, configs, project, state_dir, stages, watch)
    else:
        selected = list(stages)
    chosen = {s.name for s in selected}
    run_id = run_id or uuid.uuid4().hex[:16]
    root = store_root(Path(state_dir))
    memo = {} if memo is None else memo
    given = dict(provenance or {})
    if "packages" in given:  # the base fields, computed once for a sweep's runs
        shared = given | {"workflow": workflow.name, "workflow_run": run_id}
    else:
        shared = base_provenance(project, workflow.name, run_id) | given
    producers = {(e.consumer, e.input): e for e in workflow.wiring()}
    available: dict[str, Artifact] = {}
    outcomes: list[StepOutcome] = []
    with Catalog(root) as catalog, hold(root) as lease:
        for step in workflow.steps:
            cfg = configs.get(step.name)
            if step.name not in chosen:
                found = _resolve_unselected(step, cfg, available, project, catalog, watch, memo)
                for name in step.outputs:
                    available.pop(name, None)  # a later producer shadows an earlier one
                if found is not None:
                    lease.add(a.digest for a in found.values())
                    available.update(found)
                continue
            for name in step.inputs:
                if name not in available:
                    raise WorkflowError(workflow.missing_from_store(producers[(step.name, name)]))
            outcome, outputs = run_step(
                step,
                cfg,
                {n: available[n] for n in step.inputs},
                project=project,
                catalog=catalog,
                provenance=shared,
                no_cache=no_cache,
                watch=watch,
                lease=lease,
                retries=retries,
                retry_delay=retry_delay,
                memo=memo,
                execute=execute,
                claim=claim,
            )
            lease.add(a.digest for a in outputs.values())
            available.update(outputs)
            outcomes.append(outcome)
            if on_step is not None:
                on_step(outcome)
        used = {d for o in outcomes for d in o.outputs.values()}
        used |= {a.digest for a in available.values()}
        catalog.add_run(run_id, record_as or workflow.name, used)
    return WorkflowResult(workflow=workflow.name, run_id=run_id, steps=outcomes)


def stored_result(
    workflow: Workflow,
    configs: Mapping[str, BaseModel],
    project_dir: str | Path,
    state_dir: str | Path,
    watch: Iterable[str] = (),
    memo: dict[Path, Any] | None = None,
) -> WorkflowResult | None:
    """The run of ``workflow`` as the store holds it, every step a hit; None as soon as
    one step's result is not stored. Reads only (no lease, no root recorded)."""
    root = store_root(Path(state_dir))
    if not (root / "catalog.db").is_file():
        return None
    project = Path(project_dir).resolve()
    available: dict[str, Artifact] = {}
    outcomes: list[StepOutcome] = []
    with Catalog(root) as catalog:
        for step in workflow.steps:
            if any(name not in available for name in step.inputs):
                return None
            started = time.perf_counter()
            inputs = {n: available[n] for n in step.inputs}
            plan = plan_step(step, configs.get(step.name), inputs, project, watch, memo)
            found = cached_outputs(step, plan, catalog)
            if found is None:
                return None
            outcomes.append(_outcome(step, plan, "hit", started, found, _made_with(found)))
            available.update({n: artifact(a) for n, a in found.items()})
    return WorkflowResult(workflow=workflow.name, run_id="", steps=outcomes)


def trial_metrics(steps: Sequence[StepOutcome]) -> dict[str, float]:
    """A workflow run's metrics for its trial: ``<step>.<metric>`` for each step's
    metrics (a hit's are those of the run that made it), the last step's first: the
    first metric is a sweep's target (its best trial), and a workflow's result is what
    its last step measured."""
    ordered = reversed(steps)
    return {f"{o.step}.{name}": value for o in ordered for name, value in o.metrics.items()}
