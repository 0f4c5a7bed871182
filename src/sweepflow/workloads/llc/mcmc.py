"""Full-batch MCMC for LLC estimation: HMC and NUTS (window adaptation), MCLMC (tuned L, ε).

The kernels and their adaptation come from blackjax; this module only wires them to the
localised tempered posterior ``log p(w) = -nβ L_n(w) - gamma/2 |w - w*|²``, runs the chains in
parallel with vmap, and records ``L_n`` at each draw. They run in float64 only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._config import ModelConfig
from ._errors import LLCError
from ._programs import compiled
from ._sampler_config import HMCConfig, MCLMCConfig, NUTSConfig
from ._traces import ChainTraces
from .targets import Target, check_precision, target_loss

if TYPE_CHECKING:
    import jax

__all__ = ["run_mcmc"]

# Gradient evaluations per step of blackjax's isokinetic McLachlan integrator.
_MCLACHLAN_GRADS = 2


def run_mcmc(
    target: Target, config: HMCConfig | NUTSConfig | MCLMCConfig, nbeta: float, key: jax.Array
) -> ChainTraces:
    """Tune and run ``config.chains`` chains from ``w*``; return ``L_n`` at every draw.

    Draw ``j`` is the state after tuning and ``j * thin`` further steps.

    Raises:
        LLCError: If the target is not float64.
        PrecisionMismatchError: If JAX does not run with the target's x64 setting.
    """
    import jax
    import jax.numpy as jnp

    check_precision(target)
    if not target.x64:
        raise LLCError(
            f"sampler {config.kind} runs in float64 only, but target "
            f"{target.target_id[:12]} has precision float32: set precision: float64 in the "
            "target file (or use kind: sgld)"
        )
    model = target.config.model
    args = (
        jax.random.split(key, config.chains),
        target.params,
        target.x,
        target.y,
        target.constants,
        jnp.asarray(nbeta, target.x.dtype),
    )
    program, compile_seconds = compiled(
        ("mcmc", model, config.model_copy(update={"seed": 0})),
        lambda: _program(model, config),
        *args,
    )
    start = time.perf_counter()
    out = jax.block_until_ready(program(*args))
    wall = time.perf_counter() - start
    return _traces(config, out, compile_seconds, wall)


def _program(model: ModelConfig, config: HMCConfig | NUTSConfig | MCLMCConfig) -> Any:
    """All chains: ``(keys, params, x, y, constants, nbeta) -> per-chain outputs``."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    loss = target_loss(model)

    def run(keys: Any, params: Any, x: Any, y: Any, constants: Any, nbeta: Any) -> Any:
        w_star, unravel = ravel_pytree(params)

        def full_loss(w: jax.Array) -> jax.Array:
            return loss(unravel(w), x, y, constants)

        def logdensity(w: jax.Array) -> jax.Array:
            return -nbeta * full_loss(w) - 0.5 * config.gamma * jnp.sum((w - w_star) ** 2)

        if isinstance(config, MCLMCConfig):
            chain = _mclmc(config, logdensity, full_loss, w_star)
        else:
            chain = _hmc(config, logdensity, full_loss, w_star)
        return jax.vmap(chain)(keys)

    return run


def _hmc(config: HMCConfig | NUTSConfig, logdensity: Any, full_loss: Any, w_star: jax.Array) -> Any:
    import blackjax
    import jax
    import jax.numpy as jnp

    if isinstance(config, HMCConfig):
        algorithm, extra = blackjax.hmc, {"num_integration_steps": config.integration_steps}
    else:
        algorithm, extra = blackjax.nuts, {"max_num_doublings": config.max_tree_depth}

    def chain(key: jax.Array) -> dict[str, jax.Array]:
        key_warm, key_draws = jax.random.split(key)
        warmup = blackjax.window_adaptation(
            algorithm,
            logdensity,
            target_acceptance_rate=config.target_acceptance,
            **extra,
        )
        (state, params), warm_info = warmup.run(key_warm, w_star, num_steps=config.burn_in)
        params = {**extra, **params}
        jitter = config.jitter if isinstance(config, HMCConfig) else 0.0

        def one(state: Any, key: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
            key_jitter, key_step = jax.random.split(key)
            # A fixed trajectory length can resonate with a mode of a near-Gaussian
            # posterior and stop mixing it (Neal 2011, §5.4.2.2): jitter the step size.
            scale = 1.0 + jitter * jax.random.uniform(key_jitter, minval=-1.0, maxval=1.0)
            step = {**params, "step_size": params["step_size"] * scale}
            state, info = algorithm(logdensity, **step).step(key_step, state)
            return state, (info.acceptance_rate, info.num_integration_steps, info.is_divergent)

        def draw(state: Any, key: jax.Array) -> tuple[Any, tuple[jax.Array, ...]]:
            value = full_loss(state.position)
            keys = jax.random.split(key, config.thin)
            state, (accept, grads, divergent) = jax.lax.scan(one, state, keys)
            return state, (value, accept.mean(), grads.sum(), divergent.sum())

        state, (values, accept, grads, divergent) = jax.lax.scan(
            draw, state, jax.random.split(key_draws, config.draws)
        )
        return {
            "losses": values,
            "final": full_loss(state.position),
            "acceptance": accept.mean(),
            "divergent_transitions": divergent.sum(),
            "grads": grads.sum() + jnp.sum(warm_info.info.num_integration_steps),
            "step_size": params["step_size"],
        }

    return chain


def _mclmc(config: MCLMCConfig, logdensity: Any, full_loss: Any, w_star: jax.Array) -> Any:
    import blackjax
    import jax

    fractions = 0.1  # blackjax's default share of each of its three tuning stages

    def chain(key: jax.Array) -> dict[str, jax.Array]:
        key_init, key_tune, key_draws = jax.random.split(key, 3)
        state = blackjax.mcmc.mclmc.init(
            position=w_star, logdensity_fn=logdensity, rng_key=key_init
        )
        kernel = blackjax.mcmc.mclmc.build_kernel(desired_energy_var=config.desired_energy_var)
        # Tuning lasts frac_tune1 + frac_tune2 + frac_tune3 of num_steps: burn_in in all.
        state, params, tuning_steps = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=round(config.burn_in / (3 * fractions)),
            state=state,
            rng_key=key_tune,
            logdensity_fn=logdensity,
            frac_tune1=fractions,
            frac_tune2=fractions,
            frac_tune3=fractions,
            desired_energy_var=config.desired_energy_var,
            diagonal_preconditioning=config.diagonal_preconditioning,
        )
        sampler = blackjax.mclmc(
            logdensity,
            L=params.L,
            step_size=params.step_size,
            inverse_mass_matrix=params.inverse_mass_matrix,
        )

        def one(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
            state, info = sampler.step(key, state)
            return state, info.energy_change

        def draw(state: Any, key: jax.Array) -> tuple[Any, tuple[jax.Array, jax.Array]]:
            value = full_loss(state.position)
            state, energy = jax.lax.scan(one, state, jax.random.split(key, config.thin))
            return state, (value, energy)

        state, (values, energy) = jax.lax.scan(
            draw, state, jax.random.split(key_draws, config.draws)
        )
        steps = tuning_steps + config.draws * config.thin
        return {
            "losses": values,
            "final": full_loss(state.position),
            "grads": _MCLACHLAN_GRADS * steps,
            "step_size": params.step_size,
            "L": params.L,
            "energy_var": (energy**2).mean() / w_star.size,
        }

    return chain


def _traces(config: Any, out: dict[str, Any], compile_seconds: float, wall: float) -> ChainTraces:
    import numpy as np

    draws = np.arange(config.draws)
    tuning: dict[str, Any] = {
        key: [float(v) for v in np.asarray(out[key])]
        for key in ("step_size", "L", "energy_var", "divergent_transitions")
        if key in out
    }
    acceptance = out.get("acceptance")
    return ChainTraces(
        losses=np.asarray(out["losses"], dtype=np.float64),
        full=np.ones(config.draws, bool),
        steps=config.burn_in + draws * config.thin,
        final_losses=np.asarray(out["final"], dtype=np.float64),
        acceptance=None if acceptance is None else [float(a) for a in np.asarray(acceptance)],
        grad_evals=[int(g) for g in np.broadcast_to(np.asarray(out["grads"]), (config.chains,))],
        compile_seconds=compile_seconds,
        wall_seconds=wall,
        tuning=tuning,
    )
