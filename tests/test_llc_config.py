"""LLC workload: configs, target ids, YAML errors and known values; no sampling here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sweepflow.errors import SweepflowError
from sweepflow.workloads.llc import (
    DataConfig,
    LLCError,
    MLPModel,
    SGLDConfig,
    TargetConfig,
    load_sampler_config,
    load_target_config,
    normal_crossing_finite_llc,
    normal_crossing_llc,
    quadratic_llc,
    reduced_rank_llc,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "llc"

# The digest of TargetConfig(model=MLPModel(widths=(8,)), data=DataConfig(n=100)). If a
# change to the target schema moves it on purpose, every stored target id changes with
# it: update this value and say so in the change.
GOLDEN_ID = "26a67cf9e3b1ac911c11007befb40a57c3319cbc07e7c664841f8a897771eb7f"


def _target(**changes: object) -> TargetConfig:
    return TargetConfig(model=MLPModel(widths=(8,)), data=DataConfig(n=100), **changes)


def test_target_id_is_the_digest_of_the_resolved_config() -> None:
    assert _target().target_id == GOLDEN_ID


def test_target_id_ignores_key_order_and_explicit_defaults(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(
        "precision: float32\nseed: 0\n"
        "data: {seed: 0, noise: 0.1, n: 100, input_dim: 1}\n"
        "model: {output_dim: 1, widths: [8], kind: mlp, bias: true, activation: relu}\n",
        encoding="utf-8",
    )
    assert load_target_config(path).target_id == GOLDEN_ID


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": 1},
        {"precision": "float64"},
        {"data": DataConfig(n=101)},
        {"data": DataConfig(n=100, seed=1)},
        {"data": DataConfig(n=100, noise=0.2)},
        {"model": MLPModel(widths=(8,), activation="tanh")},
        {"training": {"steps": 999}},
    ],
    ids=["seed", "precision", "n", "data-seed", "noise", "activation", "training"],
)
def test_target_id_changes_with_every_part(changes: dict) -> None:
    base = _target().model_dump()
    base.update({k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in changes.items()})
    assert TargetConfig.model_validate(base).target_id != GOLDEN_ID


def test_target_id_is_the_same_in_a_fresh_interpreter(tmp_path: Path) -> None:
    code = (
        "from sweepflow.workloads.llc import TargetConfig, MLPModel, DataConfig;"
        "print(TargetConfig(model=MLPModel(widths=(8,)), data=DataConfig(n=100)).target_id)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _target().target_id


def test_configs_are_frozen() -> None:
    config = SGLDConfig()
    with pytest.raises(ValueError):
        config.step_size = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", ["sgld", "hmc", "nuts", "mclmc"])
def test_shipped_examples_load(name: str) -> None:
    assert load_sampler_config(EXAMPLES / f"{name}.yaml").kind == name
    assert load_target_config(EXAMPLES / "target.yaml").precision == "float64"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: sgld\nchains: 2\nstep_sise: 0.1\n", "Unknown key 'step_sise' in the sampler at"),
        ("kind: sgld\nstep_size: -1\n", "Invalid value for step_size in the sampler at"),
        ("kind: sgdl\n", "expected one of sgld, hmc, nuts, mclmc, got 'sgdl'"),
        ("chains: 2\n", "Missing key 'kind' in the sampler"),
        ("- kind: sgld\n", "must be a mapping"),
        ("kind: sgld\nchains: [1\n", "YAML syntax error"),
    ],
    ids=["unknown-key", "bad-value", "bad-kind", "no-kind", "not-mapping", "yaml-syntax"],
)
def test_bad_sampler_files_fail_on_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "sampler.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LLCError) as caught:
        load_sampler_config(path)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message
    assert isinstance(caught.value, SweepflowError) and isinstance(caught.value, ValueError)


def test_errors_name_the_line_and_suggest_the_key(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(
        "model:\n  kind: mlp\n  widths: [8]\ndata:\n  n: 100\n  nosie: 0.1\n", encoding="utf-8"
    )
    with pytest.raises(LLCError) as caught:
        load_target_config(path)
    message = str(caught.value)
    assert "Unknown key 'nosie' in data" in message
    assert "target.yaml:6" in message
    assert "did you mean 'noise'?" in message


def test_missing_file_is_an_llc_error(tmp_path: Path) -> None:
    with pytest.raises(LLCError, match="cannot read sampler file"):
        load_sampler_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("powers", "expected"),
    [([1], 0.5), ([2], 0.25), ([1, 2], 0.25), ([3], 1 / 6), ([2, 2], 0.25)],
)
def test_normal_crossing_values(powers: list[int], expected: float) -> None:
    assert normal_crossing_llc(powers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mhn", "expected"),
    [((5, 3, 5), 6.5), ((10, 2, 10), 9.5), ((1, 1, 1), 0.5), ((2, 5, 3), 3.0)],
    ids=["5-3-5", "10-2-10", "1-1-1", "wide-hidden"],
)
def test_reduced_rank_values(mhn: tuple[int, int, int], expected: float) -> None:
    assert reduced_rank_llc(*mhn) == pytest.approx(expected)


def test_quadratic_value_tends_to_half_the_dimension() -> None:
    assert quadratic_llc([1.0] * 6, nbeta=1e9, gamma=1.0) == pytest.approx(3.0)
    assert quadratic_llc([1.0], nbeta=1.0, gamma=1.0) == pytest.approx(0.25)


# --- the exact finite-n value of the normal-crossing toys -------------------------------


def _quadrature(power: int, nbeta: float, gamma: float, curvature: float, slope: float) -> float:
    """``nβ E[L - L0]`` for one parameter at ``w* = 0``, by a trapezoidal sum over ``w``."""
    w = np.linspace(-12.0, 12.0, 480_001) / math.sqrt(gamma)
    u = w**power
    loss = 0.5 * curvature * u**2 - slope * u
    weight = np.exp(-nbeta * (loss - loss.min()) - 0.5 * gamma * w**2)
    return nbeta * float((weight * loss).sum() / weight.sum())


@pytest.mark.parametrize(
    ("power", "nbeta", "gamma", "curvature", "slope"),
    [
        pytest.param(2, 144.76, 1.0, 1.0, 0.0, id="k2"),
        pytest.param(2, 144.76, 1.0, 0.9963, 0.003, id="k2-data"),
        pytest.param(3, 1085.7, 4.0, 1.02, -0.002, id="k3-data"),
        pytest.param(4, 50.0, 0.5, 1.0, 0.01, id="k4"),
    ],
)
def test_finite_toy_value_matches_quadrature(
    power: int, nbeta: float, gamma: float, curvature: float, slope: float
) -> None:
    exact = normal_crossing_finite_llc([power], nbeta, gamma, curvature=curvature, slope=slope)
    assert exact == pytest.approx(_quadrature(power, nbeta, gamma, curvature, slope), rel=1e-6)


def test_finite_toy_value_of_one_linear_parameter_is_gaussian() -> None:
    nbeta, gamma, a, b, c = 144.76, 1.0, 0.9963, 0.003, 0.002
    # From N(mean, 1/precision): nβ (E[½ a w² - b w] - (½ a c² - b c)).
    precision = nbeta * a + gamma
    mean = (nbeta * b + gamma * c) / precision
    expected = nbeta * (0.5 * a * (mean**2 + 1 / precision) - b * mean - 0.5 * a * c**2 + b * c)
    got = normal_crossing_finite_llc([1], nbeta, gamma, curvature=a, slope=b, center=c)
    assert got == pytest.approx(expected, rel=1e-12)


def test_finite_toy_value_tends_to_the_learning_coefficient() -> None:
    # (Not [2, 3]: its next pole, 1/4, leaves a correction of order (nβ)^(-1/12).)
    for powers in ([1], [2], [3], [1, 2]):
        value = normal_crossing_finite_llc(powers, nbeta=1e12, gamma=1.0)
        assert value == pytest.approx(normal_crossing_llc(powers), rel=0.01), powers


@pytest.mark.parametrize("n", [1000, 10000])
def test_repeated_powers_sit_far_below_the_limit_at_feasible_n(n: int) -> None:
    # Multiplicity 3: the finite-n value is 40-50 % below 1/2 at these n, which is why
    # the toy tests compare with normal_crossing_finite_llc, not normal_crossing_llc.
    value = normal_crossing_finite_llc([1, 1, 1], nbeta=n / math.log(n), gamma=1.0)
    assert 0.2 < value < 0.65 * normal_crossing_llc([1, 1, 1])


@pytest.mark.parametrize(
    ("powers", "changes", "match"),
    [
        ([0], {}, "powers must be positive integers"),
        ([1], {"gamma": 0.0}, "gamma must be positive"),
        ([1], {"nbeta": -1.0}, "nbeta must be positive"),
        ([2], {"center": 0.1}, r"center \(w\*\) must be 0 for powers \[2\]"),
    ],
    ids=["power-0", "gamma-0", "nbeta-negative", "center-off-origin"],
)
def test_finite_toy_value_rejects_bad_input(powers: list[int], changes: dict, match: str) -> None:
    arguments = {"nbeta": 100.0, "gamma": 1.0, **changes}
    with pytest.raises(ValueError, match=match):
        normal_crossing_finite_llc(powers, **arguments)


_LIGHT_PROBE = r"""
import json, sys
from sweepflow.workloads.llc import load_sampler_config, load_target_config
from sweepflow.workloads.llc.cli import llc_app
load_target_config(sys.argv[1]); load_sampler_config(sys.argv[2])
print(json.dumps(sorted({m.partition(".")[0] for m in sys.modules})))
"""


def test_configs_and_cli_load_without_jax(tmp_path: Path) -> None:
    # `sweepflow` imports the llc command at start-up: it must stay cheap.
    result = subprocess.run(
        [sys.executable, "-c", _LIGHT_PROBE, EXAMPLES / "target.yaml", EXAMPLES / "nuts.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    heavy = {"jax", "optax", "blackjax", "arviz", "matplotlib", "numpy"} & loaded
    assert not heavy, f"loading LLC configs imported {sorted(heavy)}"
