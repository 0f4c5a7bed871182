"""Synthetic teacher data: ``x ~ N(0, I)``, ``y = scale * teacher(x) + noise * N(0, I)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import QuadraticModel, TargetConfig
from ._programs import compiled
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

    if isinstance(config.model, QuadraticModel):
        empty = jnp.zeros((config.data.n, 0), dtype)
        return empty, empty
    key = jax.random.PRNGKey(config.data.seed)
    data = config.data.model_copy(update={"seed": 0})
    program, _ = compiled(
        ("data", data, config.model, str(dtype)), lambda: _generator(config, dtype), key
    )
    return program(key)


def _generator(config: TargetConfig, dtype: Any) -> Any:
    import jax

    data, teacher = config.data, config.data.teacher
    model = teacher.model or config.model

    def generate(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        key_x, key_noise, key_teacher = jax.random.split(key, 3)
        x = jax.random.normal(key_x, (data.n, data.input_dim), dtype)
        zero = teacher.kind == "zero"
        params = init_params(model, data.input_dim, key_teacher, dtype, zero=zero)
        clean = teacher.scale * apply(model, params, x)
        noise = data.noise * jax.random.normal(key_noise, clean.shape, dtype)
        return x, clean + noise

    return generate
