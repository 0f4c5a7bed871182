"""Benchmark: the overhead of a workflow step, and the cache-hit path, against the same
functions called directly.

Run: ``.venv/bin/python bench/workflow.py`` (well under a minute; ``--repeat N``). In
one process, on a no-op 3-step workflow (``a -> b -> c``, each writing a tiny file in
its workspace; no Prefect, no MLflow: :func:`sweepflow.workflow.run.run_workflow` in
this process), the median over N repeats of:

- direct: the three functions called one after another, each in a fresh folder;
- first run: ``run_workflow`` on a new, empty store (every step runs: workspaces,
  store puts, catalog records, the run recorded as a gc root; the catalog created);
- no cache: ``run_workflow(no_cache=True)`` on an existing store (every step runs; the
  objects exist already, so each put ends as a duplicate);
- cache hits: ``run_workflow`` again (every step a hit: code fingerprints, keys,
  catalog lookups, leases);
- the code fingerprint of one step, cold (files re-read and parsed) and warm (the
  per-process cache of parsed files).

It prints ms per workflow (or per fingerprint) and the ratio to the direct calls.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sweepflow.workflow import code
from sweepflow.workflow.run import import_workflow, run_workflow

PIPELINE = '''\
"""A no-op 3-step workflow: each step writes a tiny file."""
from pathlib import Path

import sweepflow


@sweepflow.step(outputs={"x": "blob"})
def a(workspace: Path) -> dict[str, Path]:
    (workspace / "a.txt").write_text("a")
    return {"x": workspace / "a.txt"}


@sweepflow.step(inputs={"x": "blob"}, outputs={"y": "blob"})
def b(x: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    (workspace / "b.txt").write_text("b")
    return {"y": workspace / "b.txt"}


@sweepflow.step(inputs={"y": "blob"}, outputs={"z": "blob"})
def c(y: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    (workspace / "c.txt").write_text("c")
    return {"z": workspace / "c.txt"}


pipeline = sweepflow.Workflow("noop", [a, b, c])
'''


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="repeats per measure")
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        module = project / "bench_noop.py"
        module.write_text(PIPELINE)
        old = time.time() - 60  # older than the fingerprint cache's "racy" window
        os.utime(module, (old, old))
        workflow = import_workflow("bench_noop:pipeline", project)
        a, b, c = workflow.steps
        scratch = Path(tmp) / "direct"
        counter = iter(range(10**9))

        def direct() -> None:
            folder = scratch / str(next(counter))
            for step in (a, b, c):
                workspace = folder / step.name
                workspace.mkdir(parents=True)
                if step.inputs:
                    step(None, workspace=workspace)  # the artifact is unused
                else:
                    step(workspace=workspace)

        def first_run() -> None:
            state = Path(tmp) / "states" / str(next(counter))
            result = run_workflow(workflow, {}, project, state)
            assert [o.status for o in result.steps] == ["ran"] * 3

        hit_state = Path(tmp) / "hits"
        run_workflow(workflow, {}, project, hit_state)

        def hits() -> None:
            result = run_workflow(workflow, {}, project, hit_state)
            assert [o.status for o in result.steps] == ["hit"] * 3

        def no_cache() -> None:
            result = run_workflow(workflow, {}, project, hit_state, no_cache=True)
            assert [o.status for o in result.steps] == ["ran"] * 3

        def cold() -> None:
            code._CACHE.clear()
            code.code_fingerprint(module, project)

        def warm() -> None:
            code.code_fingerprint(module, project)

        direct()
        first_run()  # warm imports and the file system before timing
        rows = [
            ("direct calls (3 functions)", _median_ms(direct, repeat)),
            ("run_workflow, first run (3 ran)", _median_ms(first_run, repeat)),
            ("run_workflow, --no-cache (3 ran)", _median_ms(no_cache, repeat)),
            ("run_workflow, again (3 hits)", _median_ms(hits, repeat)),
            ("code fingerprint, cold (1 step)", _median_ms(cold, repeat)),
            ("code fingerprint, warm (1 step)", _median_ms(warm, repeat)),
        ]
        shutil.rmtree(scratch, ignore_errors=True)
    base = rows[0][1]
    print(f"no-op 3-step workflow, median of {repeat} (Python {sys.version.split()[0]})")
    print(f"{'measure':<34} {'ms':>9} {'x direct':>9}")
    for name, ms in rows:
        print(f"{name:<34} {ms:>9.3f} {ms / base:>9.1f}")


if __name__ == "__main__":
    main()
