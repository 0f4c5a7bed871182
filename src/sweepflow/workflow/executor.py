"""The three parts of running one step, so that the middle one can run anywhere.

- :func:`plan_step` (driver): the code fingerprint, input digests and cache key;
- :func:`execute_step` (anywhere, a Prefect task or a worker): call the function in a
  fresh workspace, put its outputs in the store, retry transient errors; it writes no
  catalog;
- :func:`record_step` (driver, the only writer of the catalog): index the outputs,
  their ``made_from`` edges and the cache entry.

A step's function returns ``{output: path under workspace}``, plus optionally
``"_metrics": {name: number}`` and ``"_metadata": {...}`` (JSON-able); metrics logged
with ``sweepflow.log_metrics`` inside the step are collected too. Both are kept in each
output's ``meta.json``, never in a hashed payload.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib.metadata
import inspect
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sweepflow.errors import SweepflowError
from sweepflow.execution.trial import placement
from sweepflow.store import Atom, Catalog, Lease, ObjectStore, Provenance
from sweepflow.store.layout import tmp_dir
from sweepflow.workflow.artifact import Artifact
from sweepflow.workflow.code import CodeFingerprint, code_fingerprint, step_key
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.steps import Step

__all__ = [
    "METADATA_KEY",
    "METRICS_KEY",
    "TRANSIENT",
    "Execute",
    "Executed",
    "StepFailed",
    "StepPlan",
    "StepWork",
    "artifact",
    "base_provenance",
    "cached_outputs",
    "execute_step",
    "plan_step",
    "record_step",
    "step_code",
]

#: Errors worth another try (a flaky file system, a remote service); others are not.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, ConnectionError)
#: Keys of a step's returned dict that are not outputs.
METRICS_KEY, METADATA_KEY = "_metrics", "_metadata"
_PACKAGES = ("sweepflow", "pydantic", "numpy", "jax", "optax", "torch")


class StepFailed(SweepflowError, RuntimeError):
    """A step's function raised; the cause is chained (``--debug`` shows its traceback).

    Attributes:
        step: The step's name.
    """

    def __init__(self, step: str, cause: BaseException, tries: int) -> None:
        self.step = step
        after = f" after {tries} tries" if tries > 1 else ""
        super().__init__(
            f"step '{step}' failed{after}: {type(cause).__name__}: {cause} (fix the step; "
            "steps that finished are stored and will be reused)"
        )


@dataclass(frozen=True)
class StepPlan:
    """What a step's cache key was made from (computed by the driver)."""

    step: str
    key: str
    config: dict[str, Any]
    inputs: dict[str, Artifact]
    code: CodeFingerprint | str

    @property
    def input_digests(self) -> dict[str, str]:
        """Input name -> digest."""
        return {name: a.digest for name, a in self.inputs.items()}


#: How a step that missed is run: given the step and its work (a :class:`StepWork`,
#: a function of extra provenance fields), return what the work returned.
Execute = Callable[["Step", "StepWork"], "Executed"]


@dataclass(frozen=True)
class Executed:
    """A step that ran: its stored outputs and the metrics it reported."""

    atoms: dict[str, Atom]
    metrics: dict[str, float] = field(default_factory=dict)


# ---- provenance ----------------------------------------------------------------------


def _git(project: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def base_provenance(project: Path, workflow: str | None, run_id: str | None) -> dict[str, Any]:
    """The provenance fields shared by every step of a run (git, host, user, packages)."""
    commit = _git(project, "rev-parse", "HEAD")
    status = _git(project, "status", "--porcelain") if commit else None
    packages = {}
    for name in _PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            packages[name] = importlib.metadata.version(name)
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(status.strip()) if status is not None else None,
        "host": socket.gethostname(),
        "user": user,
        "packages": packages,
        "workflow": workflow,
        "workflow_run": run_id,
    }


# ---- the three parts of a step ---------------------------------------------------------


def _config_data(cfg: BaseModel | None) -> dict[str, Any]:
    return cfg.model_dump(mode="json") if cfg is not None else {}


def step_code(
    step: Step, project: Path, watch: Iterable[str] = (), memo: dict[Path, Any] | None = None
) -> CodeFingerprint | str:
    """The step's ``code_version``, else the fingerprint of the module that defines it."""
    if step.code_version is not None:
        return step.code_version
    source = inspect.getsourcefile(step.function)
    if source is None:
        raise WorkflowError(
            f"step '{step.name}': its source file cannot be found: define it in a .py file "
            "of the project, or give @sweepflow.step(code_version='1')"
        )
    path = Path(source).resolve()
    if memo is not None and path in memo:
        return memo[path]
    found = code_fingerprint(path, project, tuple(watch))
    if memo is not None:
        memo[path] = found
    return found


def plan_step(
    step: Step,
    cfg: BaseModel | None,
    inputs: Mapping[str, Artifact],
    project: Path,
    watch: Iterable[str] = (),
    memo: dict[Path, Any] | None = None,
) -> StepPlan:
    """The step's cache key from its config, input digests, outputs and code."""
    code = step_code(step, project, watch, memo)
    config = _config_data(cfg)
    digests = {name: inputs[name].digest for name in step.inputs}
    key = step_key(step.name, config, digests, dict(step.outputs), code)
    return StepPlan(step.name, key, config, {n: inputs[n] for n in step.inputs}, code)


def artifact(atom: Atom) -> Artifact:
    """The stored object as a step's input sees it."""
    return Artifact(atom.type, atom.digest, atom.path, atom.meta.metadata)


def cached_outputs(step: Step, plan: StepPlan, catalog: Catalog) -> dict[str, Atom] | None:
    """The stored outputs of the plan's key, or None (no entry, an object gone, or the
    step's ``validate`` hook declared them stale)."""
    found = catalog.lookup(plan.key)
    if found is None or set(found) != set(step.outputs):
        return None
    if step.validate is not None and not step.validate(
        {name: artifact(a) for name, a in found.items()}
    ):
        return None
    return found


def _outputs(step: Step, returned: Any, workspace: Path) -> dict[str, Path]:
    """The declared outputs in ``returned``, each a path that exists inside the workspace."""
    if not isinstance(returned, Mapping):
        raise WorkflowError(
            f"step '{step.name}' returned {type(returned).__name__}, not a dict: return "
            f"{{{', '.join(repr(n) + ': workspace / ...' for n in step.outputs)}}}"
        )
    extra = [k for k in returned if k not in step.outputs and k not in (METRICS_KEY, METADATA_KEY)]
    if extra:
        raise WorkflowError(
            f"step '{step.name}' returned '{extra[0]}', which is not a declared output "
            f"({', '.join(step.outputs) or 'none'}): declare it in outputs= or drop it"
        )
    paths = {}
    root = workspace.resolve()
    for name in step.outputs:
        if name not in returned:
            raise WorkflowError(
                f"step '{step.name}' did not return its output '{name}': return "
                f"{{'{name}': workspace / 'FILE'}}"
            )
        value = returned[name]
        if not isinstance(value, (str, Path)):
            raise WorkflowError(
                f"step '{step.name}': output '{name}' is {type(value).__name__}, not a path: "
                "write it under workspace and return its path"
            )
        path = Path(value) if Path(value).is_absolute() else workspace / value
        if not path.exists():
            raise WorkflowError(
                f"step '{step.name}': output '{name}' at {path} does not exist: write it "
                "before returning"
            )
        resolved = path.resolve()
        if resolved == root or root not in resolved.parents:
            raise WorkflowError(
                f"step '{step.name}': output '{name}' at {path} is not inside its workspace "
                f"({workspace}): write outputs under the workspace argument"
            )
        paths[name] = path
    return paths


def _call(
    step: Step, cfg: BaseModel | None, plan: StepPlan, workspace: Path
) -> tuple[Any, dict[str, float]]:
    """Call the function with ``sweepflow.log_metrics`` going to a report file."""
    from sweepflow.reporting.channel import reporting_to
    from sweepflow.reporting.reader import read_report

    kwargs: dict[str, Any] = dict(plan.inputs)
    if step.config_param is not None:
        kwargs[step.config_param] = cfg
    if step.takes_workspace:
        kwargs["workspace"] = workspace
    report = workspace.parent / f"{workspace.name}.report.jsonl"
    try:
        with reporting_to(report):
            returned = step.function(**kwargs)
        metrics = {p.name: p.value for p in read_report(report).metrics} if report.exists() else {}
    finally:
        report.unlink(missing_ok=True)
    return returned, metrics


def execute_step(
    step: Step,
    cfg: BaseModel | None,
    plan: StepPlan,
    root: Path,
    provenance: Mapping[str, Any],
    *,
    lease: Lease | None = None,
    retries: int = 0,
    retry_delay: float = 1.0,
) -> Executed:
    """Run the step in a fresh workspace and put its outputs in the store at ``root``.

    Writes no catalog (safe on a worker). Transient errors (:data:`TRANSIENT`) are
    retried up to ``retries`` times, waiting ``retry_delay`` seconds, doubled each time;
    a :class:`WorkflowError` or a validation error is raised at once.
    """
    attempt = 0
    while True:
        try:
            return _execute_once(step, cfg, plan, root, provenance, lease)
        except WorkflowError:
            raise
        except TRANSIENT as exc:
            if attempt >= retries:
                raise StepFailed(step.name, exc, attempt + 1) from exc
            time.sleep(retry_delay * 2**attempt)
            attempt += 1
        except Exception as exc:
            raise StepFailed(step.name, exc, attempt + 1) from exc


def _execute_once(
    step: Step,
    cfg: BaseModel | None,
    plan: StepPlan,
    root: Path,
    provenance: Mapping[str, Any],
    lease: Lease | None,
) -> Executed:
    base = tmp_dir(root)  # the store's file system: outputs are copied, not moved
    base.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f"{step.name}-{plan.key[:12]}-", dir=base))
    try:
        returned, metrics = _call(step, cfg, plan, workspace)
        paths = _outputs(step, returned, workspace)
        metrics.update({k: float(v) for k, v in dict(returned.get(METRICS_KEY) or {}).items()})
        metadata = dict(returned.get(METADATA_KEY) or {})
        if metrics:
            metadata["metrics"] = metrics
        code = (
            plan.code.files
            if isinstance(plan.code, CodeFingerprint)
            else {"code_version": plan.code}
        )
        atoms = {}
        for name, path in paths.items():
            prov = Provenance(
                **{
                    **provenance,
                    "step": step.name,
                    "output": name,
                    "cache_key": plan.key,
                    "config": plan.config,
                    "inputs": plan.input_digests,
                    "code": code,
                }
            )
            atoms[name] = ObjectStore(root).put(
                path, step.outputs[name], prov, metadata=metadata, lease=lease
            )
        return Executed(atoms, metrics)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


def _where() -> dict[str, Any]:
    """The host this runs on, and its SLURM job, node and GPUs where set."""
    return {"host": socket.gethostname(), "placement": placement()}


class StepWork:
    """The work of a step that missed, callable with extra provenance fields (the run
    ids a Prefect task knows) wherever it runs.

    It pickles for a worker process (a Dask worker, a SLURM job) without the driver's
    store lease and with its config as JSON: the worker puts the project folder on
    ``sys.path``, imports the step by reference and validates the config again.
    """

    def __init__(
        self,
        step: Step,
        cfg: BaseModel | None,
        plan: StepPlan,
        root: Path,
        provenance: Mapping[str, Any],
        *,
        project: Path | None = None,
        lease: Lease | None = None,
        retries: int = 0,
        retry_delay: float = 1.0,
    ) -> None:
        self.step, self.cfg, self.plan, self.root = step, cfg, plan, Path(root)
        self.provenance, self.project, self.lease = dict(provenance), project, lease
        self.retries, self.retry_delay = retries, retry_delay

    def __call__(self, extra: Mapping[str, Any] | None = None) -> Executed:
        return execute_step(
            self.step,
            self.cfg,
            self.plan,
            self.root,
            {**self.provenance, **_where(), **(extra or {})},
            lease=self.lease,
            retries=self.retries,
            retry_delay=self.retry_delay,
        )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        function = self.step.function
        return _remote_work, (
            str(self.project) if self.project else None,
            function.__module__,
            function.__qualname__,
            self.plan,
            self.root,
            self.provenance,
            self.retries,
            self.retry_delay,
        )


def _remote_work(
    project: str | None,
    module: str,
    qualname: str,
    plan: StepPlan,
    root: Path,
    provenance: dict[str, Any],
    retries: int,
    retry_delay: float,
) -> StepWork:
    """A :class:`StepWork` unpickled in a worker: the step imported from the project."""
    import sys

    from sweepflow.workflow.steps import _load_step

    if project and project not in sys.path:
        sys.path.insert(0, project)
    step = _load_step(module, qualname)
    model = step.config_model
    cfg = model.model_validate(plan.config) if model is not None else None
    return StepWork(step, cfg, plan, root, provenance, retries=retries, retry_delay=retry_delay)


def record_step(catalog: Catalog, step: Step, plan: StepPlan, executed: Executed) -> None:
    """Index the outputs (with their ``made_from`` edges) and the cache entry (driver only)."""
    catalog.record(executed.atoms.values())
    catalog.record_cache(plan.key, step.name, {n: a.digest for n, a in executed.atoms.items()})
