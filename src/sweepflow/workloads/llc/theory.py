"""Known learning coefficients: the exact and asymptotic values the estimator is tested on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "default_beta",
    "normal_crossing_finite_llc",
    "normal_crossing_llc",
    "quadratic_llc",
    "reduced_rank_llc",
]


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


def normal_crossing_finite_llc(
    powers: Sequence[int],
    nbeta: float,
    gamma: float,
    *,
    curvature: float = 1.0,
    slope: float = 0.0,
    center: float = 0.0,
) -> float:
    """The exact finite-n estimand ``nβ (E[L_n] - L_n(w*))`` of a normal-crossing toy.

    The toy's loss depends on ``w`` only through ``u = Π_j w_j^{k_j}``:
    ``L_n(w) = L_n(0) + ½ curvature u² - slope u``, with ``curvature = mean_i |x_i|²``
    and ``slope = mean_i x_i · y_i`` of the target's data. The expectation is under
    ``p(w) ∝ exp(-nβ L_n(w) - gamma/2 |w - w*|²)``. It tends to :func:`normal_crossing_llc`
    as nβ grows, but slowly where several powers equal ``max k`` (multiplicity m > 1:
    corrections of order ``1 / log nβ``): for powers ``[1, 1, 1]`` it is half of 1/2
    at nβ ≈ 145.

    The reweighted prior is a one-dimensional integral over ``s = log |u|``: under
    ``N(0, I / gamma)``, ``s`` is a sum of independent ``k_j log |w_j|`` whose densities are
    known, so its density is their convolution (on a grid of step 0.01 over 44 e-folds
    of each ``|w_j|``, trapezoidal sums; accurate to about 1e-10). The sign of ``u`` is
    independent of ``|u|``: ±1 with equal odds if some power is odd, else +1. A single
    parameter with power 1 is a Gaussian and has a closed form, for any ``w*``.

    Args:
        powers: The exponents ``k_j`` (positive integers).
        nbeta: ``n β``.
        gamma: The localisation strength (> 0).
        curvature: ``mean_i |x_i|²`` (> 0); 1 in the limit of many samples.
        slope: ``mean_i x_i · y_i``; 0 in the limit of many samples.
        center: ``w*`` of a single power-1 parameter. Every other toy trained from zero
            stays at ``w* = 0`` (its gradient vanishes there), the only value allowed.

    Raises:
        ValueError: On non-positive powers, ``nbeta``, ``gamma`` or ``curvature``, or a
            non-zero ``center`` with more than one parameter or a power above 1.

    >>> round(normal_crossing_finite_llc([1], nbeta=100.0, gamma=1.0), 6)  # ½ nβ/(nβ + gamma)
    0.49505
    >>> nbeta = 1000 / math.log(1000)
    >>> [round(normal_crossing_finite_llc(k, nbeta, 1.0), 4) for k in ([2], [1, 2], [1, 1, 1])]
    [0.2403, 0.2021, 0.2517]
    >>> round(normal_crossing_finite_llc([1, 1, 1], 1e12, 1.0), 3)  # still below 1/2
    0.432
    """
    if not powers or min(powers) < 1:
        raise ValueError(f"powers must be positive integers, got {list(powers)}")
    for name, value in (("nbeta", nbeta), ("gamma", gamma), ("curvature", curvature)):
        if not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if list(powers) == [1]:
        return _gaussian_toy(nbeta, gamma, curvature, slope, center)
    if center != 0:
        raise ValueError(
            f"center (w*) must be 0 for powers {list(powers)}: only a single power-1 "
            f"parameter can be trained away from the origin, got {center}"
        )
    return _product_toy(powers, nbeta, gamma, curvature, slope)


def _gaussian_toy(nbeta: float, gamma: float, a: float, b: float, c: float) -> float:
    # p(w) ∝ exp(-nβ (½ a w² - b w) - gamma/2 (w - c)²) is N(mean, 1 / precision).
    precision = nbeta * a + gamma
    mean = (nbeta * b + gamma * c) / precision
    expected = 0.5 * a * (mean**2 + 1.0 / precision) - b * mean
    return nbeta * (expected - (0.5 * a * c**2 - b * c))


def _product_toy(powers: Sequence[int], nbeta: float, gamma: float, a: float, b: float) -> float:
    import numpy as np

    step, sd = 0.01, 1.0 / math.sqrt(gamma)
    low, high = math.log(sd) - 40.0, math.log(sd) + 4.0
    density: Any = None
    for k in powers:
        # The density of k log|w| for w ~ N(0, sd²), on the grid k * [low, high].
        z = np.arange(round(k * (high - low) / step) + 1) * (step / k) + low
        w = np.exp(z)
        part = 2.0 * w * np.exp(-0.5 * (w / sd) ** 2) / (sd * math.sqrt(2 * math.pi) * k)
        density = part if density is None else np.convolve(density, part) * step
    u = np.exp(sum(powers) * low + step * np.arange(density.size))
    signs = (1.0, -1.0) if any(k % 2 for k in powers) else (1.0,)
    losses = [0.5 * a * u * u - b * sign * u for sign in signs]
    floor = min(float(loss.min()) for loss in losses)  # keeps exp() from overflowing
    weights = [density * np.exp(-nbeta * (loss - floor)) for loss in losses]
    total = sum(float(weight.sum()) for weight in weights)
    mean = (
        sum(float((weight * loss).sum()) for weight, loss in zip(weights, losses, strict=True))
        / total
    )
    return nbeta * mean


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
