"""What a sampler hands back: the L_n of each draw of each chain, and its costs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ChainTraces"]


@dataclass(frozen=True)
class ChainTraces:
    """Raw sampler output (numpy arrays), before the estimator summarises it.

    Attributes:
        losses: ``L_n`` at each draw, shape (chains, draws).
        full: Whether each draw's loss is the full-data ``L_n`` (else a minibatch
            estimate of it), shape (draws,).
        steps: Sampler step of each draw (after burn-in), shape (draws,).
        final_losses: Full-data ``L_n`` at each chain's last state, shape (chains,).
        acceptance: Mean acceptance rate per chain (None where it does not apply).
        grad_evals: Gradient evaluations per chain, burn-in included.
        compile_seconds: Time to trace and compile the sampling program.
        wall_seconds: Time to run it, compilation excluded.
        tuning: Tuned sampler parameters (step size, L, ...), for the record.
    """

    losses: Any
    full: Any
    steps: Any
    final_losses: Any
    acceptance: list[float] | None
    grad_evals: list[int]
    compile_seconds: float
    wall_seconds: float
    tuning: dict[str, Any]
