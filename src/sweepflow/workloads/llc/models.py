"""The models as pure JAX functions of a parameter pytree: MLPs, deep linear nets, toys.

``init_params`` makes a pytree from an explicit PRNG key; ``apply`` maps it and a batch
``x`` of shape (batch, input_dim) to outputs; ``squared_error`` is the loss
``L(w) = mean_i ½ |y_i - f(x_i; w)|²`` (the Gaussian negative log-likelihood less its
constant). JAX is imported inside the functions: importing this module loads none of it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from ._config import DLNModel, MLPModel, ModelConfig, QuadraticModel, ToyModel

if TYPE_CHECKING:
    from collections.abc import Callable

    import jax

__all__ = ["apply", "init_params", "layer_sizes", "squared_error"]

Params = Any  # a pytree of arrays


def layer_sizes(model: ModelConfig, input_dim: int) -> list[int]:
    """The widths from input to output of an MLP or deep linear network.

    >>> layer_sizes(MLPModel(widths=(8, 4), output_dim=2), 3)
    [3, 8, 4, 2]
    """
    if not isinstance(model, (MLPModel, DLNModel)):
        raise TypeError(f"{model.kind} models have no layers")
    return [input_dim, *model.widths, model.output_dim]


def init_params(
    model: ModelConfig, input_dim: int, key: jax.Array, dtype: Any, zero: bool = False
) -> Params:
    """Initial parameters: LeCun-normal weights and zero biases, or all zeros.

    Toy models draw ``w ~ N(0, 1)``. Quadratic targets have no initialisation of their
    own (their ``w*`` is drawn by the target).
    """
    import jax
    import jax.numpy as jnp

    if isinstance(model, ToyModel):
        shape = (len(model.powers),)
        w = jnp.zeros(shape, dtype) if zero else jax.random.normal(key, shape, dtype)
        return {"w": w}
    if isinstance(model, QuadraticModel):
        raise TypeError("quadratic targets have no model initialisation")
    sizes = layer_sizes(model, input_dim)
    bias = isinstance(model, MLPModel) and model.bias
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for key_i, (fan_in, fan_out) in zip(keys, itertools.pairwise(sizes), strict=True):
        if zero:
            w = jnp.zeros((fan_in, fan_out), dtype)
        else:
            w = jax.random.normal(key_i, (fan_in, fan_out), dtype) / jnp.sqrt(fan_in)
        layer = {"w": w}
        if bias:
            layer["b"] = jnp.zeros((fan_out,), dtype)
        layers.append(layer)
    return tuple(layers)


def apply(model: ModelConfig, params: Params, x: jax.Array) -> jax.Array:
    """The model's outputs for a batch ``x`` of shape (batch, input_dim)."""
    import jax.numpy as jnp

    if isinstance(model, ToyModel):
        powers = jnp.asarray(model.powers, dtype=params["w"].dtype)
        return x * jnp.prod(params["w"] ** powers)
    if isinstance(model, QuadraticModel):
        raise TypeError("quadratic targets have no outputs, only a loss")
    act = _activation(model.activation) if isinstance(model, MLPModel) else None
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"]
        if "b" in layer:
            h = h + layer["b"]
        if act is not None and i < len(params) - 1:
            h = act(h)
    return h


def squared_error(model: ModelConfig) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
    """The loss ``(params, x, y) -> mean_i ½ |y_i - f(x_i; params)|²`` of a model."""

    def loss(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
        import jax.numpy as jnp

        residual = y - apply(model, params, x)
        return 0.5 * jnp.mean(jnp.sum(residual**2, axis=-1))

    return loss


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    import jax

    return {
        "relu": jax.nn.relu,
        "tanh": jax.numpy.tanh,
        "gelu": jax.nn.gelu,
        "silu": jax.nn.silu,
        "identity": lambda h: h,
    }[name]
