"""LLC workload: precision guard, divergent chains, determinism, traces, results, plots."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import numpy as np
import pytest

from sweepflow.workloads.llc import (
    DataConfig,
    LLCError,
    LLCResult,
    MLPModel,
    PrecisionMismatchError,
    QuadraticModel,
    SGLDConfig,
    TargetConfig,
    TrainingConfig,
    build_target,
    estimate_llc,
    plot_llc,
    quadratic_llc,
    sample_llc,
)
from sweepflow.workloads.llc.estimator import summarize_chains
from sweepflow.workloads.llc.sgld import sgld_update


def _mlp(precision: str = "float32", seed: int = 0) -> TargetConfig:
    return TargetConfig(
        model=MLPModel(widths=(4,), activation="tanh"),
        data=DataConfig(n=200, input_dim=2, noise=0.1),
        training=TrainingConfig(steps=300, batch_size=32),
        seed=seed,
        precision=precision,
    )


SGLD = {"kind": "sgld", "step_size": 5e-4, "chains": 3, "draws": 200, "burn_in": 50, "gamma": 10.0}


@pytest.fixture(scope="module")
def mlp_result() -> LLCResult:
    return estimate_llc(_mlp(), SGLD)


# --- build_target takes what estimate_llc takes -----------------------------------------


def test_build_target_takes_a_mapping_like_estimate_llc() -> None:
    config = _mlp()
    from_mapping = build_target(config.model_dump(mode="json"))
    from_model = build_target(config)
    assert from_mapping.config == from_model.config
    assert from_mapping.target_id == from_model.target_id
    assert from_mapping.l0 == from_model.l0
    for got, expected in zip(
        jax.tree_util.tree_leaves((from_mapping.params, from_mapping.x, from_mapping.y)),
        jax.tree_util.tree_leaves((from_model.params, from_model.x, from_model.y)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ({"model": {"kind": "mlp"}, "data": {"n": 1}}, "data.n"),
        ({"model": {"kind": "mlp", "widths": [4]}, "trainig": {}}, "did you mean 'training'"),
        ({"model": {"kind": "perceptron"}}, "perceptron"),
        ("target.yaml", "must be a mapping"),
    ],
    ids=["n-too-small", "misspelt-key", "unknown-kind", "not-a-mapping"],
)
def test_build_target_rejects_a_bad_mapping_like_estimate_llc(target: object, match: str) -> None:
    with pytest.raises(LLCError, match=match) as built:
        build_target(target)  # type: ignore[arg-type]
    with pytest.raises(LLCError) as estimated:
        estimate_llc(target, SGLD)  # type: ignore[arg-type]
    assert str(built.value) == str(estimated.value)


# --- precision guard -------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_sampling_under_the_other_x64_setting_is_refused(precision: str) -> None:
    target = build_target(
        TargetConfig(model=QuadraticModel(eigenvalues=(1.0,)), precision=precision)
    )
    built_with = precision == "float64"
    assert target.x64 is built_with
    assert target.x.dtype == np.dtype(precision)
    with jax.enable_x64(not built_with), pytest.raises(PrecisionMismatchError) as caught:
        sample_llc(target, SGLD)
    message = str(caught.value)
    assert f"jax_enable_x64={built_with}" in message
    assert f"jax_enable_x64={not built_with}" in message
    assert "\n" not in message


def test_blackjax_samplers_refuse_float32_targets() -> None:
    with pytest.raises(LLCError, match=r"nuts runs in float64 only.*precision: float64"):
        estimate_llc(_mlp("float32"), {"kind": "nuts"})


def test_estimate_leaves_the_global_x64_setting_alone() -> None:
    before = bool(jax.config.jax_enable_x64)
    estimate_llc(
        TargetConfig(model=QuadraticModel(eigenvalues=(1.0,)), precision="float64"),
        {**SGLD, "draws": 10, "burn_in": 0, "batch_size": None},
    )
    assert bool(jax.config.jax_enable_x64) is before


# --- results: traces, per-chain values, JSON, plots ------------------------------------


def test_result_has_traces_per_chain(mlp_result: LLCResult) -> None:
    r = mlp_result
    assert len(r.chains) == 3 and [c.name for c in r.chains] == ["chain 0", "chain 1", "chain 2"]
    assert np.shape(r.traces.loss) == (3, 200) == np.shape(r.traces.running_llc)
    assert r.traces.steps[:3] == [50, 51, 52]
    # The running estimate ends at the chain's estimate, and the estimate is their mean.
    for chain, running in zip(r.chains, r.traces.running_llc, strict=True):
        assert running[-1] == pytest.approx(chain.llc)
    assert r.llc == pytest.approx(np.mean(r.llc_per_chain))
    assert r.llc_sd == pytest.approx(np.std(r.llc_per_chain, ddof=1))
    assert r.llc_per_chain[0] == pytest.approx(
        r.nbeta * (np.mean(r.traces.loss[0]) - r.l0), rel=1e-9
    )
    assert r.beta == pytest.approx(1 / math.log(200))
    assert all(c.grad_evals == 250 for c in r.chains)
    assert r.diagnostics.ess is not None and r.diagnostics.ess > 1
    assert r.diagnostics.rhat is not None and 0.9 < r.diagnostics.rhat < 2
    assert r.timings.draws_per_second > 0 and r.versions["jax"] == jax.__version__


def test_result_round_trips_through_json(mlp_result: LLCResult, tmp_path: Path) -> None:
    path = mlp_result.save(tmp_path / "sub" / "llc.json")
    assert LLCResult.load(path) == mlp_result


def test_plots_are_written(mlp_result: LLCResult, tmp_path: Path) -> None:
    paths = plot_llc(mlp_result, tmp_path, reference=1.0)
    assert sorted(p.name for p in paths) == ["llc.png", "loss_trace.png", "running_llc.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000  # axes, lines and legends, not an empty canvas


def test_full_data_loss_every_k_draws() -> None:
    target = build_target(_mlp())
    every3 = sample_llc(target, {**SGLD, "draws": 7, "eval_every": 3})
    assert every3.traces.full_data == [True, False, False, True, False, False, True]
    online = sample_llc(target, {**SGLD, "draws": 7, "eval_every": None})
    assert not any(online.traces.full_data)
    # Same seed, same chain: the full-data draws agree; the others are minibatch losses.
    assert every3.traces.loss[0][3] != online.traces.loss[0][3]
    assert every3.traces.loss[0][1] == online.traces.loss[0][1]


def test_rmsprop_preconditioner_sees_the_loss_gradient_only() -> None:
    config = SGLDConfig(step_size=0.01, gamma=5.0, precondition="rmsprop", rmsprop_eps=0.5)
    w, w_star, noise = np.array([1.0, -2.0]), np.zeros(2), np.array([0.3, 0.1])
    # No loss gradient: V stays 0 although the localisation pulls hard, so G = 1 / eps.
    new_w, v = sgld_update(w, np.zeros(2), np.zeros(2), noise, w_star, 100.0, config)
    assert v.tolist() == [0.0, 0.0]
    g = 1 / 0.5
    assert new_w == pytest.approx(w - 0.005 * g * 5.0 * w + np.sqrt(0.01 * g) * noise)
    # A loss gradient enters V (and, scaled by nβ, the drift).
    grad = np.array([2.0, 0.0])
    new_w, v = sgld_update(w, np.zeros(2), grad, 0 * noise, w_star, 100.0, config)
    assert v == pytest.approx([0.04, 0.0])
    g = 1 / (np.sqrt(v) + 0.5)
    assert new_w == pytest.approx(w - 0.005 * g * (100.0 * grad + 5.0 * w))


def test_rmsprop_sgld_samples_close_to_the_posterior() -> None:
    # pSGLD without its correction term is biased a little: a few percent here.
    target = TargetConfig(
        model=QuadraticModel(eigenvalues=(1.0, 4.0), l0=0.0), data=DataConfig(n=500)
    )
    sampler = {
        "kind": "sgld",
        "precondition": "rmsprop",
        "rmsprop_eps": 1.0,
        "rmsprop_alpha": 0.999,
        "step_size": 2e-4,
        "chains": 8,
        "draws": 10000,
        "burn_in": 1000,
        "gamma": 10.0,
    }
    result = estimate_llc(target, sampler)
    exact = quadratic_llc((1.0, 4.0), result.nbeta, result.gamma)
    assert result.llc == pytest.approx(exact, rel=0.12), result.summary()


# --- determinism ------------------------------------------------------------------------


def test_same_seeds_give_identical_results(mlp_result: LLCResult) -> None:
    again = estimate_llc(_mlp(), SGLD)
    assert again.target_id == mlp_result.target_id
    assert again.l0 == mlp_result.l0
    assert again.traces.loss == mlp_result.traces.loss
    other = estimate_llc(_mlp(), {**SGLD, "seed": 1})
    assert other.l0 == mlp_result.l0
    assert other.traces.loss != mlp_result.traces.loss


def test_target_seed_changes_w_star() -> None:
    a, b = build_target(_mlp(seed=0)), build_target(_mlp(seed=1))
    assert a.target_id != b.target_id
    assert not np.allclose(a.params[0]["w"], b.params[0]["w"])
    assert np.array_equal(a.x, b.x)  # the data depend on data.seed only


# --- divergent chains --------------------------------------------------------------------


def test_estimator_names_and_leaves_out_bad_chains() -> None:
    losses = np.full((4, 5), 1.1)
    losses[1, 3] = np.nan
    losses[2, 4] = 50.0  # nβ (L - L0) = 490 at a full-data draw
    summary = summarize_chains(
        losses, np.ones(5, bool), np.full(4, 1.1), l0=1.0, nbeta=10.0, escape=100.0
    )
    assert summary.problems == {
        1: "diverged: loss NaN at draw 3",
        2: "escaped: nβ(L_n - L0) = 490 > 100 at draw 4",
    }
    assert summary.mean == pytest.approx(1.0)  # chains 0 and 3 only
    assert summary.sd == pytest.approx(0.0, abs=1e-9)


def test_escape_is_judged_on_full_data_draws_and_the_last_state() -> None:
    losses = np.full((2, 3), 1.1)
    losses[:, 1] = 50.0  # a minibatch loss: noisy, not evidence of escape
    finals = np.array([1.1, 80.0])
    summary = summarize_chains(
        losses, np.array([True, False, True]), finals, l0=1.0, nbeta=10.0, escape=100.0
    )
    assert list(summary.problems) == [1]
    assert "at its last state" in summary.problems[1]


def test_divergent_sampler_run_is_reported_by_chain() -> None:
    result = estimate_llc(_mlp(), {**SGLD, "step_size": 10.0, "draws": 20})
    assert len(result.diagnostics.divergent_chains) == 3
    assert result.diagnostics.divergent_chains[0].startswith("chain 0: ")
    assert all(c.divergent and c.problem for c in result.chains)
    assert math.isnan(result.llc)
