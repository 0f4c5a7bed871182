"""Sampler configuration: SGLD (written here) and HMC, NUTS, MCLMC (blackjax), frozen.

Every sampler runs ``chains`` chains from ``w*`` under the localised tempered posterior
``p(w) ∝ exp(-n β L_n(w) - gamma/2 |w - w*|²)``, discards ``burn_in`` steps, then keeps
``draws`` draws, one every ``thin`` steps.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BLACKJAX_KINDS",
    "HMCConfig",
    "MCLMCConfig",
    "NUTSConfig",
    "SGLDConfig",
    "SamplerConfig",
]


class _Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    chains: int = Field(4, gt=0, description="Number of chains, all started at w*.")
    draws: int = Field(1000, gt=0, description="Draws kept per chain.")
    burn_in: int = Field(
        0, ge=0, description="Steps before the first draw (warm-up / tuning for blackjax)."
    )
    thin: int = Field(1, gt=0, description="Sampler steps between two draws.")
    seed: int = Field(0, description="Seed of the chains' PRNG keys.")
    gamma: float = Field(
        100.0, ge=0, description="Localisation strength gamma of the prior around w*."
    )
    beta: float | None = Field(None, gt=0, description="Inverse temperature β (null: 1 / log n).")
    escape: float | None = Field(
        None,
        gt=0,
        description="A chain whose n β (L_n - L0) exceeds this at a full-data draw has "
        "escaped and is left out of the estimate (null: max(50, 10 d), d = parameters).",
    )


class SGLDConfig(_Sampler):
    """Stochastic gradient Langevin dynamics with minibatches drawn with replacement.

    One step: ``w <- w - ε/2 G (n β ∇L_batch(w) + gamma (w - w*)) + N(0, ε G)`` with ``G = 1``,
    or ``G = 1 / (sqrt(V) + rmsprop_eps)`` where ``V`` is the RMSProp average of
    ``∇L_batch²`` (the loss gradient only, not the localisation term) when
    ``precondition: rmsprop``.
    """

    kind: Literal["sgld"] = Field("sgld", description="Sampler.")
    step_size: float = Field(1e-4, gt=0, description="Step size ε.")
    batch_size: int | None = Field(
        64, gt=0, description="Minibatch size (with replacement); null: full data."
    )
    precondition: Literal["none", "rmsprop"] = Field(
        "none", description="Diagonal preconditioning of drift and noise."
    )
    rmsprop_alpha: float = Field(0.99, gt=0, lt=1, description="RMSProp averaging factor.")
    rmsprop_eps: float = Field(0.1, gt=0, description="RMSProp stabiliser added to sqrt(V).")
    eval_every: int | None = Field(
        1,
        gt=0,
        description="Evaluate the full-data L_n at every k-th draw; the other draws record "
        "the minibatch loss of their step, an unbiased estimate of L_n (null: never, "
        "minibatch losses only, as devinterp does).",
    )


class HMCConfig(_Sampler):
    """Hamiltonian Monte Carlo (blackjax) with window adaptation of step size and mass."""

    kind: Literal["hmc"] = Field("hmc", description="Sampler.")
    burn_in: int = Field(500, ge=10, description="Window-adaptation steps (discarded).")
    integration_steps: int = Field(16, gt=0, description="Leapfrog steps per transition.")
    jitter: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="After warm-up each transition's step size is the adapted one times "
        "U(1 - jitter, 1 + jitter), so that no fixed trajectory length resonates.",
    )
    target_acceptance: float = Field(
        0.8, gt=0, lt=1, description="Acceptance rate the step size is adapted to."
    )


class NUTSConfig(_Sampler):
    """The no-U-turn sampler (blackjax) with window adaptation of step size and mass."""

    kind: Literal["nuts"] = Field("nuts", description="Sampler.")
    burn_in: int = Field(500, ge=10, description="Window-adaptation steps (discarded).")
    target_acceptance: float = Field(
        0.8, gt=0, lt=1, description="Acceptance rate the step size is adapted to."
    )
    max_tree_depth: int = Field(10, gt=0, description="Maximum number of trajectory doublings.")


class MCLMCConfig(_Sampler):
    """Microcanonical Langevin Monte Carlo (blackjax), unadjusted, with L and ε tuning."""

    kind: Literal["mclmc"] = Field("mclmc", description="Sampler.")
    burn_in: int = Field(1000, ge=10, description="Tuning steps for L and the step size.")
    desired_energy_var: float = Field(
        5e-4, gt=0, description="Energy variance per dimension the step size is tuned to."
    )
    diagonal_preconditioning: bool = Field(True, description="Tune a diagonal preconditioner too.")


SamplerConfig = Annotated[
    SGLDConfig | HMCConfig | NUTSConfig | MCLMCConfig, Field(discriminator="kind")
]

BLACKJAX_KINDS = frozenset({"hmc", "nuts", "mclmc"})
