"""Synthetic teacher data: ``x ~ N(0, I)``, ``y = scale * teacher(x) + noise * N(0, I)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import QuadraticModel, TargetConfig
from .models import apply, init_params

if TYPE_CHECKING:
    import jax

__all__ = ["make_data"]


def make_data(config: TargetConfig, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """The inputs and labels of a target, from ``config.data.seed`` alone.

    Quadratic targets need no data: they get empty arrays of shape (n, 0), so that the
    samplers can treat every target alike.
    """
    import jax
    import jax.numpy as jnp

    data = config.data
    if isinstance(config.model, QuadraticModel):
        empty = jnp.zeros((data.n, 0), dtype)
        return empty, empty
    key_x, key_noise, key_teacher = jax.random.split(jax.random.PRNGKey(data.seed), 3)
    x = jax.random.normal(key_x, (data.n, data.input_dim), dtype)
    teacher = data.teacher
    model = teacher.model or config.model
    if teacher.kind == "zero":
        clean = jnp.zeros_like(apply(config.model, _zero_like(config, dtype), x))
    else:
        params = init_params(model, data.input_dim, key_teacher, dtype)
        clean = teacher.scale * apply(model, params, x)
    noise = data.noise * jax.random.normal(key_noise, clean.shape, dtype)
    return x, clean + noise


def _zero_like(config: TargetConfig, dtype: Any) -> Any:
    import jax

    return init_params(config.model, config.data.input_dim, jax.random.PRNGKey(0), dtype, zero=True)
