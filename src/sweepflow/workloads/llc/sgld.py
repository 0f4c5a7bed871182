"""SGLD for LLC estimation: chains in parallel (vmap) inside one jit-compiled lax.scan.

A step is ``w <- w - ε/2 G (nβ ∇L_B(w) + gamma (w - w*)) + sqrt(ε G) ξ`` with ``ξ ~ N(0, I)``
and ``B`` a minibatch drawn with replacement; ``G`` is 1, or the RMSProp preconditioner
``1 / (sqrt(V) + eps)`` with ``V`` the running average of ``∇L_B²`` (Li et al. 2016; the
localisation term does not enter ``V``). Chains start at ``w*``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._config import ModelConfig
from ._programs import compiled
from ._sampler_config import SGLDConfig
from ._traces import ChainTraces
from .targets import Target, check_precision, target_loss

if TYPE_CHECKING:
    import jax

__all__ = ["run_sgld", "sgld_update"]


def run_sgld(target: Target, config: SGLDConfig, nbeta: float, key: jax.Array) -> ChainTraces:
    """Run ``config.chains`` SGLD chains from ``w*``; return the L_n of every draw.

    Draw ``j`` is the state after ``burn_in + j * thin`` steps. Its loss is the
    full-data ``L_n`` when ``j`` is a multiple of ``eval_every``, else the minibatch loss
    of the step taken from it (an unbiased estimate of ``L_n`` there).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    check_precision(target)
    # The step size is an argument of the program, not a constant in it: a sweep or a
    # tuning run over step sizes compiles one program (here and in JAX's disk cache).
    program_key = (
        "sgld",
        target.config.model,
        config.model_copy(update={"seed": 0, "step_size": 1.0}),
    )
    dtype = target.x.dtype
    args = (
        key,
        target.params,
        target.x,
        target.y,
        target.constants,
        jnp.asarray(nbeta, dtype),
        jnp.asarray(config.step_size, dtype),
    )
    program, compile_seconds = compiled(
        program_key, lambda: _chains(target.config.model, config), *args
    )
    start = time.perf_counter()
    losses, finals = jax.block_until_ready(program(*args))
    wall = time.perf_counter() - start
    draws = np.arange(config.draws)
    full = (draws % config.eval_every == 0) if config.eval_every else np.zeros(config.draws, bool)
    steps = config.burn_in + (config.draws - 1) * config.thin + 1
    return ChainTraces(
        losses=np.asarray(losses, dtype=np.float64).T,
        full=full,
        steps=config.burn_in + draws * config.thin,
        final_losses=np.asarray(finals, dtype=np.float64),
        acceptance=None,
        grad_evals=[steps] * config.chains,
        compile_seconds=compile_seconds,
        wall_seconds=wall,
        tuning={
            "step_size": config.step_size,
            "batch_size": config.batch_size if config.batch_size is not None else target.n,
        },
    )


def _chains(model: ModelConfig, config: SGLDConfig) -> Any:
    """The program: all chains advance together in one lax.scan over steps.

    The chains are vmapped inside the step, so the step counter is shared: the
    full-data loss runs under a real ``lax.cond`` only at the draws that need it (a
    vmapped counter would turn the cond into both branches at every step).
    """
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    loss = target_loss(model)
    every, thin, burn_in = config.eval_every, config.thin, config.burn_in
    total = burn_in + (config.draws - 1) * thin + 1
    chains = config.chains

    def run(key: Any, params: Any, x: Any, y: Any, constants: Any, nbeta: Any, eps: Any) -> Any:
        w_star, unravel = ravel_pytree(params)
        n = x.shape[0]

        def full_loss(w: jax.Array) -> jax.Array:
            return loss(unravel(w), x, y, constants)

        def value_and_grad(w: jax.Array, idx: jax.Array | None) -> tuple[jax.Array, jax.Array]:
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            return jax.value_and_grad(lambda u: loss(unravel(u), xb, yb, constants))(w)

        def body(carry: Any, i: jax.Array) -> tuple[Any, None]:
            w, v, trace = carry
            # One draw of indices and of noise for all chains: a vmapped generator per
            # chain costs twice as much, and the noise is much of an SGLD step's cost.
            key_batch, key_noise = jax.random.split(jax.random.fold_in(key, i))
            noise = jax.random.normal(key_noise, w.shape, w.dtype)
            if config.batch_size is None:
                values, grads = jax.vmap(value_and_grad, (0, None))(w, None)
            else:
                idx = jax.random.randint(key_batch, (chains, config.batch_size), 0, n)
                values, grads = jax.vmap(value_and_grad)(w, idx)
            new_w, new_v = sgld_update(w, v, grads, noise, w_star, nbeta, config, eps)
            draw, offset = jnp.divmod(i - burn_in, thin)
            is_draw = (i >= burn_in) & (offset == 0)
            if every is not None:
                values = jax.lax.cond(
                    is_draw & (draw % every == 0),
                    lambda: jax.vmap(full_loss)(w),  # at the draw's state, before the step
                    lambda: values,
                )
            # An unconditional in-place write (steps between draws go to a spare last
            # row): a cond around it would copy the whole trace at every step.
            row = jnp.where(is_draw, draw, config.draws)
            trace = jax.lax.dynamic_update_index_in_dim(trace, values, row, axis=0)
            return (new_w, new_v, trace), None

        w = jnp.broadcast_to(w_star, (chains, *w_star.shape))
        trace = jnp.zeros((config.draws + 1, chains), w_star.dtype)
        (w, _, trace), _ = jax.lax.scan(body, (w, jnp.zeros_like(w), trace), jnp.arange(total))
        return trace[:-1], jax.vmap(full_loss)(w)

    return run


def sgld_update(
    w: Any,
    v: Any,
    grad: Any,
    noise: Any,
    w_star: Any,
    nbeta: float,
    config: SGLDConfig,
    eps: Any = None,
) -> tuple[Any, Any]:
    """One SGLD update from the minibatch loss gradient and standard normal noise, with
    step size ``eps`` (default: ``config.step_size``; a traced value in the program).

    Returns the new parameters and the new RMSProp average ``V`` of ``grad²`` (unchanged
    without preconditioning). The localisation term is in the drift, never in ``V``.
    Works on JAX and numpy arrays alike:

    >>> import numpy as np
    >>> w, v = sgld_update(np.ones(2), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2),
    ...                    nbeta=10.0, config=SGLDConfig(step_size=0.1, gamma=2.0))
    >>> w.tolist(), v.tolist()
    ([0.9, 0.9], [0.0, 0.0])
    """
    eps = config.step_size if eps is None else eps
    if config.precondition == "rmsprop":
        v = config.rmsprop_alpha * v + (1 - config.rmsprop_alpha) * grad * grad
        precond = 1 / (v**0.5 + config.rmsprop_eps)
    else:
        precond = 1.0
    drift = nbeta * grad + config.gamma * (w - w_star)
    return w - 0.5 * eps * precond * drift + (eps * precond) ** 0.5 * noise, v
