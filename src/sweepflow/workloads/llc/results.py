"""The result of an LLC estimate: value, per-chain values, traces, diagnostics, provenance.

:class:`LLCResult` is a frozen pydantic model; it round-trips through JSON (non-finite
floats are written as the strings ``"NaN"`` / ``"Infinity"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._config import TargetConfig
from ._sampler_config import SamplerConfig

__all__ = ["ChainResult", "Diagnostics", "LLCResult", "RunHeader", "Timings", "Traces"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class ChainResult(_Frozen):
    """One chain's estimate and health."""

    name: str = Field(..., description="'chain 0', 'chain 1', ...")
    llc: float = Field(..., description="This chain's λ̂: mean of nβ (L_n - L0) over draws.")
    divergent: bool = Field(..., description="Left out of the estimate (diverged/escaped).")
    problem: str | None = Field(None, description="Why it was left out.")
    acceptance: float | None = Field(None, description="Mean acceptance rate (HMC, NUTS).")
    grad_evals: int = Field(..., description="Gradient evaluations, burn-in included.")


class Traces(_Frozen):
    """Per-draw traces, chains first."""

    steps: list[int] = Field(..., description="Sampler step of each draw after burn-in.")
    loss: list[list[float]] = Field(..., description="L_n at each draw of each chain.")
    full_data: list[bool] = Field(
        ..., description="Whether each draw's loss is full-data L_n (else a minibatch loss)."
    )
    running_llc: list[list[float]] = Field(..., description="Running (cumulative) λ̂ of each chain.")


class Diagnostics(_Frozen):
    """Convergence diagnostics of the per-draw values nβ (L_n - L0) of healthy chains."""

    ess: float | None = Field(None, description="Bulk effective sample size (ArviZ).")
    rhat: float | None = Field(None, description="Rank-normalised split R-hat (ArviZ).")
    divergent_chains: list[str] = Field(
        default_factory=list, description="Chains left out, with the reason."
    )
    tuning: dict[str, list[float]] = Field(
        default_factory=dict, description="Tuned sampler parameters, one value per chain."
    )


class Timings(_Frozen):
    """Wall times in seconds."""

    build_seconds: float = Field(..., description="Data generation and training.")
    compile_seconds: float = Field(..., description="Tracing and compiling the sampler.")
    sampling_seconds: float = Field(..., description="Running the chains.")
    total_seconds: float = Field(..., description="All of estimate_llc.")
    draws_per_second: float = Field(..., description="Draws of all chains per second.")


class RunHeader(_Frozen):
    """What a run sampled: the target, the sampler and the posterior's constants.

    The fields an :class:`LLCResult` and an ``llc-run`` payload
    (:class:`~sweepflow.workloads.llc.steps.RawRun`) share, declared once.
    """

    target_id: str = Field(..., description="Digest of the resolved target configuration.")
    target: TargetConfig = Field(..., description="The target configuration.")
    sampler: SamplerConfig = Field(..., description="The sampler configuration.")
    n: int = Field(..., description="Number of samples.")
    num_params: int = Field(..., description="Number of parameters d.")
    beta: float = Field(..., description="Inverse temperature β.")
    nbeta: float = Field(..., description="n β.")
    gamma: float = Field(..., description="Localisation strength gamma.")
    l0: float = Field(..., description="L_n(w*).")
    x64: bool = Field(..., description="jax_enable_x64 while building and sampling.")


class LLCResult(RunHeader):
    """An LLC estimate with everything needed to judge and reproduce it.

    Its JSON starts with the :class:`RunHeader` fields, then the estimate.
    """

    llc: float = Field(..., description="Mean λ̂ over healthy chains (NaN if none).")
    llc_sd: float = Field(..., description="Standard deviation of λ̂ across healthy chains.")
    llc_per_chain: list[float] = Field(..., description="λ̂ of every chain.")
    chains: list[ChainResult] = Field(..., description="Per-chain results.")
    traces: Traces = Field(..., description="Per-draw traces.")
    diagnostics: Diagnostics = Field(..., description="ESS, R-hat, divergent chains.")
    timings: Timings = Field(..., description="Wall times.")
    versions: dict[str, str] = Field(..., description="Versions of Python and the packages.")

    def summary(self) -> str:
        """One line: ``LLC = 6.31 ± 0.24 (sd over 4 chains)``."""
        healthy = len(self.chains) - len(self.diagnostics.divergent_chains)
        return (
            f"LLC = {self.llc:.4g} ± {self.llc_sd:.2g} "
            f"(sd over {healthy} of {len(self.chains)} chains)"
        )

    def save(self, path: str | Path) -> Path:
        """Write the result as JSON (to a temporary name, then renamed); return the path."""
        path = Path(path)
        _atomic_write(path, self.model_dump_json(indent=1).encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> LLCResult:
        """Read a result written by :meth:`save`."""
        return cls.model_validate_json(Path(path).read_bytes())


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages an estimate depends on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, Any] = {"python": platform.python_version()}
    for name in ("sweepflow", "jax", "jaxlib", "optax", "blackjax", "arviz", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
