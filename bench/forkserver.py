"""Benchmark: start latency of a ``python script.py`` trial, cold, from the zygote, and
from the standard library's fork server with the same preload.

Run: ``.venv/bin/python bench/forkserver.py [--trials N] [--preload numpy]`` (~20 s).
Each way runs the same trial program (it imports the preloaded module, writes one line
and exits) N times one after another, interleaved so that machine load hits every row
alike, and the table shows the median and mean wall time from "start" to "exit code
known", in ms:

- new interpreter: ``subprocess.Popen([python, prog.py], start_new_session=True)``;
- zygote: :func:`sweepflow.execution.warm.spawn` (what ``preload:`` uses), the trial's
  stdout/stderr handed over as descriptors;
- forkserver: ``multiprocessing.get_context("forkserver")`` with
  ``set_forkserver_preload``; the child does what the zygote's child does for a
  ``python prog.py``: ``setsid``, chdir, environment, ``sys.argv``, ``sys.path``,
  stdout/stderr to the log files (opened by path: a fork server takes no descriptors
  from ``Process`` arguments without ``DupFd`` plumbing), then ``runpy.run_path``.

The question it answers (README, design): can the fork server replace the zygote?
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import multiprocessing
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sweepflow.execution.warm import spawn

PROGRAM = """\
import sys
import {module}
print("trial", sys.argv[1:], flush=True)
"""


def forkserver_child(script: str, args: list[str], cwd: str, env: dict[str, str]) -> None:
    """What a fork-server child must do to look like ``python script.py args``."""
    os.setsid()  # its own process group, so a timeout can kill its children too
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv[:] = [script, *args]
    sys.path.insert(0, os.path.dirname(script))
    for target, name in ((1, "stdout.log"), (2, "stderr.log")):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    importlib.invalidate_caches()  # files made since the fork server imported its modules
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # numpy does not reseed after a fork
        numpy_random.seed()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        # The fork server's child leaves by os._exit: without this, no atexit handler of
        # the program would run (and unclosed files would not be flushed at all).
        atexit._run_exitfuncs()


def timed(start: Callable[[], Callable[[], int]]) -> float:
    """Seconds from start to a known exit code of zero."""
    began = time.perf_counter()
    wait = start()
    code = wait()
    elapsed = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"a trial exited with {code}")
    return elapsed


def main() -> None:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--preload", default="numpy", help="the module trials import")
    options = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="sweepflow-forkserver-"))
    script = folder / "prog.py"
    script.write_text(PROGRAM.format(module=options.preload))
    env = dict(os.environ)
    argv = [sys.executable, str(script), "lr=0.1"]

    def cold() -> Callable[[], int]:
        with (folder / "stdout.log").open("wb") as out:
            proc = subprocess.Popen(
                argv, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return proc.wait

    def zygote() -> Callable[[], int]:
        with (folder / "stdout.log").open("wb") as out:
            proc = spawn(argv, [options.preload], cwd=folder, env=env, stdout=out, stderr=out)
        return proc.wait

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([options.preload])

    def forkserver() -> Callable[[], int]:
        proc = context.Process(
            target=forkserver_child, args=(str(script), ["lr=0.1"], str(folder), env)
        )
        proc.start()

        def wait() -> int:
            proc.join()
            return proc.exitcode

        return wait

    ways = {
        "new interpreter": cold,
        "zygote (preload:)": zygote,
        "forkserver + preload": forkserver,
    }
    for start in ways.values():  # warm up: the zygote and the fork server start here
        timed(start)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(options.trials):
        for name, start in ways.items():
            times[name].append(timed(start))

    print(f"{options.trials} trials each, preload {options.preload!r}, {os.cpu_count()} CPUs")
    print(f"{'way':<24}{'median ms':>12}{'mean ms':>10}")
    for name, values in times.items():
        median, mean = statistics.median(values) * 1e3, statistics.mean(values) * 1e3
        print(f"{name:<24}{median:>12.1f}{mean:>10.1f}")


if __name__ == "__main__":
    main()
