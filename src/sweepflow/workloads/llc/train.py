"""Training of a student to ``w*`` with optax (Adam or SGD), jit-compiled with lax.scan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import ModelConfig, TrainingConfig
from ._programs import compiled
from .models import squared_error

if TYPE_CHECKING:
    import jax

__all__ = ["train"]


def train(
    model: ModelConfig,
    params: Any,
    x: jax.Array,
    y: jax.Array,
    config: TrainingConfig,
    key: jax.Array,
) -> tuple[Any, jax.Array]:
    """Run ``config.steps`` optimiser steps from ``params``; return ``w*`` and the losses.

    Each step draws a minibatch of ``config.batch_size`` rows with replacement (all rows
    when it is null) and minimises ``mean ½ |y - f(x)|²``. The returned losses are the
    minibatch losses, one per step.
    """
    import jax.numpy as jnp

    if config.steps == 0:
        return params, jnp.zeros((0,), x.dtype)
    program, _ = compiled(
        ("train", model, config), lambda: _trainer(model, config), params, x, y, key
    )
    return program(params, x, y, key)


def _trainer(model: ModelConfig, config: TrainingConfig) -> Any:
    import jax
    import optax

    loss = squared_error(model)
    make = {"adam": optax.adam, "sgd": optax.sgd}[config.optimizer]
    optimizer = make(config.learning_rate)

    def run(params: Any, x: jax.Array, y: jax.Array, key: jax.Array) -> tuple[Any, jax.Array]:
        n = x.shape[0]

        def step(carry: tuple[Any, Any], step_key: jax.Array) -> tuple[Any, jax.Array]:
            p, state = carry
            if config.batch_size is None:
                xb, yb = x, y
            else:
                idx = jax.random.randint(step_key, (config.batch_size,), 0, n)
                xb, yb = x[idx], y[idx]
            value, grads = jax.value_and_grad(loss)(p, xb, yb)
            updates, state = optimizer.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), value

        keys = jax.random.split(key, config.steps)
        (params, _), values = jax.lax.scan(step, (params, optimizer.init(params)), keys)
        return params, values

    return run
