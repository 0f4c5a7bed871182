"""Benchmark: what ``import sweepflow`` costs a trial process, over the interpreter floor.

Run: ``.venv/bin/python bench/imports.py [--repeat N]`` (a few seconds). In one run,
interleaved so that machine load hits every row alike, it starts fresh interpreters
(``sys.executable``, no shell, from a temporary folder, ``SWEEPFLOW_*`` unset) and takes
the median wall time of:

- floor: ``python -c pass``;
- ``import sweepflow``;
- ``import sweepflow; sweepflow.log_metrics`` (the attribute only);
- a real ``sweepflow.log_metrics({'x': 1.0})`` inside a trial-like environment
  (``SWEEPFLOW_REPORT`` pointing at a temporary report file);
- ``from sweepflow import main`` (``@sweepflow.main`` needs pydantic);
- ``import pydantic.main`` for reference: a program with a pydantic config pays it anyway;

and prints a table in ms and ms over the floor, and whether the trial path (the real
``log_metrics`` call) meets the goal of at most 30 ms over the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MS = 30.0

CASES = (
    ("python -c pass (floor)", "pass", False),
    ("import sweepflow", "import sweepflow", False),
    ("import sweepflow; sweepflow.log_metrics", "import sweepflow; sweepflow.log_metrics", False),
    (
        "log_metrics({'x': 1.0}) in a trial",
        "import sweepflow; sweepflow.log_metrics({'x': 1.0})",
        True,
    ),
    ("from sweepflow import main", "from sweepflow import main", False),
    ("import pydantic.main (what main needs)", "import pydantic.main", False),
)
TRIAL_CASE = 3


def _environment() -> dict[str, str]:
    """The caller's environment without any ``SWEEPFLOW_*`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SWEEPFLOW_")}


def _time_once(code: str, env: dict[str, str], cwd: str) -> float:
    """Wall seconds of one fresh interpreter running ``code``; fails loudly on error."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, check=False
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{result.stderr.decode(errors='replace')}")
    return elapsed


def main() -> None:
    """Measure every case ``--repeat`` times, interleaved, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs of each case")
    args = parser.parse_args()

    base = _environment()
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-") as folder:
        report = Path(folder, "report.jsonl")
        trial_env = {**base, "SWEEPFLOW_REPORT": str(report)}
        times: list[list[float]] = [[] for _ in CASES]
        for _ in range(2):  # warm the file cache (bytecode, site-packages)
            for _, code, in_trial in CASES:
                _time_once(code, trial_env if in_trial else base, folder)
        for _ in range(args.repeat):
            for index, (_, code, in_trial) in enumerate(CASES):
                times[index].append(_time_once(code, trial_env if in_trial else base, folder))
        lines = report.read_text().splitlines()
        expected = args.repeat + 2
        if len(lines) != expected:
            raise SystemExit(f"expected {expected} report lines, found {len(lines)}")

    medians = [statistics.median(t) * 1000 for t in times]
    floor = medians[0]
    width = max(len(label) for label, _, _ in CASES)
    print(f"{sys.executable} (median of {args.repeat} runs each)")
    print(f"{'case':<{width}}  {'ms':>7}  {'over floor':>10}")
    for (label, _, _), median in zip(CASES, medians, strict=True):
        print(f"{label:<{width}}  {median:7.1f}  {median - floor:10.1f}")
    over = medians[TRIAL_CASE] - floor
    verdict = "met" if over <= GOAL_MS else "NOT met"
    print(
        f"goal: a trial's log_metrics at most {GOAL_MS:.0f} ms over the floor: "
        f"{verdict} ({over:.1f} ms)"
    )


if __name__ == "__main__":
    main()
