"""``train_and_evaluate``: a tiny JAX regression in three cached steps.

``prepare_dataset`` draws a synthetic linear-regression data set, ``train`` fits a
linear model to its training split with optax, ``evaluate`` reports the test MSE. JAX
and optax are imported inside the steps, so importing this module (``sweepflow workflow
show``) stays light. Run it from this folder::

    sweepflow workflow run train_and_evaluate --config config.yaml
    sweepflow workflow run train_and_evaluate --config config.yaml train.lr=0.05
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

import sweepflow


class DataConfig(BaseModel):
    """The synthetic data set: ``y = x @ w + noise``, the last quarter held out."""

    n: int = Field(256, gt=8, description="Number of examples.")
    d: int = Field(8, gt=0, description="Number of features.")
    noise: float = Field(0.1, ge=0, description="Standard deviation of the label noise.")
    seed: int = Field(0, description="Seed of the data.")


class TrainConfig(BaseModel):
    """Full-batch Adam on the mean squared error."""

    lr: float = Field(0.1, gt=0, description="Learning rate.")
    steps: int = Field(200, gt=0, description="Number of optimizer steps.")
    seed: int = Field(0, description="Seed of the initial weights.")


class EvaluateConfig(BaseModel):
    """Nothing to choose yet; the step still has a config key."""

    split: str = Field("test", description="Which split to score (only 'test').")


@sweepflow.step(outputs={"dataset": "dataset"})
def prepare_dataset(cfg: DataConfig, workspace: Path) -> dict[str, Path]:
    """Draw the data set and save it as ``data.npz`` (train and test splits)."""
    import jax

    key_w, key_x, key_e = jax.random.split(jax.random.key(cfg.seed), 3)
    w = jax.random.normal(key_w, (cfg.d,))
    x = jax.random.normal(key_x, (cfg.n, cfg.d))
    y = x @ w + cfg.noise * jax.random.normal(key_e, (cfg.n,))
    cut = cfg.n * 3 // 4
    path = workspace / "data.npz"
    x_np, y_np = np.asarray(x), np.asarray(y)
    np.savez(path, x_train=x_np[:cut], y_train=y_np[:cut], x_test=x_np[cut:], y_test=y_np[cut:])
    return {"dataset": path}


@sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    """Fit ``y ≈ x @ w + b`` with optax Adam; log the loss; save ``params.npz``."""
    import jax
    import jax.numpy as jnp
    import optax

    data = np.load(dataset.path)
    x, y = jnp.asarray(data["x_train"]), jnp.asarray(data["y_train"])
    params = {"w": 0.01 * jax.random.normal(jax.random.key(cfg.seed), (x.shape[1],)), "b": 0.0}
    optimizer = optax.adam(cfg.lr)

    def loss(p: dict[str, jax.Array]) -> jax.Array:
        return jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    @jax.jit
    def update(
        p: dict[str, jax.Array], state: optax.OptState
    ) -> tuple[dict[str, jax.Array], optax.OptState, jax.Array]:
        value, grads = jax.value_and_grad(loss)(p)
        changes, state = optimizer.update(grads, state)
        return optax.apply_updates(p, changes), state, value

    state = optimizer.init(params)
    for i in range(cfg.steps):
        params, state, value = update(params, state)
        if i % 50 == 0 or i == cfg.steps - 1:
            sweepflow.log_metrics({"loss": value}, step=i)
    path = workspace / "params.npz"
    np.savez(path, w=np.asarray(params["w"]), b=np.asarray(params["b"]))
    return {"model": path}


@sweepflow.step(
    inputs={"dataset": "dataset", "model": "model"}, outputs={"evaluation": "evaluation"}
)
def evaluate(
    cfg: EvaluateConfig, dataset: sweepflow.Artifact, model: sweepflow.Artifact, workspace: Path
) -> dict[str, Path]:
    """Score the model on the test split; write ``metrics.json`` and report ``test_mse``."""
    import jax.numpy as jnp

    data, params = np.load(dataset.path), np.load(model.path)
    x, y = jnp.asarray(data[f"x_{cfg.split}"]), jnp.asarray(data[f"y_{cfg.split}"])
    mse = float(jnp.mean((x @ params["w"] + params["b"] - y) ** 2))
    sweepflow.log_metrics({"test_mse": mse})
    path = workspace / "metrics.json"
    path.write_text(json.dumps({"test_mse": mse}, indent=2) + "\n")
    return {"evaluation": path}


train_and_evaluate = sweepflow.Workflow("train_and_evaluate", [prepare_dataset, train, evaluate])
