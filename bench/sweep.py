"""Benchmark: 200 short trials through ``sweepflow run`` versus the untracked floor.

Run: ``.venv/bin/python bench/sweep.py`` (about 6 minutes on 2 cores). In one run it
measures, on the same ~50 ms single-threaded numpy program that reports one metric:

- floor: ``xargs -P <cores>`` running the program 200 times, no tracking at all;
- sweepflow with default settings, the project's warm Prefect server running (started
  by an earlier run, as for every run but a project's first): first run, fully cached
  re-run, first run with ``preload: numpy sweepflow`` (each trial forked from an
  interpreter that imported them once), and with ``chunk: 1``;
- the same with ``SWEEPFLOW_SERVER_IDLE=0`` (each run starts a Prefect server of its own);
- the same against a running ``prefect server`` (as after ``sweepflow up``);

and prints wall times and the ratios the issues set goals for (first run with default
settings within 1.25x the floor; a cached re-run at most 5 % of the first run).

``--hydraflow`` also installs HydraFlow 0.14.4 into a temporary virtual environment (from
the package registry, ~1 min) and runs the same 200 trials its fastest way: 20
``--multirun`` processes of 10 in-process Hydra runs, each logging to MLflow.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROGRAM = """\
import sys, numpy as np, sweepflow
params = dict(item.split("=", 1) for item in sys.argv[1:])
rng = np.random.default_rng(int(params["a"]) * 100 + int(params["b"]))
m = rng.standard_normal((160, 160))
for _ in range(12):
    m = np.tanh(m @ m.T / 160)
sweepflow.log_metrics({"score": float(m.mean())})
"""

WORK = """\
import numpy as np


def trial(args):
    params = dict(item.split("=", 1) for item in args)
    rng = np.random.default_rng(int(params["a"]) * 100 + int(params["b"]))
    m = rng.standard_normal((160, 160))
    for _ in range(12):
        m = np.tanh(m @ m.T / 160)
    return {"score": float(m.mean())}
"""

JOB = """\
jobs:
  bench:
    run: python prog.py
    sets:
      - each: a=1:20 b=1:10
  warmup:
    run: python -c pass
  bench_preload:
    run: python prog.py
    preload: numpy sweepflow
    sets:
      - each: a=1:20 b=1:10
  bench_per_trial:
    run: python prog.py
    chunk: 1
    sets:
      - each: a=1:20 b=1:10
  bench_call:
    call: work:trial
    sets:
      - each: a=1:20 b=1:10
"""

HYDRAFLOW_APP = """\
from dataclasses import dataclass

import hydraflow
import mlflow
import numpy as np


@dataclass
class Config:
    a: int = 1
    b: int = 1


@hydraflow.main(Config)
def app(run, cfg: Config) -> None:
    rng = np.random.default_rng(cfg.a * 100 + cfg.b)
    m = rng.standard_normal((160, 160))
    for _ in range(12):
        m = np.tanh(m @ m.T / 160)
    mlflow.log_metric("score", float(m.mean()))


if __name__ == "__main__":
    app()
"""

HYDRAFLOW_JOB = """\
jobs:
  hf:
    run: python app.py
    steps:
      - batch: a=1:20
        args: b=1:10
"""

LOOP = """\
import sys, time
sys.path.insert(0, ".")
from work import trial
start = time.perf_counter()
for a in range(1, 21):
    for b in range(1, 11):
        trial([f"a={a}", f"b={b}"])
print(time.perf_counter() - start)
"""

DEFAULT = "default settings (warm server)"
# How the run finds its Prefect API: the default (the project's warm server, started by
# an earlier run), a server of each run's own, and a `prefect server` (as `sweepflow up`).
MODES: tuple[tuple[str, dict[str, str] | None], ...] = (
    (DEFAULT, {}),
    ("SWEEPFLOW_SERVER_IDLE=0 (a server per run)", {"SWEEPFLOW_SERVER_IDLE": "0"}),
    ("running prefect server", None),
)

ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",  # a new database migrates
}


def _timed(argv: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, input=stdin, text=True, capture_output=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(env: dict[str, str], home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    prefect = str(Path(sys.executable).with_name("prefect"))
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "PREFECT_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    server.terminate()
    sys.exit("prefect server did not answer within 120 s")


def _hydraflow(root: Path, env: dict[str, str]) -> float:
    """Install HydraFlow in its own environment and time the same 200 trials with it."""
    venv = root / "hydraflow-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "hydraflow==0.14.4", "numpy"],
        check=True,
        capture_output=True,
    )
    project = root / "hydraflow-project"
    project.mkdir()
    (project / "app.py").write_text(HYDRAFLOW_APP)
    (project / "hydraflow.yaml").write_text(HYDRAFLOW_JOB)
    hf_env = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    # HydraFlow 0.14 reads runs from MLflow's file store, which MLflow 3 gates behind a flag.
    hf_env["MLFLOW_TRACKING_URI"] = (project / "mlruns").as_uri()
    hf_env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    return _timed([str(venv / "bin" / "hydraflow"), "run", "hf"], project, hf_env)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hydraflow", action="store_true", help="also time HydraFlow 0.14.4")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    sweepflow = str(Path(sys.executable).with_name("sweepflow"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "prog.py").write_text(PROGRAM)
        (project / "work.py").write_text(WORK)
        (project / "sweepflow.yaml").write_text(JOB)
        env = {**os.environ, **ENV, "PREFECT_HOME": str(root / "prefect")}
        env.pop("PREFECT_API_URL", None)
        env.pop("MLFLOW_TRACKING_URI", None)

        lines = "".join(f"a={a} b={b}\n" for a in range(1, 21) for b in range(1, 11))
        floor_env = {**env, "SWEEPFLOW_REPORT": str(root / "floor-report.jsonl")}
        floor = _timed(
            ["xargs", "-P", str(cores), "-L", "1", sys.executable, "prog.py"],
            project,
            floor_env,
            lines,
        )

        # Prefect migrates a new database on its first start (~10 s here), once per
        # machine: do that before timing, as a user's second run would find it done.
        warm = "from prefect import flow\nflow(lambda: None, name='warm-up')()\n"
        _timed([sys.executable, "-c", warm], project, env)

        rows = [(f"floor: xargs -P {cores}, no tracking", floor)]
        for label, extra in MODES:
            server = None
            run_env = {**env, "SWEEPFLOW_HOME": str(root / f"state-{len(rows)}")}
            if extra is None:
                server, url = _start_server(env, root / "server-home")
                run_env["PREFECT_API_URL"] = url
            else:
                run_env |= extra
            if label == DEFAULT:  # the warm server runs, as after any earlier run
                _timed([sweepflow, "run", "warmup"], project, run_env)
            try:
                first = _timed([sweepflow, "run", "bench"], project, run_env)
                cached = _timed([sweepflow, "run", "bench"], project, run_env)
                preload = _timed([sweepflow, "run", "bench_preload"], project, run_env)
                per_trial = _timed([sweepflow, "run", "bench_per_trial"], project, run_env)
                if server is not None:
                    calls = _timed([sweepflow, "run", "bench_call"], project, run_env)
            finally:
                if server is not None:
                    server.terminate()
                    server.wait(timeout=30)
                subprocess.run([sweepflow, "down"], cwd=project, env=run_env, capture_output=True)
            rows.append((f"sweepflow, {label}: first run (chunk: auto)", first))
            rows.append((f"sweepflow, {label}: cached re-run", cached))
            rows.append((f"sweepflow, {label}: first run, preload: numpy", preload))
            rows.append((f"sweepflow, {label}: first run, chunk: 1", per_trial))
        shutil.rmtree(root / "prefect", ignore_errors=True)
        if args.hydraflow:
            rows.append(("HydraFlow 0.14.4: 20 processes x 10 runs", _hydraflow(root, env)))
        loop = float(
            subprocess.run(
                [sys.executable, "-c", LOOP],
                cwd=project,
                env=env,
                text=True,
                capture_output=True,
                check=True,
            ).stdout
        )

    width = max(len(label) for label, _ in rows)
    print(f"200 trials of a ~50 ms numpy program on {cores} cores")
    for label, seconds in rows:
        print(f"{label:<{width}}  {seconds:7.1f} s  {seconds / floor:5.2f}x floor")
    print(
        f"call: trials (running server): {200 / calls:.1f} trials/s end to end "
        f"({calls:.1f} s, process start included) vs a plain loop {200 / loop:.1f} trials/s"
    )
    if args.hydraflow:
        hydraflow = dict(rows)["HydraFlow 0.14.4: 20 processes x 10 runs"]
        for label, _ in MODES:
            first = dict(rows)[f"sweepflow, {label}: first run (chunk: auto)"]
            warm = dict(rows)[f"sweepflow, {label}: first run, preload: numpy"]
            print(
                f"sweepflow ({label}) vs HydraFlow: {hydraflow / first:.1f}x faster, "
                f"{hydraflow / warm:.1f}x with preload (goal >= 5x)"
            )
    for label, _ in MODES:
        first = dict(rows)[f"sweepflow, {label}: first run (chunk: auto)"]
        cached = dict(rows)[f"sweepflow, {label}: cached re-run"]
        warm = dict(rows)[f"sweepflow, {label}: first run, preload: numpy"]
        print(
            f"{label}: first run {first / floor:.2f}x floor ({warm / floor:.2f}x with "
            f"preload; goal <= 1.25x), cached re-run {100 * cached / first:.0f}% of first "
            "(goal <= 5%)"
        )


if __name__ == "__main__":
    main()
