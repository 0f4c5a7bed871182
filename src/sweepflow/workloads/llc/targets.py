"""Targets: a trained ``w*``, the data that defines ``L_n``, and ``L0 = L_n(w*)``.

:func:`build_target` is deterministic for a configuration: the data come from
``data.seed``, the initialisation and training batches from ``seed``. It runs with
``jax_enable_x64`` set from ``precision`` and records that setting, so that
:func:`check_precision` can refuse to sample the target under the other one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._config import ModelConfig, QuadraticModel, TargetConfig
from ._errors import PrecisionMismatchError
from ._files import validate
from ._programs import compiled
from .data import make_data
from .models import init_params, squared_error
from .train import train

if TYPE_CHECKING:
    from collections.abc import Callable

    import jax

__all__ = ["Target", "build_target", "check_precision", "target_loss", "x64_enabled"]


@dataclass(frozen=True)
class Target:
    """A built target (in memory; the config and its id are what identify it).

    Attributes:
        config: The resolved configuration.
        target_id: Digest of ``config``.
        x64: The ``jax_enable_x64`` setting it was built with.
        params: ``w*``, a pytree of arrays.
        x: Inputs, shape (n, input_dim) ((n, 0) for quadratic targets).
        y: Labels, shape (n, output_dim).
        l0: ``L_n(w*)`` on the full data.
        train_losses: Minibatch loss of each training step.
        build_seconds: Wall time of data generation and training.
        constants: Arrays the loss closes over (the Hessian of quadratic targets).
    """

    config: TargetConfig
    target_id: str
    x64: bool
    params: Any
    x: Any
    y: Any
    l0: float
    train_losses: tuple[float, ...]
    build_seconds: float
    constants: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    @property
    def precision(self) -> str:
        """``float64`` or ``float32``."""
        return "float64" if self.x64 else "float32"

    @property
    def num_params(self) -> int:
        """Number of scalar parameters ``d``."""
        import jax

        return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(self.params))

    def loss_fn(self) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
        """The loss ``(params, x, y) -> scalar`` whose full-data value is ``L_n``."""
        loss, constants = target_loss(self.config.model), self.constants
        return lambda params, x, y: loss(params, x, y, constants)


def x64_enabled() -> bool:
    """The current ``jax_enable_x64`` setting (within any ``jax.enable_x64`` context)."""
    import jax

    return bool(jax.config.read("jax_enable_x64"))


def check_precision(target: Target, what: str = "sampling") -> None:
    """Raise unless JAX runs with the ``jax_enable_x64`` setting the target was built with.

    Raises:
        PrecisionMismatchError: Naming both settings and how to make them agree.
    """
    now = x64_enabled()
    if now != target.x64:
        raise PrecisionMismatchError(
            f"target {target.target_id[:12]} was built with jax_enable_x64={target.x64} "
            f"(precision {target.precision}) but {what} runs with jax_enable_x64={now}: "
            f"run it inside `with jax.enable_x64({target.x64}):` (estimate_llc does), "
            f"or rebuild the target with precision: {'float64' if now else 'float32'}"
        )


def build_target(target_cfg: TargetConfig | Mapping[str, Any]) -> Target:
    """Generate the data, train ``w*`` and evaluate ``L0`` (under the config's precision).

    Args:
        target_cfg: A :class:`TargetConfig` or a mapping that validates as one (what
            :func:`~sweepflow.workloads.llc.estimate_llc` takes).

    Raises:
        LLCError: On a mapping that is not a valid target configuration: the key path,
            what is wrong and how to fix it.
    """
    import jax

    start = time.perf_counter()
    config: TargetConfig = validate(TargetConfig, target_cfg, "target")
    with jax.enable_x64(config.x64):
        dtype = jax.numpy.float64 if config.x64 else jax.numpy.float32
        x, y = make_data(config, dtype)
        key_init, key_train = jax.random.split(jax.random.PRNGKey(config.seed))
        constants: dict[str, Any] = {}
        losses: tuple[float, ...] = ()
        if isinstance(config.model, QuadraticModel):
            quadratic = config.model
            program, _ = compiled(
                ("quadratic", quadratic, str(dtype)),
                lambda: lambda key: _quadratic_setup(quadratic, key, dtype),
                key_init,
            )
            params, constants = program(key_init)
        else:
            zero = config.training.init == "zero"
            model, width = config.model, config.data.input_dim
            program, _ = compiled(
                ("init", model, width, str(dtype), zero),
                lambda: lambda key: init_params(model, width, key, dtype, zero),
                key_init,
            )
            params = program(key_init)
            params, values = train(config.model, params, x, y, config.training, key_train)
            losses = tuple(float(v) for v in jax.device_get(values))
        loss = target_loss(config.model)
        program, _ = compiled(("loss", config.model), lambda: loss, params, x, y, constants)
        l0 = float(program(params, x, y, constants))
    return Target(
        config=config,
        target_id=config.target_id,
        x64=config.x64,
        params=params,
        x=x,
        y=y,
        l0=l0,
        train_losses=losses,
        build_seconds=time.perf_counter() - start,
        constants=constants,
    )


def _quadratic_setup(model: QuadraticModel, key: jax.Array, dtype: Any) -> tuple[Any, dict]:
    import jax
    import jax.numpy as jnp

    d = len(model.eigenvalues)
    key_center, key_basis = jax.random.split(key)
    center = jax.random.normal(key_center, (d,), dtype)
    h = jnp.asarray(model.eigenvalues, dtype)
    if model.rotate:
        q, _ = jnp.linalg.qr(jax.random.normal(key_basis, (d, d), dtype))
        hessian = (q * h) @ q.T
    else:
        hessian = jnp.diag(h)
    return {"w": center}, {"hessian": hessian, "center": center}


def target_loss(model: ModelConfig) -> Callable[[Any, Any, Any, dict[str, Any]], Any]:
    """The loss ``(params, x, y, constants) -> scalar`` of a model family.

    ``constants`` are the arrays a target adds (the Hessian and minimum of a quadratic
    target); passing them as arguments keeps compiled programs independent of them.
    """
    if isinstance(model, QuadraticModel):
        l0 = model.l0

        def quadratic(params: Any, x: Any, y: Any, constants: dict[str, Any]) -> Any:
            delta = params["w"] - constants["center"]
            return l0 + 0.5 * delta @ (constants["hessian"] @ delta)

        return quadratic
    squared = squared_error(model)
    return lambda params, x, y, constants: squared(params, x, y)
