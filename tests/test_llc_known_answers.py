"""LLC estimates against known answers: quadratic, regular, normal-crossing, reduced rank.

Where the finite-n estimand is known exactly (the quadratic loss, linear regression, the
normal-crossing toys) the estimate is compared with it rather than with its n -> ∞ limit.

The fast rows run by default; the ``slow`` rows run the same targets longer, with tighter
tolerances. Every tolerance is on a sampled estimate, so a wrong sampler, estimator or
model fails them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sweepflow.workloads.llc import (
    DataConfig,
    DLNModel,
    LLCResult,
    MLPModel,
    QuadraticModel,
    Target,
    TargetConfig,
    TeacherConfig,
    ToyModel,
    TrainingConfig,
    build_target,
    estimate_llc,
    normal_crossing_finite_llc,
    normal_crossing_llc,
    quadratic_llc,
    reduced_rank_llc,
    sample_llc,
)

EIGENVALUES = (0.5, 1.0, 2.0, 4.0)


def _healthy(result: LLCResult) -> None:
    assert not result.diagnostics.divergent_chains, result.diagnostics.divergent_chains
    assert all(math.isfinite(v) for v in result.llc_per_chain)


# --- quadratic loss: the exact finite-n value ½ Σ nβ h / (nβ h + gamma) ---------------------


def _quadratic(precision: str) -> TargetConfig:
    return TargetConfig(
        model=QuadraticModel(eigenvalues=EIGENVALUES, l0=0.25),
        data=DataConfig(n=1000),
        precision=precision,
    )


QUADRATIC_ROWS = [
    pytest.param(
        "float32",
        {"kind": "sgld", "step_size": 1e-4, "chains": 8, "draws": 20000, "burn_in": 1000},
        0.05,
        id="sgld",
    ),
    pytest.param(
        "float64", {"kind": "hmc", "chains": 4, "draws": 1000, "burn_in": 300}, 0.05, id="hmc"
    ),
    pytest.param(
        "float32",
        {"kind": "sgld", "step_size": 1e-4, "chains": 16, "draws": 50000, "burn_in": 2000},
        0.03,
        id="sgld-long",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "float64",
        {"kind": "hmc", "chains": 8, "draws": 4000, "burn_in": 1000},
        0.02,
        id="hmc-long",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "float64",
        {"kind": "nuts", "chains": 4, "draws": 2000, "burn_in": 500},
        0.03,
        id="nuts",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "float64",
        {"kind": "mclmc", "chains": 4, "draws": 4000, "burn_in": 1000},
        0.03,
        id="mclmc",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("precision", "sampler", "rtol"), QUADRATIC_ROWS)
def test_quadratic_loss_matches_the_exact_value(precision: str, sampler: dict, rtol: float):
    result = estimate_llc(_quadratic(precision), {**sampler, "gamma": 100.0})
    _healthy(result)
    exact = quadratic_llc(EIGENVALUES, result.nbeta, result.gamma)
    assert result.l0 == pytest.approx(0.25)
    assert result.llc == pytest.approx(exact, rel=rtol), (result.summary(), exact)
    if result.chains[0].acceptance is not None:
        assert all(0.5 < chain.acceptance <= 1.0 for chain in result.chains)


# --- a regular model: linear regression with d parameters, λ -> d/2 ----------------------


def _linear(input_dim: int, n: int) -> TargetConfig:
    return TargetConfig(
        model=MLPModel(widths=(), bias=True, output_dim=1),
        data=DataConfig(n=n, input_dim=input_dim, noise=0.5, seed=3),
        training=TrainingConfig(steps=500, batch_size=None, learning_rate=0.05),
        seed=1,
    )


@pytest.mark.parametrize(
    ("n", "step_size", "batch", "draws", "thin", "rtol"),
    [
        pytest.param(1000, 1e-3, 100, 2000, 2, 0.08, id="fast"),
        # SGLD's bias grows with ε (nβ)² / batch: a larger n needs a smaller step.
        pytest.param(10000, 2e-5, 500, 2000, 10, 0.03, id="long", marks=pytest.mark.slow),
    ],
)
def test_linear_regression_tends_to_half_the_dimension(
    n: int, step_size: float, batch: int, draws: int, thin: int, rtol: float
) -> None:
    target = _linear(input_dim=5, n=n)
    sampler = {
        "kind": "sgld",
        "step_size": step_size,
        "chains": 8,
        "draws": draws,
        "thin": thin,
        "burn_in": 500,
        "batch_size": batch,
        "gamma": 1.0,
    }
    built = build_target(target)
    result = sample_llc(built, sampler)  # float32: JAX's default x64 setting
    _healthy(result)
    d = result.num_params
    assert d == 6
    assert result.llc == pytest.approx(d / 2, rel=rtol), result.summary()
    # The finite-n value from the eigenvalues of the Hessian XᵀX / n (bias column added).
    x = np.hstack([np.asarray(built.x, dtype=np.float64), np.ones((n, 1))])
    exact = quadratic_llc(np.linalg.eigvalsh(x.T @ x / n), result.nbeta, result.gamma)
    assert result.llc == pytest.approx(exact, rel=rtol)


# --- normal-crossing toys: the exact finite-n value, which tends to 1 / (2 max k) ----------


def _toy(powers: tuple[int, ...], n: int) -> TargetConfig:
    return TargetConfig(
        model=ToyModel(powers=powers),
        data=DataConfig(n=n, noise=0.1, teacher=TeacherConfig(kind="zero")),
        training=TrainingConfig(init="zero", steps=100, batch_size=None),
    )


def _toy_exact(built: Target, nbeta: float, gamma: float) -> float:
    """The exact finite-n estimand of a built toy, from its data and its ``w*``."""
    x, y = (np.asarray(a, dtype=np.float64) for a in (built.x, built.y))
    powers = built.config.model.powers  # type: ignore[union-attr]
    # Training from zero moves w* only for a single power-1 parameter (elsewhere the
    # gradient vanishes at the origin); normal_crossing_finite_llc checks that.
    w_star = np.asarray(built.params["w"], dtype=np.float64)
    return normal_crossing_finite_llc(
        powers,
        nbeta,
        gamma,
        curvature=float(np.mean(np.sum(x * x, axis=-1))),
        slope=float(np.mean(np.sum(x * y, axis=-1))),
        center=float(w_star[0]) if len(powers) == 1 else 0.0,
    )


# [1, 1, 1] has multiplicity 3: its finite-n value is 40-50 % below 1/(2 max k) = 1/2.
TOY_POWERS = [(1,), (2,), (1, 2), (3,), (1, 1, 1)]


@pytest.mark.parametrize(
    ("powers", "n", "batch", "draws", "thin"),
    [
        *(pytest.param(p, 1000, 100, 1000, 5, id=f"fast-{p}") for p in TOY_POWERS),
        *(
            pytest.param(p, 10000, 500, 2000, 20, id=f"long-{p}", marks=pytest.mark.slow)
            for p in TOY_POWERS
        ),
    ],
)
def test_normal_crossing_toys(powers: tuple[int, ...], n: int, batch: int, draws: int, thin: int):
    sampler = {
        "kind": "sgld",
        "step_size": 1.0 / n,
        "chains": 8,
        "draws": draws,
        "thin": thin,
        "burn_in": draws * thin // 4,
        "batch_size": batch,
        "gamma": 1.0,
    }
    built = build_target(_toy(powers, n))
    result = sample_llc(built, sampler)  # float32: JAX's default x64 setting
    _healthy(result)
    exact = _toy_exact(built, result.nbeta, result.gamma)
    assert exact < normal_crossing_llc(powers)
    assert result.llc_sd < 0.5 * exact, result.summary()  # the band below means something
    # Chains are independent, so the standard error of their mean is sd / sqrt(chains);
    # 5 % more allows for SGLD's step-size bias (about ε nβ / 4 ≈ 3 % on the regular [1]).
    stderr = result.llc_sd / math.sqrt(len(result.llc_per_chain))
    assert abs(result.llc - exact) <= 3.5 * stderr + 0.05 * exact, (result.summary(), exact)


# --- reduced-rank regression, true rank 0 (Aoyagi & Watanabe 2005) ----------------------


def _rrr(m: int, h: int, n_out: int, n: int) -> TargetConfig:
    return TargetConfig(
        model=DLNModel(widths=(h,), output_dim=n_out),
        data=DataConfig(n=n, input_dim=m, noise=1.0, teacher=TeacherConfig(kind="zero")),
        training=TrainingConfig(init="zero", steps=0),
    )


@pytest.mark.parametrize(
    ("mhn", "n", "step_size", "draws", "rtol"),
    [
        pytest.param((5, 3, 5), 2000, 1.5e-4, 1000, 0.4, id="5-3-5"),
        pytest.param((10, 2, 10), 2000, 1.5e-4, 1000, 0.4, id="10-2-10"),
        pytest.param((5, 3, 5), 10000, 1e-4, 3000, 0.2, id="5-3-5-long", marks=pytest.mark.slow),
        pytest.param(
            (10, 2, 10), 10000, 1e-4, 3000, 0.2, id="10-2-10-long", marks=pytest.mark.slow
        ),
    ],
)
def test_reduced_rank_regression(
    mhn: tuple[int, int, int], n: int, step_size: float, draws: int, rtol: float
) -> None:
    sampler = {
        "kind": "sgld",
        "step_size": step_size,
        "chains": 4,
        "draws": draws,
        "thin": 5,
        "burn_in": draws,
        "batch_size": 200,
        "gamma": 1.0,
    }
    result = estimate_llc(_rrr(*mhn, n=n), sampler)
    _healthy(result)
    true = reduced_rank_llc(*mhn)
    assert result.num_params == mhn[1] * (mhn[0] + mhn[2])
    assert result.llc == pytest.approx(true, rel=rtol), (result.summary(), true)
