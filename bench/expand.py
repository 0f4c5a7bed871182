"""Benchmark: expanding a 1,000,000-trial job lazily versus materialising it.

Run: ``make bench`` (or ``.venv/bin/python bench/expand.py``). Prints, side by side in
one run, the time and peak memory of counting, streaming, and building the full list
of trials (what a non-lazy expander does), and their ratios. The goal of the foundation
issue: counting or streaming a 1 M-trial job takes under a second, in constant memory.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import tempfile
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from pathlib import Path

from sweepflow import load_jobs
from sweepflow.plan.expansion import compile_job

JOB_FILE = """\
jobs:
  million:
    run: python train.py
    sets:
      - each: model=a,b,c,d lr=log(1e-5:1e-1:50) depth=1:50
        all: seed=0:99
"""


def measure(fn: Callable[[], object]) -> tuple[float, int, object]:
    """(seconds, peak bytes allocated, result) of one call."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak, result


def measure_time(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls, without tracing overhead."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions (best of)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweepflow.yaml"
        path.write_text(JOB_FILE)
        job = load_jobs(path).jobs["million"]

        def count() -> int:
            return compile_job(job).count()[1]

        def stream() -> int:
            counter = itertools.count()
            deque(
                zip(compile_job(job).iter_trials(), counter, strict=False), maxlen=0
            )  # consume in C
            return next(counter)

        def materialise() -> int:
            return len(compile_job(job).trials())

        rows = []
        for name, fn in (("count", count), ("stream", stream), ("list", materialise)):
            seconds = measure_time(fn, args.repeat)
            _, peak, result = measure(fn)
            rows.append((name, result, seconds, peak))

    width = max(len(r[0]) for r in rows)
    print(f"{'mode':<{width}}  {'trials':>9}  {'seconds':>8}  {'peak MiB':>9}")
    for name, n, seconds, peak in rows:
        print(f"{name:<{width}}  {n:>9,}  {seconds:>8.3f}  {peak / 2**20:>9.2f}")
    (_, _, t_count, _m_count), (_, _, t_stream, m_stream), (_, _, t_list, m_list) = rows
    print(
        f"stream vs list: {t_list / t_stream:.2f}x time, {m_list / max(m_stream, 1):,.0f}x memory"
    )
    print(f"count vs stream: {t_stream / max(t_count, 1e-9):,.0f}x faster")
    goal = "met" if t_count < 1 and t_stream < 1 else "MISSED"
    print(f"goal (count and stream a 1M-trial job in < 1 s): {goal}")


if __name__ == "__main__":
    main()
