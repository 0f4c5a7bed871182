"""Local learning coefficient (LLC) estimation with JAX: targets, samplers, estimator.

The estimand is ``λ̂ = nβ (E_w[L_n(w)] - L_n(w*))`` under the localised tempered posterior
``p(w) ∝ exp(-nβ L_n(w) - gamma/2 |w - w*|²)``, with ``β = 1/log n`` by default.

    >>> from sweepflow.workloads.llc import estimate_llc, plot_llc  # doctest: +SKIP
    >>> result = estimate_llc(load_target_config("target.yaml"), {"kind": "sgld"})  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP

This package is the only part of sweepflow that imports JAX (and optax, blackjax,
ArviZ, matplotlib), and only inside the functions that compute: importing it is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._config import (
        DataConfig,
        DLNModel,
        MLPModel,
        ModelConfig,
        QuadraticModel,
        TargetConfig,
        TeacherConfig,
        ToyModel,
        TrainingConfig,
    )
    from ._errors import LLCError, PrecisionMismatchError
    from ._files import load_sampler_config, load_target_config
    from ._sampler_config import HMCConfig, MCLMCConfig, NUTSConfig, SamplerConfig, SGLDConfig
    from .estimation import estimate_llc, sample_llc
    from .plots import plot_llc
    from .results import ChainResult, Diagnostics, LLCResult, Timings, Traces
    from .targets import Target, build_target
    from .theory import (
        default_beta,
        normal_crossing_finite_llc,
        normal_crossing_llc,
        quadratic_llc,
        reduced_rank_llc,
    )

__all__ = [
    "ChainResult",
    "DLNModel",
    "DataConfig",
    "Diagnostics",
    "HMCConfig",
    "LLCError",
    "LLCResult",
    "MCLMCConfig",
    "MLPModel",
    "ModelConfig",
    "NUTSConfig",
    "PrecisionMismatchError",
    "QuadraticModel",
    "SGLDConfig",
    "SamplerConfig",
    "Target",
    "TargetConfig",
    "TeacherConfig",
    "Timings",
    "ToyModel",
    "Traces",
    "TrainingConfig",
    "build_target",
    "default_beta",
    "estimate_llc",
    "load_sampler_config",
    "load_target_config",
    "normal_crossing_finite_llc",
    "normal_crossing_llc",
    "plot_llc",
    "quadratic_llc",
    "reduced_rank_llc",
    "sample_llc",
]

# Where each public name lives; imported on first access (PEP 562), so that
# `sweepflow llc` can register its command without paying for the models here.
_EXPORTS = {
    "ChainResult": ".results",
    "DLNModel": "._config",
    "DataConfig": "._config",
    "Diagnostics": ".results",
    "HMCConfig": "._sampler_config",
    "LLCError": "._errors",
    "LLCResult": ".results",
    "MCLMCConfig": "._sampler_config",
    "MLPModel": "._config",
    "ModelConfig": "._config",
    "NUTSConfig": "._sampler_config",
    "PrecisionMismatchError": "._errors",
    "QuadraticModel": "._config",
    "SGLDConfig": "._sampler_config",
    "SamplerConfig": "._sampler_config",
    "Target": ".targets",
    "TargetConfig": "._config",
    "TeacherConfig": "._config",
    "Timings": ".results",
    "ToyModel": "._config",
    "Traces": ".results",
    "TrainingConfig": "._config",
    "build_target": ".targets",
    "default_beta": ".theory",
    "estimate_llc": ".estimation",
    "load_sampler_config": "._files",
    "load_target_config": "._files",
    "normal_crossing_finite_llc": ".theory",
    "normal_crossing_llc": ".theory",
    "plot_llc": ".plots",
    "quadratic_llc": ".theory",
    "reduced_rank_llc": ".theory",
    "sample_llc": ".estimation",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
