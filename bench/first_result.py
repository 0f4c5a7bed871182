"""Benchmark: a one-trial ``sweepflow run`` against a script that logs to MLflow by hand.

Run: ``.venv/bin/python bench/first_result.py [--repeats N]`` (about 2 minutes on 2
cores). Both sides run the same tiny program and end with one metric in an MLflow
SQLite store; each is timed from the shell's point of view (process start to exit):

- by hand: ``python hand.py``, which imports MLflow, opens the store, sets the
  experiment and logs the metric in a run (the store exists already, as on any day but
  the first);
- ``sweepflow run one --refresh`` with default settings: the project's warm Prefect
  server is running (started by an earlier run), so this is every run but the first;
- the first-ever run: a new project folder, no state, no Prefect database: the run
  starts the warm server and Prefect creates its database;
- ``SWEEPFLOW_SERVER_IDLE=0``: no warm server, the run starts a Prefect server of its
  own and stops it (what every run did before).

Prints the median of ``--repeats`` runs (default 5) and each side's ratio to the
hand-logged script (goal: the warm run at most 0.75x), and whether any run printed a
warning.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = """\
import sys, sweepflow
x = float(sys.argv[1].split("=", 1)[1])
sweepflow.log_metrics({"loss": (x - 0.3) ** 2})
"""

BY_HAND = """\
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
mlflow.set_experiment("one")
x = 1.0
with mlflow.start_run():
    mlflow.log_params({"x": x})
    mlflow.log_metrics({"loss": (x - 0.3) ** 2})
"""

JOB = """\
jobs:
  one:
    run: python prog.py
    sets:
      - each: x=1.0
"""

ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
WARNINGS = ("warning", "Error logging to API", "Traceback")


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{argv[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout + done.stderr


def _project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "prog.py").write_text(PROGRAM)
    (folder / "hand.py").write_text(BY_HAND)
    (folder / "sweepflow.yaml").write_text(JOB)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per row (median)")
    args = parser.parse_args()
    sweepflow = str(Path(sys.executable).with_name("sweepflow"))
    root = Path(tempfile.mkdtemp(prefix="sweepflow-first-result-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env = {k: v for k, v in env.items() if not k.startswith("SWEEPFLOW_")}
    env |= ENV | {"PREFECT_HOME": str(root / "prefect-home")}
    warned: list[str] = []
    times: dict[str, list[float]] = {}
    projects: list[Path] = []

    def record(label: str, seconds: float, output: str) -> None:
        times.setdefault(label, []).append(seconds)
        if any(word.lower() in output.lower() for word in WARNINGS):
            warned.append(f"{label}: {output.strip().splitlines()[-1][:200]}")

    try:
        hand_project = _project(root, "by-hand")
        store = f"sqlite:///{hand_project / 'mlflow.db'}"
        _timed([sys.executable, "hand.py", store], hand_project, env)  # creates the store
        for index in range(args.repeats):
            first = _project(root, f"first-{index}")
            projects.append(first)
            record("first-ever run (starts the warm server)", *_timed(
                [sweepflow, "run", "one"], first, env))  # fmt: skip
        warm = projects[0]
        for _ in range(args.repeats):
            # Alternate the sides so that a slow moment of the machine hits both.
            record("by hand: python hand.py (MLflow)", *_timed(
                [sys.executable, "hand.py", store], hand_project, env))  # fmt: skip
            record("sweepflow run, warm server", *_timed(
                [sweepflow, "run", "one", "--refresh"], warm, env))  # fmt: skip
            record("sweepflow run, SWEEPFLOW_SERVER_IDLE=0", *_timed(
                [sweepflow, "run", "one", "--refresh"], warm, env | {"SWEEPFLOW_SERVER_IDLE": "0"}
            ))  # fmt: skip
    finally:
        for project in projects:
            subprocess.run([sweepflow, "down"], cwd=project, env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)

    hand = statistics.median(times["by hand: python hand.py (MLflow)"])
    width = max(map(len, times))
    print(f"one trial, one metric; median of {args.repeats} runs on {os.cpu_count()} cores")
    for label, values in times.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"{label:<{width}}  {median:6.2f} s  ({spread})  {median / hand:5.2f}x by hand")
    ratio = statistics.median(times["sweepflow run, warm server"]) / hand
    print(f"warm run / by hand: {ratio:.2f}x (goal <= 0.75x)")
    print("warnings printed: " + ("; ".join(warned) if warned else "none"))


if __name__ == "__main__":
    main()
