"""The LLC workflow's worker steps, run through ``run_step`` with a real store.

``build_llc_target`` writes an ``llc-target`` folder; ``sample_llc_target`` loads it
(no training) and writes raw traces (``llc-run``). The estimate summarised on the driver
from those traces is the one ``sample_llc`` gives for the same seed; a worker process
imports neither ArviZ nor matplotlib; JAX's compilation cache is written and reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from pydantic import BaseModel

from sweepflow.store import Catalog
from sweepflow.workflow.artifact import Artifact
from sweepflow.workflow.executor import base_provenance
from sweepflow.workflow.run import StepFailed, StepOutcome, run_step, store_root
from sweepflow.workflow.steps import Step
from sweepflow.workloads.llc import LLCError, TargetConfig, build_target, sample_llc
from sweepflow.workloads.llc.estimation import summarize_sample
from sweepflow.workloads.llc.steps import (
    CACHE_ENV,
    CODE_VERSION,
    RawRun,
    SampleConfig,
    _write_npz,
    build_llc_target,
    load_run,
    load_target,
    sample_llc_target,
)

QUADRATIC: dict[str, Any] = {
    "model": {"kind": "quadratic", "eigenvalues": [0.1, 1.0, 10.0], "l0": 0.0, "rotate": False},
    "data": {"n": 1000},
}
F32 = TargetConfig.model_validate(QUADRATIC)
F64 = TargetConfig.model_validate({**QUADRATIC, "precision": "float64"})
SGLD = {"kind": "sgld", "step_size": 1e-3, "chains": 2, "draws": 200, "burn_in": 50, "gamma": 1.0}
HMC = {"kind": "hmc", "chains": 2, "draws": 100, "burn_in": 50, "integration_steps": 4}


class Store:
    """A state folder with its store: runs steps as the workflow runner does."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.catalog = Catalog(store_root(state))
        self.provenance = base_provenance(state, None, None)

    def run(
        self, step: Step, cfg: BaseModel, inputs: dict[str, Artifact] | None = None
    ) -> tuple[StepOutcome, Artifact]:
        outcome, outputs = run_step(
            step,
            cfg,
            inputs or {},
            project=self.state,
            catalog=self.catalog,
            provenance=self.provenance,
        )
        (output,) = outputs.values()
        return outcome, output


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    made = Store(tmp_path_factory.mktemp("llc-steps"))
    yield made
    made.catalog.close()


@pytest.fixture(scope="module")
def targets(store: Store) -> dict[str, Artifact]:
    return {name: store.run(build_llc_target, cfg)[1] for name, cfg in (("f32", F32), ("f64", F64))}


# --- llc-target ------------------------------------------------------------------------


def test_target_payload_holds_config_and_arrays_but_no_timings(
    targets: dict[str, Artifact],
) -> None:
    target = targets["f32"]
    assert target.type == "llc-target"
    assert sorted(p.name for p in target.path.iterdir()) == ["arrays.npz", "target.json"]
    info = json.loads((target.path / "target.json").read_text())
    built = build_target(F32)
    assert info["target_id"] == F32.target_id == built.target_id
    assert (info["n"], info["num_params"], info["precision"]) == (1000, 3, "float32")
    assert info["l0"] == built.l0
    assert info["code_version"] == CODE_VERSION
    assert set(info["versions"]) >= {"jax", "jaxlib", "numpy"}
    text = json.dumps(info)
    assert "seconds" not in text and "host" not in text
    # wall times are kept outside the hashed payload, in the artifact's metadata
    assert target.meta["metrics"]["build_seconds"] >= 0
    assert target.meta["target_id"] == F32.target_id


@pytest.mark.parametrize("name", ["f32", "f64"])
def test_load_target_gives_back_the_built_target_without_training(
    targets: dict[str, Artifact], name: str
) -> None:
    cfg = {"f32": F32, "f64": F64}[name]
    loaded = load_target(targets[name].path)
    with jax.enable_x64(cfg.x64):
        built = build_target(cfg)
    assert (loaded.config, loaded.target_id, loaded.x64, loaded.l0) == (
        built.config,
        built.target_id,
        built.x64,
        built.l0,
    )
    assert loaded.n == built.n and loaded.num_params == built.num_params
    for got, want in [
        (loaded.params["w"], built.params["w"]),
        (loaded.constants["hessian"], built.constants["hessian"]),
        (loaded.constants["center"], built.constants["center"]),
        (loaded.x, built.x),
        (loaded.y, built.y),
    ]:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_a_target_rebuilt_is_a_cache_hit_and_rebuilt_elsewhere_has_the_same_digest(
    store: Store, targets: dict[str, Artifact], tmp_path: Path
) -> None:
    outcome, again = store.run(build_llc_target, F32)
    assert outcome.status == "hit" and again.digest == targets["f32"].digest
    other = Store(tmp_path / "other")
    try:
        outcome, elsewhere = other.run(build_llc_target, F32)
    finally:
        other.catalog.close()
    assert outcome.status == "ran"
    assert elsewhere.digest == targets["f32"].digest


def test_npz_files_are_byte_stable_and_numpy_reads_them(tmp_path: Path) -> None:
    arrays = {"b": np.arange(3.0), "a": np.zeros((2, 0), np.float32)}
    _write_npz(tmp_path / "one.npz", arrays)
    time.sleep(2.1)  # zip times have a 2 s resolution: a member dated now would differ
    _write_npz(tmp_path / "two.npz", arrays)
    assert (tmp_path / "one.npz").read_bytes() == (tmp_path / "two.npz").read_bytes()
    with np.load(tmp_path / "one.npz") as data:
        assert sorted(data.files) == ["a", "b"]
        np.testing.assert_array_equal(data["b"], arrays["b"])
        assert data["a"].dtype == np.float32 and data["a"].shape == (2, 0)


def test_load_target_refuses_a_folder_that_is_not_a_target(tmp_path: Path) -> None:
    with pytest.raises(LLCError, match=r"target\.json: not an llc-target payload") as info:
        load_target(tmp_path)
    assert "\n" not in str(info.value)


# --- llc-run ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target_name", "sampler"), [("f32", SGLD), ("f64", HMC)], ids=["sgld", "hmc"]
)
def test_the_run_holds_raw_traces_whose_estimate_is_sample_llcs(
    store: Store, targets: dict[str, Artifact], target_name: str, sampler: dict[str, Any]
) -> None:
    target = targets[target_name]
    cfg = SampleConfig.model_validate({"sampler": sampler})
    outcome, run_artifact = store.run(sample_llc_target, cfg, {"target": target})
    assert outcome.status == "ran" and run_artifact.type == "llc-run"
    assert outcome.inputs == {"target": target.digest}  # lineage: the run's target
    assert sorted(p.name for p in run_artifact.path.iterdir()) == ["run.json", "traces.npz"]
    stored = json.loads((run_artifact.path / "run.json").read_text())
    assert "seconds" not in json.dumps(stored) and "llc" not in stored
    assert "ess" not in stored and "rhat" not in stored
    assert run_artifact.meta["metrics"]["sampling_seconds"] > 0

    run = load_run(run_artifact.path, run_artifact.meta)
    assert isinstance(run, RawRun)
    assert run.sampling_seconds == run_artifact.meta["sampling_seconds"]
    chains, draws = sampler["chains"], sampler["draws"]
    assert np.shape(run.loss) == np.shape(run.running_llc) == (chains, draws)
    assert len(run.grad_evals) == chains and all(g > 0 for g in run.grad_evals)
    assert (run.acceptance is not None) == (sampler["kind"] == "hmc")
    assert "step_size" in run.tuning
    assert run.nbeta == pytest.approx(1000 / np.log(1000))
    assert (run.target_id, run.x64, run.l0) == (target.meta["target_id"], run.target.x64, 0.0)

    cfg_target = run.target
    with jax.enable_x64(cfg_target.x64):
        direct = sample_llc(build_target(cfg_target), sampler)
    summary = summarize_sample(
        run.to_sample(),
        target=run.target,
        target_id=run.target_id,
        n=run.n,
        num_params=run.num_params,
        l0=run.l0,
        x64=run.x64,
    )
    assert run.loss == direct.traces.loss  # the same draws, bit for bit
    # numpy sums a transposed array in another order: equal to the last bits only
    assert summary.llc == pytest.approx(direct.llc, rel=1e-12)
    assert summary.llc_per_chain == pytest.approx(direct.llc_per_chain, rel=1e-12)
    assert summary.llc_sd == pytest.approx(direct.llc_sd, rel=1e-9)
    assert summary.diagnostics.ess == pytest.approx(direct.diagnostics.ess, rel=1e-9)
    np.testing.assert_allclose(run.running_llc, direct.traces.running_llc, rtol=1e-12)
    np.testing.assert_allclose(summary.traces.running_llc, run.running_llc, rtol=1e-12)
    assert 0.5 < direct.llc < 2.5  # d/2 = 1.5 for a regular quadratic

    again, same = store.run(sample_llc_target, cfg, {"target": target})
    assert again.status == "hit" and same.digest == run_artifact.digest


def test_hmc_on_a_float32_target_fails_with_the_precision_error_on_one_line(
    store: Store, targets: dict[str, Artifact]
) -> None:
    cfg = SampleConfig.model_validate({"sampler": HMC})
    with pytest.raises(StepFailed) as info:
        store.run(sample_llc_target, cfg, {"target": targets["f32"]})
    message = str(info.value)
    assert "\n" not in message
    assert "sampler hmc runs in float64 only" in message
    assert "set precision: float64 in the target file" in message
    assert isinstance(info.value.__cause__, LLCError)


# --- worker processes ------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from sweepflow.store import Catalog
    from sweepflow.workflow.executor import base_provenance
    from sweepflow.workflow.run import run_step, store_root
    from sweepflow.workloads.llc import TargetConfig
    from sweepflow.workloads.llc.steps import SampleConfig, build_llc_target, sample_llc_target

    state = Path(sys.argv[1])
    provenance = base_provenance(state, None, None)
    with Catalog(store_root(state)) as catalog:
        def run(step, cfg, inputs):
            outcome, outputs = run_step(
                step, cfg, inputs, project=state, catalog=catalog, provenance=provenance
            )
            (output,) = outputs.values()
            return output

        target = run(build_llc_target, TargetConfig.model_validate(json.loads(sys.argv[2])), {})
        cfg = SampleConfig.model_validate({"sampler": json.loads(sys.argv[3])})
        result = run(sample_llc_target, cfg, {"target": target})
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("arviz", "matplotlib"))
    print(json.dumps({
        "target": target.digest,
        "run": result.digest,
        "compile_seconds": result.meta["compile_seconds"],
        "heavy": heavy,
    }))
    """
)


def _worker(state: Path, cache: Path) -> dict[str, Any]:
    import os

    env = {**os.environ, CACHE_ENV: str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(state), json.dumps(QUADRATIC), json.dumps(SGLD)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_worker_processes_stay_thin_share_digests_and_reuse_compiled_programs(
    store: Store, targets: dict[str, Artifact], tmp_path: Path
) -> None:
    cache = tmp_path / "jax-cache"
    first = _worker(tmp_path / "one", cache)
    assert first["heavy"] == []  # no ArviZ, no matplotlib on a worker
    assert first["target"] == targets["f32"].digest  # same bytes in another process
    written = sorted(p for p in cache.rglob("*") if p.is_file())
    assert written, f"nothing written to the compilation cache {cache}"

    second = _worker(tmp_path / "two", cache)
    assert (second["target"], second["run"]) == (first["target"], first["run"])
    # every program came from the cache: no new entry, and less time spent compiling
    assert sorted(p for p in cache.rglob("*") if p.is_file()) == written
    assert second["compile_seconds"] < first["compile_seconds"], (first, second)
