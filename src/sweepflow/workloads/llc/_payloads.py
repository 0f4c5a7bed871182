"""The payload formats of the LLC steps: ``llc-target`` and ``llc-run`` folders.

An ``llc-target`` folder holds ``target.json`` (:class:`TargetInfo`) and ``arrays.npz``;
an ``llc-run`` folder ``run.json`` and ``traces.npz`` (:class:`RawRun`). Both are
byte-stable (:func:`_write_npz`), so one config gives one content digest. Read them
back with :func:`load_target` and :func:`load_run`; the steps that write them, and the
public names, are in :mod:`sweepflow.workloads.llc.steps`. Imports neither ArviZ nor
matplotlib (workers read these); NumPy and JAX only inside the functions that need them.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._config import TargetConfig
from ._errors import LLCError
from ._traces import ChainTraces
from .estimation import RawSample
from .results import RunHeader

if TYPE_CHECKING:
    import numpy as np

    from .targets import Target

__all__ = [
    "LLC_RUN",
    "LLC_TARGET",
    "RUN_FORMAT",
    "TARGET_FORMAT",
    "RawRun",
    "TargetInfo",
    "load_run",
    "load_target",
]

LLC_TARGET, LLC_RUN = "llc-target", "llc-run"
TARGET_FORMAT, RUN_FORMAT = "llc-target/1", "llc-run/1"


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


# ---- llc-target -----------------------------------------------------------------------


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


# ---- llc-run --------------------------------------------------------------------------


#: Per-draw arrays of a run, kept in ``traces.npz`` rather than ``run.json``.
_TRACE_ARRAYS = ("loss", "running_llc", "steps", "full_data")
_TIMINGS = ("compile_seconds", "sampling_seconds")


class _RunFormat(_Frozen):
    """The first field of ``run.json``: a base of :class:`RawRun` listed after
    :class:`~sweepflow.workloads.llc.results.RunHeader`, so pydantic puts it first."""

    format: str = Field(RUN_FORMAT, description="Payload format; bumped when it changes.")


class RawRun(RunHeader, _RunFormat):
    """What an ``llc-run`` payload holds: raw traces and what they were sampled from.

    No estimate, diagnostics or wall times: :attr:`compile_seconds` and
    :attr:`sampling_seconds` are not in the payload (they differ from run to run) and
    are filled in by :func:`load_run` from the artifact's metadata when given. Its
    first fields are :attr:`format`, then those of
    :class:`~sweepflow.workloads.llc.results.RunHeader`, in the order ``run.json``
    has always had.
    """

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
