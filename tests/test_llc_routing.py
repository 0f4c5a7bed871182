"""Where an LLC pair's sampling asks to run: GPUs for the pairs, none for target builds,
and float64 pairs kept off the GPUs when the profile says ``float64: cpu``."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows._llc import llc_options
from sweepflow.services.cluster import worker_environment
from sweepflow.spec.profiles import load_profile
from sweepflow.workloads.llc.experiment import load_experiment
from sweepflow.workloads.llc.pairs import pair_specs
from sweepflow.workloads.llc.steps import build_llc_target, sample_llc_target

EXPERIMENTS = """\
experiment: routing
targets:
  - model: {kind: quadratic, eigenvalues: [1.0, 2.0], l0: 0.0, rotate: false}
    data: {n: 100}
    precision: float64
  - model: {kind: quadratic, eigenvalues: [1.0, 3.0], l0: 0.0, rotate: false}
    data: {n: 100}
    precision: float32
samplers:
  - {kind: sgld, chains: 2, draws: 10}
"""


class _Job:
    key = "routing"
    timeout = None


@pytest.fixture
def matrix(tmp_path: Path):
    (tmp_path / "experiments.yaml").write_text(EXPERIMENTS)
    return load_experiment(tmp_path / "experiments.yaml")


def _resources(matrix, tmp_path: Path, sets: list[str]) -> list[dict[str, dict[str, float]]]:
    profile = load_profile("slurm-gpu", sets, tmp_path)
    options = llc_options(matrix, None, {}, profile)
    specs = pair_specs(matrix, _Job(), tmp_path)
    return [
        {s.name: options["step_resources"](s, spec) for s in (build_llc_target, sample_llc_target)}
        for spec in specs
    ]


def test_a_gpu_profile_gives_each_sampling_one_gpu(matrix, tmp_path: Path) -> None:
    float64, float32 = _resources(matrix, tmp_path, [])
    assert float64 == {"build_llc_target": {}, "sample_llc_target": {"gpu": 1}}
    assert float32 == {"build_llc_target": {}, "sample_llc_target": {"gpu": 1}}


def test_float64_cpu_keeps_float64_pairs_off_the_gpus(matrix, tmp_path: Path) -> None:
    float64, float32 = _resources(matrix, tmp_path, ["float64=cpu"])
    assert float64["sample_llc_target"] == {}
    assert float32["sample_llc_target"] == {"gpu": 1}
    profile = load_profile("slurm-gpu", ["float64=cpu"], tmp_path)
    assert (
        worker_environment(profile, "http://x/api", "sqlite:///m.db")["SWEEPFLOW_FLOAT64"] == "cpu"
    )
    plain = load_profile("slurm-gpu", [], tmp_path)
    assert "SWEEPFLOW_FLOAT64" not in worker_environment(plain, "http://x/api", "sqlite:///m.db")


def test_a_bad_float64_value_is_one_line(tmp_path: Path) -> None:
    from sweepflow.errors import ProfileError

    with pytest.raises(ProfileError) as caught:
        load_profile("slurm-gpu", ["float64=gpu"], tmp_path)
    assert "float64" in str(caught.value) and "\n" not in str(caught.value)
