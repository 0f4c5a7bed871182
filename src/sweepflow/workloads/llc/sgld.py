"""SGLD for LLC estimation: chains in parallel (vmap), each a jit-compiled lax.scan.

A step is ``w <- w - ε/2 G (nβ ∇L_B(w) + γ (w - w*)) + sqrt(ε G) ξ`` with ``ξ ~ N(0, I)``
and ``B`` a minibatch drawn with replacement; ``G`` is 1, or the RMSProp preconditioner
``1 / (sqrt(V) + eps)`` with ``V`` the running average of ``∇L_B²`` (Li et al. 2016; the
localisation term does not enter ``V``). Chains start at ``w*``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ._sampler_config import SGLDConfig
from ._traces import ChainTraces
from .targets import Target, check_precision

if TYPE_CHECKING:
    import jax

__all__ = ["run_sgld"]


def run_sgld(target: Target, config: SGLDConfig, nbeta: float, key: jax.Array) -> ChainTraces:
    """Run ``config.chains`` SGLD chains from ``w*``; return the L_n of every draw.

    Draw ``j`` is the state after ``burn_in + j * thin`` steps. Its loss is the
    full-data ``L_n`` when ``j`` is a multiple of ``eval_every``, else the minibatch loss
    of the step taken from it (an unbiased estimate of ``L_n`` there).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.flatten_util import ravel_pytree

    check_precision(target)
    w_star, unravel = ravel_pytree(target.params)
    loss = target.loss_fn()
    x, y, n = target.x, target.y, target.n
    batch = config.batch_size
    every = config.eval_every or config.draws
    groups = math.ceil(config.draws / every)
    rmsprop = config.precondition == "rmsprop"
    eps, gamma, alpha = config.step_size, config.gamma, config.rmsprop_alpha

    def batch_value_and_grad(w: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        if batch is None:
            xb, yb = x, y
        else:
            idx = jax.random.randint(key, (batch,), 0, n)
            xb, yb = x[idx], y[idx]
        return jax.value_and_grad(lambda v: loss(unravel(v), xb, yb))(w)

    def full_loss(w: jax.Array) -> jax.Array:
        return loss(unravel(w), x, y)

    def step(state: tuple[jax.Array, jax.Array], key: jax.Array) -> tuple[Any, jax.Array]:
        w, v = state
        key_batch, key_noise = jax.random.split(key)
        value, grad = batch_value_and_grad(w, key_batch)
        if rmsprop:
            v = alpha * v + (1 - alpha) * grad * grad
            precond = 1 / (jnp.sqrt(v) + config.rmsprop_eps)
        else:
            precond = 1.0
        drift = nbeta * grad + gamma * (w - w_star)
        noise = jax.random.normal(key_noise, w.shape, w.dtype)
        w = w - 0.5 * eps * precond * drift + jnp.sqrt(eps * precond) * noise
        return (w, v), value

    def draw(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        state, values = jax.lax.scan(step, state, jax.random.split(key, config.thin))
        return state, values[0]  # the minibatch loss at the draw's state

    def group(state: Any, key: jax.Array) -> tuple[Any, jax.Array]:
        full = full_loss(state[0]) if config.eval_every else None
        state, values = jax.lax.scan(draw, state, jax.random.split(key, every))
        return state, values if full is None else values.at[0].set(full)

    def chain(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key_burn, key_draws = jax.random.split(key)
        state = (w_star, jnp.zeros_like(w_star))
        if config.burn_in:
            state, _ = jax.lax.scan(step, state, jax.random.split(key_burn, config.burn_in))
        state, values = jax.lax.scan(group, state, jax.random.split(key_draws, groups))
        return values.reshape(-1)[: config.draws], full_loss(state[0])

    keys = jax.random.split(key, config.chains)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(chain)).lower(keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    losses, finals = jax.block_until_ready(compiled(keys))
    wall = time.perf_counter() - start
    draws = np.arange(config.draws)
    full = (draws % every == 0) if config.eval_every else np.zeros(config.draws, bool)
    steps_per_chain = config.burn_in + groups * every * config.thin
    return ChainTraces(
        losses=np.asarray(losses, dtype=np.float64),
        full=full,
        steps=config.burn_in + draws * config.thin,
        final_losses=np.asarray(finals, dtype=np.float64),
        acceptance=None,
        grad_evals=[steps_per_chain] * config.chains,
        compile_seconds=compile_seconds,
        wall_seconds=wall,
        tuning={"step_size": eps, "batch_size": batch if batch is not None else n},
    )
