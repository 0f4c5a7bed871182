"""Benchmark: 1,000 trivial trials on a local Dask cluster, sweepflow versus raw Dask.

Run: ``.venv/bin/python bench/dask.py`` (about 3 minutes on 2 cores). In one run, on a
``distributed.LocalCluster`` of 2 single-threaded worker processes:

- raw Dask: start the cluster, ``Client.map`` a trivial function over 1,000 inputs,
  gather, close (no caching, no tracking, no Prefect);
- ``sweepflow run --profile dask-local`` of a ``call:`` job with the same 1,000 trials,
  against a running Prefect server: end to end (process start, flow, cluster start,
  per-trial cache entries and MLflow runs), with ``chunk: auto`` (the default) and with
  ``chunk: 1`` (one Prefect task run per trial);
- the fully cached re-run.

and prints the ratios the profiles issue sets a goal for (sweepflow within 3x raw).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sweep import ENV, _start_server, _timed  # the sibling benchmark

WORK = """\
def trivial(args):
    x = int(args[0].split("=", 1)[1])
    return {"y": float(x % 7)}
"""

JOB = """\
jobs:
  trivial:
    call: work:trivial
    sets:
      - all: x=1:1000
  trivial_per_trial:
    call: work:trivial
    chunk: 1
    sets:
      - all: x=1:1000
"""

RAW = """\
import sys, time
start = time.perf_counter()
from distributed import Client, LocalCluster
sys.path.insert(0, ".")
from work import trivial
with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                  dashboard_address=None) as cluster, Client(cluster) as client:
    ready = time.perf_counter()
    futures = client.map(trivial, [[f"x={x}"] for x in range(1, 1001)])
    results = client.gather(futures)
    mapped = time.perf_counter()
assert len(results) == 1000
print(time.perf_counter() - start, mapped - ready)
"""


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-per-trial", action="store_true", help="skip the chunk: 1 row (about 4 minutes)"
    )
    args = parser.parse_args()
    profile = ["--profile", "dask-local", "--set", "workers=2", "--set", "threads_per_worker=1"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "work.py").write_text(WORK)
        (project / "sweepflow.yaml").write_text(JOB)
        env = {**os.environ, **ENV, "PREFECT_HOME": str(root / "prefect")}
        env.pop("MLFLOW_TRACKING_URI", None)
        sweepflow = str(Path(sys.executable).with_name("sweepflow"))

        raw = subprocess.run(
            [sys.executable, "-c", RAW],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if raw.returncode:
            sys.exit(raw.stderr[-2000:])
        raw_total, raw_map = (float(v) for v in raw.stdout.split())

        server, url = _start_server(env, root / "server-home")
        run_env = {**env, "PREFECT_API_URL": url}
        try:
            auto = _timed([sweepflow, "run", "trivial", *profile], project, run_env)
            cached = _timed([sweepflow, "run", "trivial", *profile], project, run_env)
            per_trial = None
            if not args.no_per_trial:
                per_trial = _timed(
                    [sweepflow, "run", "trivial_per_trial", *profile], project, run_env
                )
        finally:
            server.terminate()
            server.wait(timeout=30)

    rows = [
        ("raw Dask: cluster start + Client.map + gather", raw_total),
        ("  of which Client.map + gather", raw_map),
        ("sweepflow run --profile dask-local (chunk: auto)", auto),
        ("same, fully cached re-run", cached),
    ]
    if per_trial is not None:
        rows.append(("same job with chunk: 1 (a task run per trial)", per_trial))
    width = max(len(label) for label, _ in rows)
    print("1,000 trivial trials, LocalCluster of 2 worker processes, 2 cores")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:7.1f} s  {seconds / raw_total:6.2f}x raw")
    print(f"sweepflow (chunk: auto) vs raw Dask end to end: {auto / raw_total:.2f}x (goal <= 3x)")


if __name__ == "__main__":
    main()
