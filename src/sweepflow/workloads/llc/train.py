"""Training of a student to ``w*`` with optax (Adam or SGD), jit-compiled with lax.scan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import TrainingConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    import jax

__all__ = ["train"]


def train(
    loss: Callable[[Any, jax.Array, jax.Array], jax.Array],
    params: Any,
    x: jax.Array,
    y: jax.Array,
    config: TrainingConfig,
    key: jax.Array,
) -> tuple[Any, jax.Array]:
    """Run ``config.steps`` optimiser steps from ``params``; return ``w*`` and the losses.

    Each step draws a minibatch of ``config.batch_size`` rows with replacement (all rows
    when it is null). The returned losses are the minibatch losses, one per step.
    """
    import jax
    import jax.numpy as jnp
    import optax

    if config.steps == 0:
        return params, jnp.zeros((0,), x.dtype)
    make = {"adam": optax.adam, "sgd": optax.sgd}[config.optimizer]
    optimizer = make(config.learning_rate)
    n = x.shape[0]
    batch = config.batch_size

    def step(carry: tuple[Any, Any], step_key: jax.Array) -> tuple[tuple[Any, Any], jax.Array]:
        p, state = carry
        if batch is None:
            xb, yb = x, y
        else:
            idx = jax.random.randint(step_key, (batch,), 0, n)
            xb, yb = x[idx], y[idx]
        value, grads = jax.value_and_grad(loss)(p, xb, yb)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), value

    @jax.jit
    def run(p: Any, keys: jax.Array) -> tuple[Any, jax.Array]:
        (p, _), values = jax.lax.scan(step, (p, optimizer.init(p)), keys)
        return p, values

    return run(params, jax.random.split(key, config.steps))
