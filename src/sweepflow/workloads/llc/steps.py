"""The LLC workflow's two worker steps: ``llc-target`` and ``llc-run``.

- :func:`build_llc_target` (Stage A) builds a target under its precision and writes a
  folder: ``target.json`` (the resolved config, id, ``n``, ``d``, ``L0``, precision,
  package versions, code version) and ``arrays.npz`` (``w*``, the data, the training
  losses), both byte-stable, so one config gives one content digest on any machine
  with the same JAX.
- :func:`sample_llc_target` (Stage B) loads a target (:func:`load_target`, no training)
  and runs one sampler on it; its ``llc-run`` folder holds raw traces only
  (:class:`RawRun`): ``run.json`` and ``traces.npz``. The estimate's summary, ArviZ
  diagnostics and plots are made on the driver from :func:`load_run`.

The payload formats (:class:`TargetInfo`, :class:`RawRun`) and their readers live in
the private ``_payloads`` module; they are imported from here.

Wall times, the host and the device never enter a payload: they differ from run to run,
so they go in the step's ``_metadata`` / ``_metrics`` (kept in ``meta.json``, not hashed).
Workers stay thin: this module and the sampling it runs import neither ArviZ nor
matplotlib. ``SWEEPFLOW_JAX_CACHE`` names a folder for JAX's persistent compilation
cache (:func:`enable_compilation_cache`), so workers do not recompile the same program.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

import sweepflow
from sweepflow.hashing import digest
from sweepflow.workflow.code import CODE_FORMAT, code_fingerprint

from ._config import TargetConfig
from ._errors import LLCError
from ._payloads import (
    LLC_RUN,
    LLC_TARGET,
    RawRun,
    TargetInfo,
    _flatten,
    _Frozen,
    _read_info,
    _write_npz,
    _write_run,
    load_run,
    load_target,
)
from ._sampler_config import SamplerConfig
from .estimation import RawSample, check_sampler_precision, sample_raw

if TYPE_CHECKING:
    from .targets import Target

__all__ = [
    "CACHE_ENV",
    "CODE_VERSION",
    "FLOAT64_ENV",
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

#: The environment variable naming the folder of JAX's persistent compilation cache.
CACHE_ENV = "SWEEPFLOW_JAX_CACHE"
#: ``cpu``: float64 sampling runs on the CPU (set on workers by a profile's ``float64: cpu``).
FLOAT64_ENV = "SWEEPFLOW_FLOAT64"
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
    transitively (their tokens, not comments or docstrings: ``_payloads`` included),
    driver-only modules left out (the package's ``__init__`` names them all for type
    checkers)."""
    here = Path(__file__)
    files = code_fingerprint(here, here.parent).files
    kept = {name: value for name, value in files.items() if name not in _DRIVER_ONLY}
    return "llc-" + digest({"format": CODE_FORMAT, "files": kept})[:16]


#: The code the steps run (:func:`_code_version`): they live in an installed package,
#: outside the user's project, where the automatic fingerprint does not look.
CODE_VERSION = _code_version()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in _BIT_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _device(device: Any = None) -> str:
    import jax

    device = device or jax.devices()[0]
    return f"{device.platform}:{device.device_kind}"


@contextlib.contextmanager
def _placed(x64: bool) -> Iterator[str]:
    """Where a sampling runs: float64 work on the CPU when the profile says so
    (``float64: cpu``, which sets ``$SWEEPFLOW_FLOAT64=cpu`` on its workers: most GPUs
    are slow at float64), else JAX's default device. Yields the device's name."""
    import jax

    if x64 and os.environ.get(FLOAT64_ENV) == "cpu":
        try:
            cpu = jax.devices("cpu")[0]
        except RuntimeError:
            platforms = os.environ.get("JAX_PLATFORMS", "")
            raise LLCError(
                f"the profile says float64: cpu, but JAX on this worker has no CPU backend "
                f"(JAX_PLATFORMS={platforms!r}): set JAX_PLATFORMS: cuda,cpu in the "
                "profile's worker_env"
            ) from None
        with jax.default_device(cpu):
            yield _device(cpu)
        return
    yield _device()


# ---- Stage A: llc-target ---------------------------------------------------------------


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


# ---- Stage B: llc-run ----------------------------------------------------------------


class SampleConfig(_Frozen):
    """The config of :func:`sample_llc_target`: one sampler."""

    sampler: SamplerConfig = Field(..., description="The sampler and its hyperparameters.")


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


@sweepflow.step(inputs={"target": LLC_TARGET}, outputs={"run": LLC_RUN}, code_version=CODE_VERSION)
def sample_llc_target(
    cfg: SampleConfig, target: sweepflow.Artifact, workspace: Path
) -> dict[str, Any]:
    """Stage B: run one sampler on a stored target and write its raw traces (``llc-run``).

    Raises:
        LLCError: A blackjax sampler on a float32 target (refused before loading it).
    """
    import jax

    config = _read_info(target.path).config
    check_sampler_precision(config, cfg.sampler)
    _cache_from_env(workspace)
    with _placed(config.x64) as device:
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
            "device": device,
            **timings,
        },
        "_metrics": {**timings, "grad_evals": float(sum(traces.grad_evals))},
    }
