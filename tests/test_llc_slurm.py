"""An LLC matrix as a job on a real SLURM cluster with a GPU each (no mocks).

``sweepflow run m`` runs a 1 x 2 matrix (one quadratic target, two samplers) through the
shipped ``slurm-gpu`` profile: its steps run on Dask workers that dask-jobqueue submits as
SLURM jobs holding one fake GPU each (``scripts/slurm-up``), the sample steps asking for
``resources: {gpu: 1}``. Where each step ran is kept in its ``llc-run`` object's
provenance and on each pair's MLflow run (the ``sweepflow.slurm_job_id``,
``sweepflow.node`` and ``sweepflow.cuda_visible_devices`` tags other trials get).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.timeout(420),
    pytest.mark.usefixtures("slurm_cluster", "prefect_api"),
]

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENTS = """\
experiment: placed
targets:
  - {model: {kind: quadratic, eigenvalues: [0.1, 1.0, 10.0], l0: 0.0, rotate: false},
     data: {n: 1000}, precision: float64}
samplers:
  - {kind: sgld, chains: 2, draws: 200, burn_in: 50, step_size: 1.0e-4}
  - {kind: hmc, chains: 2, draws: 100, burn_in: 50}
"""

JOBS = """\
jobs:
  m:
    llc: experiments.yaml
    profile: slurm-gpu
    resources: {gpu: 1}
"""

# The shipped GPU profile sized for the two-core test node: one-core worker jobs, one
# fake GPU each, on loopback; JAX on the CPU (the GPUs are device nodes nothing opens).
SMALL_GPU = [
    "cores=1",
    "memory=2GiB",
    "walltime=00:10:00",
    "interface=lo",
    "gpus=1",
    "adapt.maximum=2",
    "worker_env.JAX_PLATFORMS=cpu",
]


def child_env() -> dict[str, str]:
    """This environment (PREFECT_API_URL points at the session's API) for a child."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pair_runs(project: Path) -> list[Any]:
    """The MLflow runs of the matrix's pairs (any experiment of the project's store)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{(project / '.sweepflow' / 'mlflow.db').resolve().as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, "tags.`sweepflow.llc.run` LIKE 'llc-run:%'")


def run_meta(project: Path, run_id: str) -> dict[str, Any]:
    """The ``meta.json`` of an ``llc-run`` object named by its short id."""
    short = run_id.split(":", 1)[1]
    found = list((project / ".sweepflow" / "store").rglob(f"{short}*/meta.json"))
    assert len(found) == 1, (run_id, found)
    meta: dict[str, Any] = json.loads(found[0].read_text())
    return meta


def test_pairs_sample_in_gpu_slurm_jobs_and_record_where(project: Path) -> None:
    (project / "experiments.yaml").write_text(EXPERIMENTS)
    (project / "sweepflow.yaml").write_text(JOBS)
    sets = [arg for item in SMALL_GPU for arg in ("--set", item)]

    done = subprocess.run(
        [sys.executable, "-m", "sweepflow", "run", "m", *sets],
        cwd=project,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 done" in done.stdout + done.stderr, done.stdout + done.stderr
    runs = pair_runs(project)
    assert sorted(r.data.params["sampler"] for r in runs) == ["hmc", "sgld"], runs
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags.get("sweepflow.slurm_job_id", "").isdigit(), tags
        assert tags.get("sweepflow.cuda_visible_devices") in ("0", "1"), tags
        assert tags.get("sweepflow.node"), tags
        provenance = run_meta(project, tags["sweepflow.llc.run"])["provenance"]
        assert provenance["step"] == "sample_llc_target"
        placement = provenance["placement"]
        assert placement["SLURM_JOB_ID"] == tags["sweepflow.slurm_job_id"], placement
        assert placement["CUDA_VISIBLE_DEVICES"] == tags["sweepflow.cuda_visible_devices"]
        assert placement["SLURMD_NODENAME"] == tags["sweepflow.node"], placement
