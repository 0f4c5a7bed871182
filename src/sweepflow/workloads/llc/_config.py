"""Target configuration: model, teacher data, training and precision (frozen pydantic).

A target is a trained parameter ``w*`` together with the data that defines ``L_n``. Its id
is the digest of its resolved configuration (:attr:`TargetConfig.target_id`), so two
files that resolve to the same model, data, training, seed and precision name one target.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sweepflow.hashing import digest

__all__ = [
    "DLNModel",
    "DataConfig",
    "MLPModel",
    "ModelConfig",
    "QuadraticModel",
    "TargetConfig",
    "TeacherConfig",
    "ToyModel",
    "TrainingConfig",
]

Precision = Literal["float32", "float64"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPModel(_Frozen):
    """A multilayer perceptron ``input_dim -> widths... -> output_dim``."""

    kind: Literal["mlp"] = Field("mlp", description="Model family.")
    widths: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        (16,), description="Hidden layer widths, input side first."
    )
    activation: Literal["relu", "tanh", "gelu", "silu", "identity"] = Field(
        "relu", description="Activation between layers (none after the last)."
    )
    bias: bool = Field(True, description="Whether each layer has a bias.")
    output_dim: int = Field(1, gt=0, description="Width of the output.")


class DLNModel(_Frozen):
    """A deep linear network ``x -> W_L ... W_1 x`` (no biases, no activations).

    One hidden layer of width ``H`` is reduced-rank regression ``M -> H -> N``.
    """

    kind: Literal["dln"] = Field("dln", description="Model family.")
    widths: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        ..., min_length=1, description="Hidden layer widths, input side first."
    )
    output_dim: int = Field(1, gt=0, description="Width of the output.")


class ToyModel(_Frozen):
    """The one-parameter family ``f(x; w) = x * prod_j w_j ** k_j`` (normal crossing).

    At ``w = 0`` with a zero teacher its learning coefficient is ``1 / (2 max_j k_j)``.
    The output has the input's width (each coordinate of ``x`` times the product).
    """

    kind: Literal["toy"] = Field("toy", description="Model family.")
    powers: tuple[Annotated[int, Field(gt=0)], ...] = Field(
        ..., min_length=1, description="The exponents k_j, one per parameter w_j."
    )


class QuadraticModel(_Frozen):
    """An analytic loss ``L(w) = l0 + 1/2 (w - w*)^T H (w - w*)``; needs no data or training.

    ``H`` has the given eigenvalues, in a random orthonormal basis drawn from the target
    seed when ``rotate`` is true; ``w*`` is drawn from the target seed. ``data.n`` still
    sets ``n`` in ``n * beta``.
    """

    kind: Literal["quadratic"] = Field("quadratic", description="Model family.")
    eigenvalues: tuple[Annotated[float, Field(gt=0)], ...] = Field(
        ..., min_length=1, description="Eigenvalues h_i of the Hessian H (all > 0)."
    )
    l0: float = Field(0.0, description="The loss at its minimum w*.")
    rotate: bool = Field(True, description="Rotate H by a random orthonormal basis.")


ModelConfig = Annotated[
    MLPModel | DLNModel | ToyModel | QuadraticModel, Field(discriminator="kind")
]


class TeacherConfig(_Frozen):
    """The function that labels the data: ``y = teacher(x) + noise``."""

    kind: Literal["random", "zero"] = Field(
        "random",
        description="'random': the teacher model at a random initialisation (data seed); "
        "'zero': y is noise only (the true parameter is the origin).",
    )
    model: ModelConfig | None = Field(
        None, description="The teacher's architecture (default: the student's)."
    )
    scale: float = Field(1.0, description="Factor on the teacher's output.")


class DataConfig(_Frozen):
    """Synthetic regression data: ``x ~ N(0, I)``, ``y = teacher(x) + noise * N(0, I)``."""

    n: int = Field(1000, ge=2, description="Number of samples (the n of n * beta).")
    input_dim: int = Field(1, gt=0, description="Width of x.")
    noise: float = Field(0.1, ge=0, description="Standard deviation of the label noise.")
    seed: int = Field(0, description="Seed of x, the noise and a random teacher.")
    teacher: TeacherConfig = Field(
        default_factory=TeacherConfig, description="The teacher that labels the data."
    )


class TrainingConfig(_Frozen):
    """Training of the student to ``w*`` with optax."""

    optimizer: Literal["adam", "sgd"] = Field("adam", description="The optax optimiser.")
    learning_rate: float = Field(1e-2, gt=0, description="Its learning rate.")
    steps: int = Field(1000, ge=0, description="Optimiser steps (0: w* is the initialisation).")
    batch_size: int | None = Field(
        64, gt=0, description="Minibatch size (drawn with replacement); null: full batch."
    )
    init: Literal["random", "zero"] = Field(
        "random",
        description="Initial parameters: 'random' (LeCun normal weights, zero biases, from "
        "the target seed) or 'zero' (the origin, e.g. the singular point of toy models).",
    )


class TargetConfig(_Frozen):
    """A target: what ``L_n`` is and where ``w*`` sits.

    Example (YAML)::

        model: {kind: mlp, widths: [16, 16], activation: tanh}
        data: {n: 1000, input_dim: 2, noise: 0.1, seed: 0}
        training: {optimizer: adam, learning_rate: 0.01, steps: 2000, batch_size: 64}
        seed: 0
        precision: float32
    """

    model: ModelConfig = Field(..., description="The student model.")
    data: DataConfig = Field(default_factory=DataConfig, description="The training data.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="How w* is found.")
    seed: int = Field(0, description="Seed of the initialisation and the training batches.")
    precision: Precision = Field(
        "float32",
        description="float64 turns jax_enable_x64 on while the target is built and sampled.",
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> TargetConfig:
        teacher = self.data.teacher.model
        if teacher is not None and _output_dim(teacher, self.data) != _output_dim(
            self.model, self.data
        ):
            raise ValueError(
                "data.teacher.model must have the student's output width "
                f"({_output_dim(self.model, self.data)}), not {_output_dim(teacher, self.data)}"
            )
        return self

    @property
    def target_id(self) -> str:
        """The digest of the resolved configuration (defaults filled in)."""
        return digest({"llc_target": self})

    @property
    def x64(self) -> bool:
        """The ``jax_enable_x64`` setting this target is built and sampled with."""
        return self.precision == "float64"


def _output_dim(model: BaseModel, data: DataConfig) -> int:
    if isinstance(model, ToyModel):
        return data.input_dim
    if isinstance(model, QuadraticModel):
        return 0
    return model.output_dim  # type: ignore[attr-defined]
