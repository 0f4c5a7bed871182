"""``estimate_llc``: build a target, sample it, and summarise the chains into an LLCResult.

Precision: ``estimate_llc`` builds and samples inside ``jax.enable_x64(precision ==
"float64")``, a context manager, so JAX's global setting is the same afterwards.
:func:`sample_llc` samples an already built target and refuses (naming both settings)
when the current ``jax_enable_x64`` differs from the one the target was built with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._config import TargetConfig
from ._errors import LLCError
from ._files import validate
from ._sampler_config import BLACKJAX_KINDS, SamplerConfig, SGLDConfig
from ._traces import ChainTraces
from .diagnostics import ess_and_rhat
from .estimator import default_escape, summarize_chains
from .results import ChainResult, Diagnostics, LLCResult, Timings, Traces, package_versions
from .targets import Target, build_target, check_precision
from .theory import default_beta

__all__ = [
    "RawSample",
    "check_sampler_precision",
    "estimate_llc",
    "sample_llc",
    "sample_raw",
    "summarize_sample",
]


def estimate_llc(
    target_cfg: TargetConfig | Mapping[str, Any], sampler_cfg: SamplerConfig | Mapping[str, Any]
) -> LLCResult:
    """Build the target, run the sampler from ``w*`` and estimate its LLC.

    Args:
        target_cfg: A :class:`TargetConfig` or a mapping that validates as one.
        sampler_cfg: A sampler configuration (``kind: sgld | hmc | nuts | mclmc``) or a
            mapping that validates as one.

    Returns:
        The estimate, per-chain values, traces, diagnostics, timings, the configs and
        package versions.

    Raises:
        LLCError: On an invalid configuration, or a blackjax sampler on a float32 target.
    """
    import jax

    start = time.perf_counter()
    target_config: TargetConfig = validate(TargetConfig, target_cfg, "target")
    sampler: SamplerConfig = validate(SamplerConfig, sampler_cfg, "sampler")
    check_sampler_precision(target_config, sampler)
    with jax.enable_x64(target_config.x64):
        target = build_target(target_config)
        result = sample_llc(target, sampler)
    total = time.perf_counter() - start
    timings = result.timings.model_copy(
        update={"build_seconds": target.build_seconds, "total_seconds": total}
    )
    return result.model_copy(update={"timings": timings})


def check_sampler_precision(target: TargetConfig, sampler: SamplerConfig) -> None:
    """Refuse a blackjax sampler (float64 only) on a float32 target, before any work.

    Raises:
        LLCError: Naming the sampler, the precision and the fix.
    """
    if sampler.kind in BLACKJAX_KINDS and not target.x64:
        raise LLCError(
            f"sampler {sampler.kind} runs in float64 only, but the target has "
            "precision float32: set precision: float64 in the target file (or use kind: sgld)"
        )


def sample_llc(target: Target, sampler_cfg: SamplerConfig | Mapping[str, Any]) -> LLCResult:
    """Sample a built target and estimate its LLC (its build time is not counted).

    :func:`sample_raw` then :func:`summarize_sample`.

    Raises:
        PrecisionMismatchError: If ``jax_enable_x64`` now differs from the target's.
    """
    start = time.perf_counter()
    raw = sample_raw(target, sampler_cfg)
    return summarize_sample(
        raw,
        target=target.config,
        target_id=target.target_id,
        n=target.n,
        num_params=target.num_params,
        l0=target.l0,
        x64=target.x64,
        started=start,
    )


@dataclass(frozen=True)
class RawSample:
    """What a sampler run gives before any summary: its config, β, nβ and raw traces."""

    sampler: SamplerConfig
    beta: float
    nbeta: float
    traces: ChainTraces


def sample_raw(target: Target, sampler_cfg: SamplerConfig | Mapping[str, Any]) -> RawSample:
    """Run the sampler on a built target; no estimate, no diagnostics (no ArviZ).

    Raises:
        PrecisionMismatchError: If ``jax_enable_x64`` now differs from the target's.
        LLCError: A blackjax sampler on a float32 target.
    """
    import jax

    sampler: SamplerConfig = validate(SamplerConfig, sampler_cfg, "sampler")
    check_precision(target)
    n = target.n
    beta = sampler.beta or default_beta(n)
    nbeta = n * beta
    key = jax.random.PRNGKey(sampler.seed)
    if isinstance(sampler, SGLDConfig):
        from .sgld import run_sgld

        traces = run_sgld(target, sampler, nbeta, key)
    else:
        from .mcmc import run_mcmc

        traces = run_mcmc(target, sampler, nbeta, key)
    return RawSample(sampler=sampler, beta=beta, nbeta=nbeta, traces=traces)


def summarize_sample(
    raw: RawSample,
    *,
    target: TargetConfig,
    target_id: str,
    n: int,
    num_params: int,
    l0: float,
    x64: bool,
    started: float | None = None,
) -> LLCResult:
    """The estimate, per-chain values and diagnostics (ArviZ) of a :class:`RawSample`.

    Args:
        raw: The sampler's output.
        target, target_id, n, num_params, l0, x64: What the target it sampled was.
        started: ``time.perf_counter()`` when sampling began, for ``total_seconds``
            (None: compile plus sampling time).
    """
    sampler, traces, nbeta = raw.sampler, raw.traces, raw.nbeta
    escape = sampler.escape or default_escape(num_params)
    summary = summarize_chains(traces.losses, traces.full, traces.final_losses, l0, nbeta, escape)
    healthy = [c for c in range(sampler.chains) if c not in summary.problems]
    ess, rhat = ess_and_rhat(nbeta * (traces.losses[healthy] - l0))
    chains = [
        ChainResult(
            name=f"chain {c}",
            llc=float(summary.per_chain[c]),
            divergent=c in summary.problems,
            problem=summary.problems.get(c),
            acceptance=None if traces.acceptance is None else traces.acceptance[c],
            grad_evals=traces.grad_evals[c],
        )
        for c in range(sampler.chains)
    ]
    draws = sampler.chains * sampler.draws
    total = (
        traces.compile_seconds + traces.wall_seconds
        if started is None
        else time.perf_counter() - started
    )
    return LLCResult(
        llc=summary.mean,
        llc_sd=summary.sd,
        llc_per_chain=[float(v) for v in summary.per_chain],
        target_id=target_id,
        target=target,
        sampler=sampler,
        n=n,
        num_params=num_params,
        beta=raw.beta,
        nbeta=nbeta,
        gamma=sampler.gamma,
        l0=l0,
        x64=x64,
        chains=chains,
        traces=Traces(
            steps=[int(s) for s in traces.steps],
            loss=traces.losses.tolist(),
            full_data=[bool(f) for f in traces.full],
            running_llc=summary.running.tolist(),
        ),
        diagnostics=Diagnostics(
            ess=ess,
            rhat=rhat,
            divergent_chains=[f"chain {c}: {why}" for c, why in summary.problems.items()],
            tuning={k: list(v) if isinstance(v, list) else [v] for k, v in traces.tuning.items()},
        ),
        timings=Timings(
            build_seconds=0.0,
            compile_seconds=traces.compile_seconds,
            sampling_seconds=traces.wall_seconds,
            total_seconds=total,
            draws_per_second=draws / traces.wall_seconds if traces.wall_seconds else 0.0,
        ),
        versions=package_versions(),
    )
