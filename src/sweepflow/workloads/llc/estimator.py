"""The LLC estimator ``λ̂ = nβ (E_w[L_n(w)] - L_n(w*))`` from sampler traces, per chain.

Each chain gives its own estimate (the mean of ``nβ (L_n - L0)`` over its draws) and a
running (cumulative) estimate. Chains that diverged (a non-finite loss) or escaped
(``nβ (L_n - L0)`` above a threshold at a full-data draw) are named and left out of the
mean and standard deviation, never averaged in silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ChainSummary", "default_escape", "summarize_chains"]


@dataclass(frozen=True)
class ChainSummary:
    """The estimator applied to traces.

    Attributes:
        per_chain: λ̂ of each chain (NaN where its losses are not finite).
        running: Running λ̂ of each chain, shape (chains, draws).
        problems: Chain index -> why it is left out (diverged or escaped).
        mean: Mean λ̂ over the healthy chains (NaN if none).
        sd: Their sample standard deviation (ddof 1; NaN with fewer than two).
    """

    per_chain: Any
    running: Any
    problems: dict[int, str]
    mean: float
    sd: float


def default_escape(num_params: int) -> float:
    """The escape threshold on ``nβ (L_n - L0)`` when none is configured: ``max(50, 10 d)``.

    At equilibrium ``nβ (L_n - L0)`` fluctuates around λ ≤ d/2 with light tails (for a
    Gaussian posterior it is ½ χ²_d), so a draw ten times the largest possible λ (and at
    least 50) means the chain left the basin of ``w*``.

    >>> default_escape(2), default_escape(30)
    (50.0, 300.0)
    """
    return float(max(50, 10 * num_params))


def summarize_chains(
    losses: Any, full: Any, final_losses: Any, l0: float, nbeta: float, escape: float
) -> ChainSummary:
    """Per-chain and pooled λ̂ from losses of shape (chains, draws).

    Args:
        losses: ``L_n`` (or its minibatch estimate) at each draw.
        full: Which draws carry the full-data ``L_n``, shape (draws,).
        final_losses: Full-data ``L_n`` at each chain's last state.
        l0: ``L_n(w*)``.
        nbeta: ``n β``.
        escape: Threshold on ``nβ (L_n - L0)`` at full-data draws.
    """
    import numpy as np

    losses = np.asarray(losses, dtype=np.float64)
    excess = nbeta * (losses - l0)
    counts = np.arange(1, losses.shape[1] + 1)
    running = np.cumsum(excess, axis=1) / counts
    per_chain = excess.mean(axis=1)
    finals = nbeta * (np.asarray(final_losses, dtype=np.float64) - l0)
    full = np.asarray(full, bool)
    problems = {
        chain: problem
        for chain in range(losses.shape[0])
        if (problem := _diagnose(excess[chain], full, finals[chain], escape)) is not None
    }
    healthy = [c for c in range(losses.shape[0]) if c not in problems]
    values = per_chain[healthy]
    mean = float(values.mean()) if len(values) else float("nan")
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return ChainSummary(per_chain, running, problems, mean, sd)


def _diagnose(excess: Any, full: Any, final: float, escape: float) -> str | None:
    """Why a chain must be left out (NaN/inf loss, or an escape), or None."""
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(excess))
    if len(bad):
        value = "NaN" if np.isnan(excess[bad[0]]) else "infinite"
        return f"diverged: loss {value} at draw {int(bad[0])}"
    if not np.isfinite(final):
        return "diverged: loss not finite at its last state"
    over = np.flatnonzero(full & (excess > escape))
    if len(over):
        first = int(over[0])
        return f"escaped: nβ(L_n - L0) = {excess[first]:.4g} > {escape:.4g} at draw {first}"
    if final > escape:
        return f"escaped: nβ(L_n - L0) = {final:.4g} > {escape:.4g} at its last state"
    return None
