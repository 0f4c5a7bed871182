"""``sweepflow`` jobs on a real SLURM cluster through the shipped profiles (no mocks).

The run-job flow runs in this process against the session's Prefect API; its tasks run
in Dask workers that dask-jobqueue submits as SLURM jobs (``scripts/slurm-up``: one node,
two cores, two fake GPUs). Every trial appends what SLURM gave it to ``probe.log``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.timeout(300),
    pytest.mark.usefixtures("slurm_cluster", "prefect_api"),
]

PROBE = """\
import json, os, sys, time
from pathlib import Path

params = dict(item.split("=", 1) for item in sys.argv[1:])
log = Path(__file__).parent / "probe.log"
record = {"i": params["i"], "job": os.environ.get("SLURM_JOB_ID"),
          "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": time.time()}
with log.open("a") as f:
    f.write(json.dumps({**record, "event": "start"}) + "\\n")
time.sleep(float(params.get("sleep", 2)))
with log.open("a") as f:
    f.write(json.dumps({**record, "event": "end", "end": time.time()}) + "\\n")
"""

JOBS = """\
jobs:
  cpu:
    run: python probe.py
    sets:
      - all: i=1:4
  gpu:
    run: python probe.py
    resources: {gpu: 1}
    sets:
      - all: i=1:4
  long:
    run: python probe.py
    add: sleep=8
    sets:
      - all: i=1:2
"""

# One-core, 1 GiB worker jobs on the loopback interface (the test node is 127.0.0.1).
SMALL = ["cores=1", "memory=1GiB", "walltime=00:10:00", "interface=lo"]


@pytest.fixture
def job_file(project: Path) -> Path:
    (project / "probe.py").write_text(PROBE)
    path = project / "sweepflow.yaml"
    path.write_text(JOBS)
    return path


def probes(project: Path, event: str = "end") -> list[dict[str, Any]]:
    log = project / "probe.log"
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in rows if r["event"] == event]


def run(job: str, job_file: Path, profile: str, sets: list[str]) -> dict[str, Any]:
    from flows.run_job import run_job

    return run_job(job, job_file=str(job_file), profile=profile, profile_set=sets)


def trial_runs(summary: dict[str, Any]) -> list[Any]:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=summary["tracking_uri"])
    experiment = client.get_experiment_by_name(summary["experiment"])
    return client.search_runs([experiment.experiment_id], "tags.`sweepflow.role` = 'trial'")


def test_trials_run_inside_slurm_jobs_and_a_rerun_is_cached(job_file: Path) -> None:
    # Two worker jobs from the start: adapt alone may judge 2-second tasks one job's work.
    two_jobs = [*SMALL, "adapt.minimum=2", "adapt.maximum=2"]
    summary = run("cpu", job_file, "slurm-cpu", two_jobs)

    assert summary["counts"]["done"] == 4
    ended = probes(job_file.parent)
    assert sorted(r["i"] for r in ended) == ["1", "2", "3", "4"]
    jobs = {r["job"] for r in ended}
    assert None not in jobs and len(jobs) >= 2, jobs  # trials ran in several SLURM jobs
    tags = {r.data.tags.get("sweepflow.slurm_job_id") for r in trial_runs(summary)}
    assert tags == jobs  # recorded in MLflow as well

    again = run("cpu", job_file, "slurm-cpu", two_jobs)
    assert again["counts"]["cached"] == 4 and len(probes(job_file.parent)) == 4


def test_gpu_trials_get_a_gpu_each_and_at_most_two_run_at_once(job_file: Path) -> None:
    sets = [*SMALL, "gpus=1", "adapt.maximum=4", "worker_env.JAX_PLATFORMS=cpu"]
    summary = run("gpu", job_file, "slurm-gpu", sets)

    assert summary["counts"]["done"] == 4
    ended = probes(job_file.parent)
    assert all(r["cuda"] in ("0", "1") for r in ended), ended
    spans = [(r["start"], r["end"]) for r in ended]
    overlap = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert overlap <= 2, spans  # two fake GPUs: never three GPU trials at once
    assert {r.data.tags.get("sweepflow.cuda_visible_devices") for r in trial_runs(summary)} <= {
        "0",
        "1",
    }


def test_a_cancelled_worker_job_is_replaced_and_every_trial_finishes_once(
    job_file: Path,
) -> None:
    project = job_file.parent
    result: dict[str, Any] = {}

    def sweep() -> None:
        try:
            result["summary"] = run("long", job_file, "slurm-cpu", [*SMALL, "adapt.maximum=1"])
        except BaseException as exc:  # reported by the assertions below
            result["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    deadline = time.monotonic() + 120
    while not probes(project, "start"):
        assert time.monotonic() < deadline and thread.is_alive(), result
        time.sleep(0.2)
    victim = probes(project, "start")[0]
    subprocess.run(["scancel", victim["job"]], check=True)
    thread.join(timeout=240)

    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["counts"]["done"] == 2
    ended = probes(project)
    assert sorted(r["i"] for r in ended) == ["1", "2"]  # each trial finished once
    retried = [r for r in probes(project, "start") if r["i"] == victim["i"]]
    assert len(retried) == 2 and retried[1]["job"] != victim["job"]  # on a new worker job
    runs = trial_runs(summary)
    assert sorted(r.data.params["i"] for r in runs) == ["1", "2"]
    assert {r.info.status for r in runs} == {"FINISHED"}
