"""Known learning coefficients: the exact and asymptotic values the estimator is tested on."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["default_beta", "normal_crossing_llc", "quadratic_llc", "reduced_rank_llc"]


def default_beta(n: int) -> float:
    """The default inverse temperature ``β = 1 / log n``.

    >>> round(default_beta(1000), 4)
    0.1448
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 for β = 1/log n, got {n}")
    return 1.0 / math.log(n)


def quadratic_llc(eigenvalues: Sequence[float], nbeta: float, gamma: float) -> float:
    """The exact finite-n estimand for ``L = L0 + ½ (w - w*)ᵀ H (w - w*)``.

    Under ``p(w) ∝ exp(-nβ L(w) - gamma/2 |w - w*|²)``, a Gaussian, ``nβ (E[L] - L0)`` is
    ``½ Σ_i nβ h_i / (nβ h_i + gamma)``; it tends to ``d/2`` (a regular model) as nβ grows.

    >>> quadratic_llc([1.0, 1.0], nbeta=100.0, gamma=0.0)
    1.0
    >>> round(quadratic_llc([1.0], nbeta=100.0, gamma=100.0), 6)
    0.25
    """
    return 0.5 * sum(nbeta * h / (nbeta * h + gamma) for h in eigenvalues)


def normal_crossing_llc(powers: Sequence[int]) -> float:
    """The learning coefficient of ``f(x; w) = x Π_j w_j^{k_j}`` at ``w = 0``: ``1/(2 max k)``.

    >>> [normal_crossing_llc(k) for k in ([1], [2], [1, 2])]
    [0.5, 0.25, 0.25]
    """
    if not powers or min(powers) < 1:
        raise ValueError(f"powers must be positive integers, got {list(powers)}")
    return 1.0 / (2 * max(powers))


def reduced_rank_llc(m: int, h: int, n: int, rank: int = 0) -> float:
    """Aoyagi & Watanabe (2005): the learning coefficient of reduced-rank regression.

    The model is ``x ↦ B A x`` with ``A`` of shape (h, m) and ``B`` of shape (n, h); the
    true map has the given rank (0: the zero map).

    >>> reduced_rank_llc(5, 3, 5), reduced_rank_llc(10, 2, 10)
    (6.5, 9.5)
    """
    if not 0 <= rank <= min(m, h, n):
        raise ValueError(f"rank must be within 0..min(m, h, n) = {min(m, h, n)}, got {rank}")
    if m + h < n + rank:
        return (h * m - h * rank + n * rank) / 2
    if n + h < m + rank:
        return (h * n - h * rank + m * rank) / 2
    if m + n < h + rank:
        return m * n / 2
    core = 2 * (h + rank) * (m + n) - (m - n) ** 2 - (h + rank) ** 2
    if (m + h + n + rank) % 2:
        core += 1
    return core / 8
