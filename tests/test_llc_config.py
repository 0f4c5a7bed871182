"""LLC workload: configs, target ids, YAML errors and known values; no sampling here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
