"""Benchmark: an LLC matrix by ``sweepflow llc run`` on dask-local vs a loop; JAX's cache.

The matrix through the flow against the same estimates in one loop, and the effect of
JAX's persistent compilation cache.

Run: ``.venv/bin/python bench/llc_matrix.py`` (4-5 minutes on 2 cores; ``--quick``
about 2). The matrix is 2 toy targets (float64, n = 5,000) x 3 SGLD samplers (4 chains x
4,000 draws after 1,000 burn-in, batch 64, full-data loss at every draw; step sizes
1e-5, 3e-5, 1e-4): 6 pairs of about 1-2 s each. In rounds whose order alternates, it
measures, each in a fresh process, end to end (process start to exit):

- loop: what a user writes by hand: the experiments file read with ``load_experiment``,
  then ``build_target`` once per target and ``sample_llc`` per pair, in one process;
- flow: ``sweepflow llc run experiments.yaml --profile dask-local`` (2 single-threaded
  worker processes, pinned by a project profile of that name) in a fresh project folder,
  so that the artifact store and the compilation cache are empty and every step runs;
  the flow also makes what the loop does not: plots per pair, MLflow
  runs, ``llc_runs.parquet``, the artifact store's records;
- flow --refresh: the same command again in that folder with ``--refresh``: every step
  runs again, but JAX's compilation cache (``<state>/jax-cache``) is warm;
- flow re-run: the same command again: every pair cached (the flow's fixed cost).

It prints the medians, the matrix throughput (pairs per minute) and the ratios, and
checks that the flow's λ̂ are the loop's (same configs, same seeds). A Prefect server is
started first and not timed (a project's server is usually running already).

Then the compilation cache alone: a fresh process builds the first target and samples
its first pair, with no persistent cache (JAX's default), with an empty cache folder
(``SWEEPFLOW_JAX_CACHE``, as the steps read it) and with the folder another process
filled; it prints the sampler's compile seconds, the target build and the process wall
time, medians over alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sweep import ENV, _start_server  # the sibling benchmark

EXPERIMENTS = """\
experiment: bench
targets:
  - {model: {kind: toy, powers: [1, 2]}, data: {n: 5000}, precision: float64}
  - {model: {kind: toy, powers: [2, 2]}, data: {n: 5000}, precision: float64}
samplers:
  - kind: sgld
    chains: 4
    draws: 4000
    burn_in: 1000
    batch_size: 64
    gamma: 10.0
    sweep: "step_size=1e-5,3e-5,1e-4"
"""

# The shipped dask-local profile, with the worker count pinned to 2 whatever the cores.
PROFILE = """\
type: dask-local
workers: 2
threads_per_worker: 1
processes: true
worker_env:
  XLA_PYTHON_CLIENT_PREALLOCATE: "false"
"""

LOOP = """\
import json, sys, time
start = time.perf_counter()
import jax
from sweepflow.workloads.llc import build_target, sample_llc
from sweepflow.workloads.llc.experiment import load_experiment

matrix = load_experiment(sys.argv[1])
llc = {}
for t in matrix.targets:
    with jax.enable_x64(t.config.x64):
        target = build_target(t.config)
        for s in matrix.samplers:
            llc[t.id + " " + s.id] = sample_llc(target, s.config).llc
print(json.dumps({"seconds": time.perf_counter() - start, "llc": llc}))
"""

COMPILE = """\
import json, os, sys, time
from pathlib import Path
import jax
from sweepflow.workloads.llc import build_target, sample_llc
from sweepflow.workloads.llc.experiment import load_experiment
from sweepflow.workloads.llc.steps import CACHE_ENV, enable_compilation_cache

if os.environ.get(CACHE_ENV):  # what the steps do on a worker
    enable_compilation_cache(Path(os.environ[CACHE_ENV]))
matrix = load_experiment(sys.argv[1])
t, s = matrix.targets[0], matrix.samplers[0]
with jax.enable_x64(t.config.x64):
    target = build_target(t.config)
    result = sample_llc(target, s.config)
print(json.dumps({"compile": result.timings.compile_seconds, "build": target.build_seconds}))
"""


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds and stdout of a command that must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def _flow_llc(project: Path) -> dict[str, float]:
    """λ̂ per pair from the table the flow wrote."""
    import pandas as pd

    table = pd.read_parquet(project / ".sweepflow" / "llc" / "bench" / "llc_runs.parquet")
    return {f"{r.target_id} {r.sampler_id}": float(r.llc) for r in table.itertuples()}


def _new_project(root: Path, name: str) -> Path:
    project = root / name
    (project / "profiles").mkdir(parents=True)
    (project / "experiments.yaml").write_text(EXPERIMENTS)
    (project / "profiles" / "dask-local.yaml").write_text(PROFILE)
    return project


def matrix_rounds(root: Path, env: dict[str, str], rounds: int, refresh: bool) -> None:
    """Loop against flow (and flow --refresh), alternating, medians; prints the table."""
    sweepflow = str(Path(sys.executable).with_name("sweepflow"))
    flow = [sweepflow, "llc", "run", "experiments.yaml", "--profile", "dask-local"]
    times: dict[str, list[float]] = {"loop": [], "flow": [], "refresh": [], "cached": []}
    worst = 0.0
    loop_llc: dict[str, float] = {}
    for round_ in range(rounds):
        project = _new_project(root, f"round{round_}")
        for side in ("loop", "flow") if round_ % 2 == 0 else ("flow", "loop"):
            if side == "loop":
                seconds, out = _run([sys.executable, "-c", LOOP, "experiments.yaml"], project, env)
                loop_llc = json.loads(out)["llc"]
            else:
                seconds = _run(flow, project, env)[0]
            times[side].append(seconds)
        if refresh:
            times["refresh"].append(_run([*flow, "--refresh"], project, env)[0])
            times["cached"].append(_run(flow, project, env)[0])
        ours = _flow_llc(project)
        if set(ours) != set(loop_llc):
            sys.exit(f"the flow's pairs {sorted(ours)} are not the loop's {sorted(loop_llc)}")
        worst = max(worst, *(abs(ours[k] - loop_llc[k]) for k in ours))
        shutil.rmtree(project, ignore_errors=True)
        print(
            f"  round {round_ + 1}: "
            + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items() if v)
        )

    loop_s = statistics.median(times["loop"])
    pairs = len(loop_llc)
    print(f"\n{pairs} pairs (2 targets x 3 SGLD), medians of {rounds} round(s), end to end")
    print(f"{'':44}{'seconds':>9}{'pairs/min':>11}{'vs loop':>9}")
    rows = [
        ("loop in one process (build + sample_llc)", times["loop"]),
        ("sweepflow llc run, dask-local x2, cold", times["flow"]),
    ]
    if refresh:
        rows.append(("same, --refresh (compilation cache warm)", times["refresh"]))
        rows.append(("same, re-run (every pair cached)", times["cached"]))
    for label, values in rows:
        seconds = statistics.median(values)
        rate = "-" if values is times["cached"] else f"{pairs / seconds * 60:.1f}"
        print(f"{label:<44}{seconds:>9.1f}{rate:>11}{loop_s / seconds:>8.2f}x")
    print(f"largest |λ̂ flow - λ̂ loop| over the pairs: {worst:.2g}")


def cache_rounds(root: Path, env: dict[str, str], rounds: int) -> None:
    """Compile time of a fresh process: no cache, empty cache, warm cache."""
    project = _new_project(root, "cache")
    warm = root / "warm-cache"
    argv = [sys.executable, "-c", COMPILE, "experiments.yaml"]
    _run(argv, project, {**env, "SWEEPFLOW_JAX_CACHE": str(warm)})  # fills it
    sides = ("no cache", "empty cache", "warm cache")
    found: dict[str, list[tuple[float, float, float]]] = {side: [] for side in sides}
    for round_ in range(rounds):
        order = sides if round_ % 2 == 0 else sides[::-1]
        for side in order:
            side_env = dict(env)
            if side == "empty cache":
                side_env["SWEEPFLOW_JAX_CACHE"] = str(root / f"empty-cache-{round_}")
            elif side == "warm cache":
                side_env["SWEEPFLOW_JAX_CACHE"] = str(warm)
            seconds, out = _run(argv, project, side_env)
            value = json.loads(out)
            found[side].append((value["compile"], value["build"], seconds))
    files = sum(1 for p in warm.rglob("*") if p.is_file())
    print("\nJAX compilation cache: a fresh process builds target 1 and samples pair 1")
    print(f"(medians of {rounds} rounds; the warm cache holds {files} files)")
    print(f"{'':14}{'sample compile s':>17}{'build s':>9}{'process s':>11}")
    base = statistics.median(v[0] for v in found["no cache"])
    for side in sides:
        compile_s, build_s, wall_s = (
            statistics.median(v[i] for v in found[side]) for i in range(3)
        )
        print(f"{side:<14}{compile_s:>17.2f}{build_s:>9.2f}{wall_s:>11.2f}")
    warm_s = statistics.median(v[0] for v in found["warm cache"])
    print(f"sample compile, no cache / warm cache: {base / warm_s:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 matrix round; no --refresh, re-run rows"
    )
    parser.add_argument("--rounds", type=int, default=3, help="matrix rounds (default 3)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-") as tmp:
        root = Path(tmp)
        env = {**os.environ, **ENV, "PREFECT_HOME": str(root / "prefect")}
        for name in ("MLFLOW_TRACKING_URI", "SWEEPFLOW_JAX_CACHE", "PREFECT_API_URL"):
            env.pop(name, None)
        print(f"{os.cpu_count()} cores; {_versions()}")
        server, url = _start_server(env, root / "server-home")
        try:
            matrix_rounds(root, {**env, "PREFECT_API_URL": url}, rounds, not args.quick)
        finally:
            server.terminate()
            server.wait(timeout=30)
        cache_rounds(root, env, 2 if args.quick else 3)


def _versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("jax", "prefect", "distributed"))


if __name__ == "__main__":
    main()
