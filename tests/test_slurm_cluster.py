"""Dask workers as jobs of a real SLURM cluster (``scripts/slurm-up``), no mocks.

Each test starts a ``dask_jobqueue.SLURMCluster`` whose workers are ``sbatch`` jobs on the
cluster of the ``slurm_cluster`` fixture, and its tasks report what SLURM gave their job
(``SLURM_JOB_ID``, ``CUDA_VISIBLE_DEVICES`` from the fake GPUs). On two cores a worker job
connects 3-5 s after ``scale``, so the module takes well under a minute.

The scheduler and the workers listen on ``lo``: the test cluster is one node on
127.0.0.1, and loopback works in containers with no routable interface.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dask
import pytest
from dask_jobqueue import SLURMCluster
from distributed import Client

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(150)]

WORKER_TIMEOUT_S = 60  # a worker job connects in 3-5 s on an idle two-core node

# The workers unpickle this module's task functions by reference, so they import it.
_IMPORT_TESTS = (
    f"export PYTHONPATH={shlex.quote(str(Path(__file__).parent))}${{PYTHONPATH:+:$PYTHONPATH}}"
)


@contextmanager
def dask_on_slurm(
    log_directory: Path, *, gpu: bool = False
) -> Iterator[tuple[SLURMCluster, Client]]:
    """A Dask cluster whose workers are one-core SLURM jobs (one fake GPU each with
    ``gpu``, advertised as the Dask resource ``gpu=1``), and a client of it."""
    gpu_options = (
        {"job_extra_directives": ["--gres=gpu:1"], "worker_extra_args": ["--resources", "gpu=1"]}
        if gpu
        else {}
    )
    with (
        SLURMCluster(
            cores=1,
            processes=1,
            memory="1GB",
            walltime="00:10:00",
            job_name="sweepflow-test",
            interface="lo",
            python=sys.executable,
            log_directory=str(log_directory),
            job_script_prologue=[_IMPORT_TESTS],
            scheduler_options={"dashboard_address": ":0"},  # no clash with a dashboard on 8787
            **gpu_options,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield cluster, client


def wait_for_workers(client: Client, count: int, log_directory: Path) -> None:
    """Wait until ``count`` workers have connected; on time-out, fail with the queue and the
    workers' logs."""
    try:
        client.wait_for_workers(count, timeout=WORKER_TIMEOUT_S)
    except TimeoutError:
        queue = subprocess.run(["squeue"], capture_output=True, text=True, check=False).stdout
        logs = "\n".join(
            f"--- {path.name}\n{path.read_text()[-2000:]}"
            for path in sorted(log_directory.glob("*.err"))
        )
        pytest.fail(
            f"{count} Dask worker job(s) did not connect within {WORKER_TIMEOUT_S} s\n"
            f"squeue:\n{queue}\nworker logs:\n{logs}"
        )


def job_states(job_ids: set[str]) -> dict[str, str]:
    """SLURM's state of each job (``RUNNING``, ``PENDING``, ...), as ``scontrol`` reports it."""
    states = {}
    for job_id in job_ids:
        out = subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
        ).stdout
        states[job_id] = out.split("JobState=", 1)[1].split()[0]
    return states


def slurm_job_id() -> str:
    return os.environ["SLURM_JOB_ID"]


def hold_gpu(seconds: float) -> dict[str, str | float | None]:
    """Sleep as if busy on the job's GPU; when, in which job, and on which device."""
    start = time.time()
    time.sleep(seconds)
    return {
        "start": start,
        "end": time.time(),
        "job": os.environ["SLURM_JOB_ID"],
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def mark_and_sleep(folder: str, seconds: float) -> str:
    """Leave ``started-<job id>`` in ``folder``, sleep, and return the job id."""
    job_id = os.environ["SLURM_JOB_ID"]
    Path(folder, f"started-{job_id}").touch()
    time.sleep(seconds)
    return job_id


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (one ending as another starts is no overlap).

    >>> max_overlap([(0, 2), (1, 3), (2, 4), (3, 5)])
    2
    """
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def test_each_worker_is_its_own_slurm_job(slurm_cluster: dict, tmp_path: Path) -> None:
    if slurm_cluster["cpus"] < 2:
        pytest.skip(f"needs 2 CPUs for two one-core worker jobs; the node has {slurm_cluster}")
    with dask_on_slurm(tmp_path) as (cluster, client):
        cluster.scale(2)
        wait_for_workers(client, 2, tmp_path)
        workers = list(client.scheduler_info()["workers"])
        futures = [client.submit(slurm_job_id, workers=[w], pure=False) for w in workers]
        reported = [future.result(timeout=WORKER_TIMEOUT_S) for future in futures]
        submitted = {job.job_id for job in cluster.workers.values()}
        states = job_states(submitted)

    assert len(set(reported)) == 2, reported
    assert set(reported) == submitted
    assert states == dict.fromkeys(submitted, "RUNNING")


def test_gpu_workers_hold_one_fake_gpu_each(slurm_cluster: dict, tmp_path: Path) -> None:
    gpus = slurm_cluster["gpus"]
    if gpus < 2 or slurm_cluster["cpus"] < gpus:
        pytest.skip(f"needs 2 fake GPUs and a CPU for each; the node has {slurm_cluster}")
    with dask_on_slurm(tmp_path, gpu=True) as (cluster, client):
        # More worker jobs than GPUs: SLURM must keep the extra ones pending.
        cluster.scale(gpus + 2)
        wait_for_workers(client, gpus, tmp_path)
        futures = [client.submit(hold_gpu, 2.0, resources={"gpu": 1}, pure=False) for _ in range(4)]
        results = [future.result(timeout=WORKER_TIMEOUT_S) for future in futures]
        states = job_states({job.job_id for job in cluster.workers.values()})

    assert all(result["cuda"] for result in results), results
    assert max_overlap([(result["start"], result["end"]) for result in results]) <= gpus
    assert list(states.values()).count("RUNNING") == gpus, states
    device_of_job = {result["job"]: result["cuda"] for result in results}
    assert set(device_of_job) <= {job for job, state in states.items() if state == "RUNNING"}
    # The jobs run at once, so SLURM gave each a different one of the node's GPUs.
    assert len(set(device_of_job.values())) == len(device_of_job), device_of_job
    assert set(device_of_job.values()) <= {str(index) for index in range(gpus)}, device_of_job


def test_task_of_a_cancelled_job_reruns_in_a_new_job(slurm_cluster: dict, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    # A lost worker's job is replaced only once the cluster forgets it, after
    # lost-worker-timeout (15 s by default); adapt then submits a new job.
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}),
        dask_on_slurm(tmp_path) as (cluster, client),
    ):
        cluster.adapt(minimum=1, maximum=1, interval="500ms")
        wait_for_workers(client, 1, tmp_path)
        # retries= covers exceptions in the task; a task lost with its worker is put back
        # by the scheduler anyway (up to distributed.scheduler.allowed-failures times).
        future = client.submit(mark_and_sleep, str(marks), 3.0, retries=2, pure=False)
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while not (started := list(marks.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started, "the task did not start"
        cancelled = started[0].name.removeprefix("started-")
        subprocess.run(["scancel", cancelled], check=True)
        finished_in = future.result(timeout=2 * WORKER_TIMEOUT_S)
        cancelled_state = job_states({cancelled})[cancelled]

    assert cancelled_state == "CANCELLED"
    assert finished_in != cancelled
    assert sorted(path.name for path in marks.iterdir()) == sorted(
        [f"started-{cancelled}", f"started-{finished_in}"]
    )
