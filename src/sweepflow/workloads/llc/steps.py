"""The LLC workflow's two worker steps and their artifact formats: ``llc-target``, ``llc-run``.

- :func:`build_llc_target` (Stage A) builds a target under its precision and writes a
  folder: ``target.json`` (the resolved config, id, ``n``, ``d``, ``L0``, precision,
  package versions, code version) and ``arrays.npz`` (``w*``, the data, the training
  losses), both byte-stable, so one config gives one content digest on any machine
  with the same JAX.
- :func:`sample_llc_target` (Stage B) loads a target (:func:`load_target`, no training)
  and runs one sampler on it; its ``llc-run`` folder holds raw traces only
  (:class:`RawRun`): ``run.json`` and ``traces.npz``. The estimate's summary, ArviZ
  diagnostics and plots are made on the driver from :func:`load_run`.

Wall times, the host and the device never enter a payload: they differ from run to run,
so they go in the step's ``_metadata`` / ``_metrics`` (kept in ``meta.json``, not hashed).
Workers stay thin: this module and the sampling it runs import neither ArviZ nor
matplotlib. ``SWEEPFLOW_JAX_CACHE`` names a folder for JAX's persistent compilation
cache (:func:`enable_compilation_cache`), so workers do not recompile the same program.
"""

from __future__ import annotations

import os
import socket
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import sweepflow
from sweepflow.hashing import digest
from sweepflow.workflow.code import CODE_FORMAT, code_fingerprint

from ._config import TargetConfig
from ._errors import LLCError
from ._sampler_config import SamplerConfig
from ._traces import ChainTraces
from .estimation import RawSample, check_sampler_precision, sample_raw

if TYPE_CHECKING:
    import numpy as np

    from .targets import Target

__all__ = [
    "CACHE_ENV",
    "CODE_VERSION",
    "LLC_RUN",
    "LLC_TARGET",
    "RawRun",
    "SampleConfig",
    "TargetInfo",
    "build_llc_target",
    "enable_compilation_cache",
    "load_run",
    "load_target",
    "sample_llc_target",
]

LLC_TARGET, LLC_RUN = "llc-target", "llc-run"
TARGET_FORMAT, RUN_FORMAT = "llc-target/1", "llc-run/1"
#: The environment variable naming the folder of JAX's persistent compilation cache.
CACHE_ENV = "SWEEPFLOW_JAX_CACHE"
#: Packages whose versions decide the bits of a target (recorded in its payload).
_BIT_PACKAGES = ("jax", "jaxlib", "numpy", "optax")

#: Modules of the package that run on the driver only; editing them re-runs no step.
_DRIVER_ONLY = frozenset(
    {
        "__init__.py",
        "analysis.py",
        "cli.py",
        "diagnostics.py",
        "experiment.py",
        "gallery.py",
        "plots.py",
    }
)


def _code_version() -> str:
    """The digest of this module and of every module of the llc package it imports,
    transitively (their tokens, not comments or docstrings), driver-only modules left
    out (the package's ``__init__`` names them all for type checkers)."""
    here = Path(__file__)
    files = code_fingerprint(here, here.parent).files
    kept = {name: value for name, value in files.items() if name not in _DRIVER_ONLY}
    return "llc-" + digest({"format": CODE_FORMAT, "files": kept})[:16]


#: The code the steps run (:func:`_code_version`): they live in an installed package,
#: outside the user's project, where the automatic fingerprint does not look.
CODE_VERSION = _code_version()


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


# ---- byte-stable arrays ---------------------------------------------------------------


def _write_npz(path: Path, arrays: Mapping[str, Any]) -> None:
    """An ``.npz`` with the same bytes for the same arrays, members sorted by name.

    ``numpy.savez`` dates every member 1980-01-01 (``ZipFile.open`` does), so its bytes
    depend on the arrays and their order only; the tests hold it to that.
    """
    import numpy as np

    np.savez(path, allow_pickle=False, **{name: arrays[name] for name in sorted(arrays)})


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def _flatten(tree: Any, prefix: str, arrays: dict[str, Any]) -> Any:
    """A JSON template of a pytree of dicts and tuples, its leaves named into ``arrays``.

    >>> arrays = {}
    >>> _flatten(({"w": 1, "b": 2}, {"w": 3}), "params", arrays)
    [{'b': 'params.0.b', 'w': 'params.0.w'}, {'w': 'params.1.w'}]
    """
    if isinstance(tree, Mapping):
        return {str(k): _flatten(tree[k], f"{prefix}.{k}", arrays) for k in sorted(tree)}
    if isinstance(tree, (tuple, list)):
        return [_flatten(v, f"{prefix}.{i}", arrays) for i, v in enumerate(tree)]
    arrays[prefix] = tree
    return prefix


def _unflatten(template: Any, arrays: Mapping[str, Any]) -> Any:
    """The pytree :func:`_flatten` described (lists become tuples, as models make them).

    >>> _unflatten([{"w": "a"}], {"a": 1})
    ({'w': 1},)
    """
    if isinstance(template, dict):
        return {k: _unflatten(v, arrays) for k, v in template.items()}
    if isinstance(template, list):
        return tuple(_unflatten(v, arrays) for v in template)
    return arrays[template]


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _BIT_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _device() -> str:
    import jax

    device = jax.devices()[0]
    return f"{device.platform}:{device.device_kind}"


# ---- Stage A: llc-target ---------------------------------------------------------------


class TargetInfo(_Frozen):
    """``target.json`` of an ``llc-target`` payload (the arrays are in ``arrays.npz``)."""

    format: str = Field(TARGET_FORMAT, description="Payload format; bumped when it changes.")
    target_id: str = Field(..., description="Digest of the resolved target config.")
    config: TargetConfig = Field(..., description="The resolved target config.")
    n: int = Field(..., description="Number of samples.")
    num_params: int = Field(..., description="Number of parameters d.")
    l0: float = Field(..., description="L_n(w*).")
    precision: str = Field(..., description="float32 or float64.")
    x64: bool = Field(..., description="jax_enable_x64 while building and sampling.")
    params: Any = Field(..., description="w* as a template: dicts and lists of array names.")
    constants: Any = Field(..., description="The arrays the loss closes over, as a template.")
    code_version: str = Field(..., description="CODE_VERSION of the code that built it.")
    versions: dict[str, str] = Field(..., description="Versions of the packages that set its bits.")


def enable_compilation_cache(folder: Path) -> None:
    """Use JAX's persistent compilation cache in ``folder``, for every program however small.

    JAX caches only programs that took a second or more to compile by default; the
    samplers' programs often take less on a CPU, and a worker compiles one per
    (target shape, sampler config) pair, so the thresholds are lowered to zero. Safe
    to call again with the same folder; another folder replaces the first.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    before = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    if before == str(folder):
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if before:  # JAX opens its cache once: drop the one it opened in the old folder
        compilation_cache.reset_cache()


def _cache_from_env(workspace: Path) -> None:
    """The compilation cache in ``$SWEEPFLOW_JAX_CACHE``, else ``<state>/jax-cache``: a
    step's workspace is ``<state>/store/tmp/<name>`` wherever it runs (a shared file
    system on a cluster), so every worker finds the same cache without being told."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        enable_compilation_cache(Path(folder))
    elif workspace.parent.name == "tmp" and workspace.parent.parent.name == "store":
        enable_compilation_cache(workspace.parent.parent.parent / "jax-cache")


@sweepflow.step(outputs={"target": LLC_TARGET}, code_version=CODE_VERSION)
def build_llc_target(cfg: TargetConfig, workspace: Path) -> dict[str, Any]:
    """Stage A: build the target (data, ``w*``, ``L0``) and write its ``llc-target`` folder."""
    import jax
    import numpy as np

    from .targets import build_target

    _cache_from_env(workspace)
    with jax.enable_x64(cfg.x64):
        target = build_target(cfg)
        arrays: dict[str, Any] = {}
        params = _flatten(target.params, "params", arrays)
        constants = _flatten(target.constants, "constants", arrays)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        arrays["x"], arrays["y"] = np.asarray(target.x), np.asarray(target.y)
        arrays["train_losses"] = np.asarray(target.train_losses, dtype=np.float64)
        num_params = target.num_params
    info = TargetInfo(
        target_id=target.target_id,
        config=target.config,
        n=target.n,
        num_params=num_params,
        l0=target.l0,
        precision=target.precision,
        x64=target.x64,
        params=params,
        constants=constants,
        code_version=CODE_VERSION,
        versions=_versions(),
    )
    folder = workspace / "target"
    folder.mkdir()
    (folder / "target.json").write_text(info.model_dump_json(indent=1) + "\n", encoding="utf-8")
    _write_npz(folder / "arrays.npz", arrays)
    seconds = target.build_seconds
    return {
        "target": folder,
        "_metadata": {
            "target_id": target.target_id,
            "host": socket.gethostname(),
            "device": _device(),
        },
        "_metrics": {"build_seconds": seconds, "l0": target.l0, "num_params": num_params},
    }


def _read_info(path: Path) -> TargetInfo:
    file = Path(path) / "target.json"
    try:
        return TargetInfo.model_validate_json(file.read_bytes())
    except (OSError, ValidationError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0]
        raise LLCError(
            f"{file}: not an {LLC_TARGET} payload ({reason}): pass the folder a "
            "build_llc_target step stored (its artifact's path)"
        ) from None


def load_target(path: Path) -> Target:
    """The target an ``llc-target`` payload holds, rebuilt without training.

    Its arrays have the dtypes they were built with (made inside ``jax.enable_x64`` of
    the target's precision); ``build_seconds`` is 0 (the build time is in the
    artifact's metadata).

    Raises:
        LLCError: ``path`` is not an ``llc-target`` payload.
    """
    import jax
    import jax.numpy as jnp

    from .targets import Target

    info = _read_info(path)
    try:
        stored = _read_npz(Path(path) / "arrays.npz")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LLCError(
            f"{Path(path) / 'arrays.npz'}: unreadable ({exc}): rebuild the target "
            "(sweepflow store verify finds corrupt objects)"
        ) from None
    with jax.enable_x64(info.x64):
        arrays = {k: jnp.asarray(v) for k, v in stored.items()}
    return Target(
        config=info.config,
        target_id=info.target_id,
        x64=info.x64,
        params=_unflatten(info.params, arrays),
        x=arrays["x"],
        y=arrays["y"],
        l0=info.l0,
        train_losses=tuple(float(v) for v in stored["train_losses"]),
        build_seconds=0.0,
        constants=_unflatten(info.constants, arrays),
    )


# ---- Stage B: llc-run ----------------------------------------------------------------


class SampleConfig(_Frozen):
    """The config of :func:`sample_llc_target`: one sampler."""

    sampler: SamplerConfig = Field(..., description="The sampler and its hyperparameters.")


#: Per-draw arrays of a run, kept in ``traces.npz`` rather than ``run.json``.
_TRACE_ARRAYS = ("loss", "running_llc", "steps", "full_data")
_TIMINGS = ("compile_seconds", "sampling_seconds")


class RawRun(_Frozen):
    """What an ``llc-run`` payload holds: raw traces and what they were sampled from.

    No estimate, diagnostics or wall times: :attr:`compile_seconds` and
    :attr:`sampling_seconds` are not in the payload (they differ from run to run) and
    are filled in by :func:`load_run` from the artifact's metadata when given.
    """

    format: str = Field(RUN_FORMAT, description="Payload format; bumped when it changes.")
    target_id: str = Field(..., description="The target's id (digest of its config).")
    target: TargetConfig = Field(..., description="The target's config.")
    sampler: SamplerConfig = Field(..., description="The sampler config.")
    n: int = Field(..., description="Number of samples.")
    num_params: int = Field(..., description="Number of parameters d.")
    beta: float = Field(..., description="Inverse temperature β.")
    nbeta: float = Field(..., description="n β.")
    gamma: float = Field(..., description="Localisation strength gamma.")
    l0: float = Field(..., description="L_n(w*).")
    x64: bool = Field(..., description="jax_enable_x64 while sampling.")
    steps: list[int] = Field(..., description="Sampler step of each draw after burn-in.")
    full_data: list[bool] = Field(..., description="Whether each draw's loss is full-data L_n.")
    loss: list[list[float]] = Field(..., description="L_n at each draw of each chain.")
    running_llc: list[list[float]] = Field(..., description="Running λ̂ of each chain.")
    final_loss: list[float] = Field(..., description="Full-data L_n at each chain's last state.")
    acceptance: list[float] | None = Field(None, description="Mean acceptance rate per chain.")
    grad_evals: list[int] = Field(..., description="Gradient evaluations per chain (burn-in too).")
    tuning: dict[str, list[float]] = Field(
        default_factory=dict, description="Tuned parameters (step size, L, ...) per chain."
    )
    code_version: str = Field(..., description="CODE_VERSION of the code that sampled it.")
    compile_seconds: float | None = Field(None, description="Compile time (from metadata).")
    sampling_seconds: float | None = Field(None, description="Sampling time (from metadata).")

    def to_sample(self) -> RawSample:
        """The run as :func:`~sweepflow.workloads.llc.estimation.summarize_sample` takes it."""
        import numpy as np

        traces = ChainTraces(
            losses=np.asarray(self.loss, dtype=np.float64),
            full=np.asarray(self.full_data, dtype=bool),
            steps=np.asarray(self.steps, dtype=np.int64),
            final_losses=np.asarray(self.final_loss, dtype=np.float64),
            acceptance=self.acceptance,
            grad_evals=list(self.grad_evals),
            compile_seconds=self.compile_seconds or 0.0,
            wall_seconds=self.sampling_seconds or 0.0,
            tuning=dict(self.tuning),
        )
        return RawSample(sampler=self.sampler, beta=self.beta, nbeta=self.nbeta, traces=traces)


def _raw_run(target: Target, raw: RawSample) -> RawRun:
    import numpy as np

    traces = raw.traces
    losses = np.asarray(traces.losses, dtype=np.float64)
    running = np.cumsum(raw.nbeta * (losses - target.l0), axis=1) / np.arange(
        1, losses.shape[1] + 1
    )
    return RawRun(
        target_id=target.target_id,
        target=target.config,
        sampler=raw.sampler,
        n=target.n,
        num_params=target.num_params,
        beta=raw.beta,
        nbeta=raw.nbeta,
        gamma=raw.sampler.gamma,
        l0=target.l0,
        x64=target.x64,
        steps=[int(s) for s in traces.steps],
        full_data=[bool(f) for f in traces.full],
        loss=losses.tolist(),
        running_llc=running.tolist(),
        final_loss=[float(v) for v in traces.final_losses],
        acceptance=traces.acceptance,
        grad_evals=list(traces.grad_evals),
        tuning={k: list(v) if isinstance(v, list) else [v] for k, v in traces.tuning.items()},
        code_version=CODE_VERSION,
    )


def _write_run(run: RawRun, folder: Path) -> None:
    import numpy as np

    folder.mkdir()
    small = run.model_dump_json(indent=1, exclude={*_TRACE_ARRAYS, *_TIMINGS})
    (folder / "run.json").write_text(small + "\n", encoding="utf-8")
    _write_npz(
        folder / "traces.npz",
        {
            "loss": np.asarray(run.loss, dtype=np.float64),
            "running_llc": np.asarray(run.running_llc, dtype=np.float64),
            "steps": np.asarray(run.steps, dtype=np.int64),
            "full_data": np.asarray(run.full_data, dtype=bool),
        },
    )


def load_run(path: Path, metadata: Mapping[str, Any] | None = None) -> RawRun:
    """The raw run an ``llc-run`` payload holds.

    Args:
        path: The payload folder (the artifact's path).
        metadata: The artifact's metadata (``Artifact.meta``), for the wall times.

    Raises:
        LLCError: ``path`` is not an ``llc-run`` payload.
    """
    import json

    folder = Path(path)
    try:
        data = json.loads((folder / "run.json").read_bytes())
        arrays = _read_npz(folder / "traces.npz")
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise LLCError(
            f"{folder}: not an {LLC_RUN} payload ({exc}): pass the folder a "
            "sample_llc_target step stored (its artifact's path)"
        ) from None
    data.update({name: arrays[name].tolist() for name in _TRACE_ARRAYS})
    for name in _TIMINGS:
        value = (metadata or {}).get(name)
        data[name] = float(value) if isinstance(value, (int, float)) else None
    try:
        return RawRun.model_validate(data)
    except ValidationError as exc:
        raise LLCError(
            f"{folder / 'run.json'}: not an {LLC_RUN} payload ({str(exc).splitlines()[0]}): "
            "it was written by another version; re-run the sample step"
        ) from None


@sweepflow.step(inputs={"target": LLC_TARGET}, outputs={"run": LLC_RUN}, code_version=CODE_VERSION)
def sample_llc_target(
    cfg: SampleConfig, target: sweepflow.Artifact, workspace: Path
) -> dict[str, Any]:
    """Stage B: run one sampler on a stored target and write its raw traces (``llc-run``).

    Raises:
        LLCError: A blackjax sampler on a float32 target (refused before loading it).
    """
    import jax

    check_sampler_precision(_read_info(target.path).config, cfg.sampler)
    _cache_from_env(workspace)
    built = load_target(target.path)
    start = time.perf_counter()
    with jax.enable_x64(built.x64):
        raw = sample_raw(built, cfg.sampler)
    total = time.perf_counter() - start
    run = _raw_run(built, raw)
    _write_run(run, workspace / "run")
    traces = raw.traces
    draws = raw.sampler.chains * raw.sampler.draws
    timings = {
        "compile_seconds": traces.compile_seconds,
        "sampling_seconds": traces.wall_seconds,
        "total_seconds": total,
        "draws_per_second": draws / traces.wall_seconds if traces.wall_seconds else 0.0,
    }
    return {
        "run": workspace / "run",
        "_metadata": {
            "target_id": built.target_id,
            "host": socket.gethostname(),
            "device": _device(),
            **timings,
        },
        "_metrics": {**timings, "grad_evals": float(sum(traces.grad_evals))},
    }
