"""Benchmark: faults injected into real sweeps, and what each one lost or left behind.

Run: ``.venv/bin/python bench/reliability.py`` (about 3 minutes on 2 cores; root for the
full-disk row, which mounts a 3 MB tmpfs). ``--source DIR`` runs another checkout's code
(e.g. ``git worktree add /tmp/landed <commit>``) with the same faults, for a before/after
table. Every run is a real ``python -m sweepflow run`` against one ``prefect server``;
the faults are real signals, real concurrent drivers and a real full file system.

Columns (the goal is 0 in each):

- ``duplicate runs``: FINISHED MLflow trial runs beyond one per successful execution
  (and, for a program that logs to MLflow itself, beyond one per trial);
- ``ran twice``: trials executed again that had already finished, or executed by two
  drivers (a re-run asked for, ``--refresh`` or a corrupt result, is not counted);
- ``killed``: trial executions that started and never ended, other than those the
  fault itself was meant to kill;
- ``orphans``: processes a driver started that outlived it by 5 s;
- ``lost``: trials with a stored result but no FINISHED run, plus runs left RUNNING
  or SCHEDULED after the last driver ended;
- ``foreign``: processes sweepflow did not start that it killed;
- ``silent``: faults the user was not told about (no warning, or a traceback instead
  of one line).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import _start_server

# A trial: logs "start"/"end" with its pid, starts a grandchild (``sleep 30``) that it
# stops itself, sleeps ``sleep`` seconds and reports one metric.
PROGRAM = """\
import json, os, subprocess, sys, time
from pathlib import Path

import sweepflow

params = dict(item.split("=", 1) for item in sys.argv[1:])
log = Path(__file__).resolve().parent / "executions.log"
child = subprocess.Popen(["sleep", "30"])
with log.open("a") as out:
    out.write(json.dumps({"a": params["a"], "pid": os.getpid(), "child": child.pid}) + "\\n")
time.sleep(float(params.get("sleep", 0)))
print("x" * int(params.get("noise", 0)))
sweepflow.log_metrics({"score": float(params["a"])})
child.kill()
with log.open("a") as out:
    out.write(json.dumps({"a": params["a"], "end": True}) + "\\n")
"""

SELF_LOGGING = """\
import os, sys, time
from pathlib import Path

import mlflow

params = dict(item.split("=", 1) for item in sys.argv[1:])
here = Path(__file__).resolve().parent
with mlflow.start_run():
    mlflow.log_metric("own", float(params["a"]))
if params["a"] == "2" and not (here / "killed-once").exists():
    (here / "ended").write_text(str(os.getpid()))
    time.sleep(60)
"""


class Bench:
    """One source tree under test, one Prefect server, one temporary folder."""

    def __init__(self, source: Path, root: Path, url: str) -> None:
        self.source, self.root, self.url = source, root, url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING")}
        self.env["PYTHONPATH"] = f"{source / 'src'}{os.pathsep}{source}"
        self.env["PREFECT_API_URL"] = url
        self.env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        self.env.pop("MLFLOW_TRACKING_URI", None)

    def project(self, name: str, jobs: str, program: str = PROGRAM, at: Path | None = None) -> Path:
        folder = at or self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sweepflow.yaml").write_text(jobs)
        (folder / "prog.py").write_text(program)
        return folder

    def start(self, project: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "sweepflow", "run", *args],
            cwd=project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sweepflow", "run", *args],
            cwd=project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )


# -- what a project shows afterwards -----------------------------------------------------
def _runs(project: Path) -> list[tuple[str, str, str]]:
    """(status, role, trial digest) of every run in the project's MLflow store."""
    database = project / ".sweepflow" / "mlflow.db"
    if not database.exists():
        return []
    with sqlite3.connect(database) as db:
        return list(
            db.execute(
                "SELECT r.status, role.value, COALESCE(trial.value, '') FROM runs r "
                "JOIN tags role ON role.run_uuid = r.run_uuid AND role.key = 'sweepflow.role' "
                "LEFT JOIN tags trial ON trial.run_uuid = r.run_uuid "
                "AND trial.key = 'sweepflow.trial'"
            )
        )


def _stored(project: Path) -> set[str]:
    """The ``a`` of the trials with a FINISHED run (their result stored before it)."""
    with sqlite3.connect(project / ".sweepflow" / "mlflow.db") as db:
        rows = db.execute(
            "SELECT p.value FROM runs r JOIN params p ON p.run_uuid = r.run_uuid "
            "WHERE r.status = 'FINISHED' AND p.key = 'a'"
        )
        return {value for (value,) in rows}


def _results(project: Path) -> int:
    folder = project / ".sweepflow" / "results"
    return sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0


def _executions(project: Path) -> list[dict]:
    log = project / "executions.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _orphans(project: Path) -> int:
    """Programs and their children still alive (after a 5 s grace)."""
    pids = [p for e in _executions(project) for p in (e.get("pid"), e.get("child")) if p]
    time.sleep(5)
    return sum(_alive(pid) for pid in pids)


def _tally(project: Path, expected_killed: int = 0) -> dict[str, int]:
    runs = _runs(project)
    finished = Counter(t for status, role, t in runs if role == "trial" and status == "FINISHED")
    open_runs = sum(status in ("RUNNING", "SCHEDULED") for status, _, _ in runs)
    executions = _executions(project)
    started = sum("pid" in e for e in executions)
    ended = sum(bool(e.get("end")) for e in executions)
    return {
        "duplicate runs": max(0, sum(finished.values()) - ended) if executions else 0,
        "ran twice": 0,
        "killed": max(0, started - ended - expected_killed),
        "lost": max(0, _results(project) - len(finished)) + open_runs,
    }


def _kill_when(process: subprocess.Popen, ready: callable, limit: float = 120) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + limit
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the driver ended before the fault could be injected")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


# -- the faults --------------------------------------------------------------------------
def sigkill_resume(bench: Bench) -> dict[str, object]:
    jobs = "jobs:\n  slow:\n    run: python prog.py sleep=1\n    sets:\n      - each: a=1:8\n"
    project = bench.project("sigkill", jobs)
    first = bench.start(project, "slow", "-j", "2")

    def three_done() -> bool:
        return sum(bool(e.get("end")) for e in _executions(project)) >= 3

    _kill_when(first, three_done)
    at_kill = _executions(project)
    in_flight = sum("pid" in e for e in at_kill) - sum(bool(e.get("end")) for e in at_kill)
    stored = _stored(project)  # trials the killed driver had finished (result and run)
    orphans = _orphans(project)
    second = bench.run(project, "slow", "-j", "2")
    row = _tally(project, expected_killed=in_flight)
    ran = Counter(e["a"] for e in _executions(project) if "pid" in e)
    row["ran twice"] = sum(ran[a] - 1 for a in stored)
    return (
        {"fault": "SIGKILL mid-sweep, then resume", "trials": 8, "orphans": orphans}
        | row
        | {"silent": int(second.returncode != 0)}
    )


def concurrent(bench: Bench, drivers: int) -> dict[str, object]:
    jobs = "jobs:\n  same:\n    run: python prog.py sleep=0.5\n    sets:\n      - each: a=1:20\n"
    jobs += "  warm:\n    run: python prog.py a=0\n"
    project = bench.project(f"concurrent-{drivers}", jobs)
    bench.run(project, "warm")  # the stores exist before the drivers fan out
    started = [bench.start(project, "same", "-j", "3") for _ in range(drivers)]
    outputs = [p.communicate(timeout=600)[0] for p in started]
    row = _tally(project)
    ran = Counter(e["a"] for e in _executions(project) if "pid" in e)
    row["ran twice"] = sum(n - 1 for n in ran.values() if n > 1)
    failed = sum(p.returncode != 0 for p in started)
    silent = failed + sum("Traceback" in out for out in outputs)
    return (
        {"fault": f"{drivers} drivers of one job at once", "trials": 20, "orphans": 0}
        | row
        | {"silent": silent}
    )


def self_logging(bench: Bench) -> dict[str, object]:
    jobs = "jobs:\n  own:\n    run: python prog.py\n    sets:\n      - each: a=1:3\n"
    project = bench.project("self-logging", jobs, SELF_LOGGING)
    first = bench.start(project, "own", "-j", "3")
    _kill_when(first, lambda: (project / "ended").exists())
    (project / "killed-once").touch()
    second = bench.run(project, "own")
    row = _tally(project)
    finished = Counter(
        t for status, role, t in _runs(project) if role == "trial" and status == "FINISHED"
    )
    row["duplicate runs"] = sum(n - 1 for n in finished.values() if n > 1)
    return (
        {"fault": "program logs to MLflow itself, SIGKILL", "trials": 3, "orphans": 0}
        | row
        | {"silent": int(second.returncode != 0)}
    )


def disk_full(bench: Bench) -> dict[str, object] | None:
    mount = bench.root / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
        check=False,
        capture_output=True,
    )
    if made.returncode != 0:
        return None
    try:
        jobs = "jobs:\n  fill:\n    run: python prog.py noise=100000\n"
        jobs += "    sets:\n      - each: a=1:40\n"
        project = bench.project("disk", jobs, at=mount)
        done = bench.run(project, "fill", "-j", "2")
        out = done.stdout + done.stderr
        row = _tally(project, expected_killed=sum("pid" in e for e in _executions(project)))
        errors = [line for line in out.splitlines() if line.startswith("error: ")]
        told = len(errors) == 1 and "Traceback" not in out
        row["killed"] = 0  # a full disk fails trials by design; what counts is what was kept
        return (
            {"fault": "disk full (3 MB tmpfs)", "trials": 40, "orphans": 0}
            | row
            | {"silent": int(not told)}
        )
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def stale_pid(bench: Bench) -> dict[str, object]:
    jobs = "jobs:\n  one:\n    run: python prog.py a=1\n"
    project = bench.project("stale-pid", jobs)
    bench.run(project, "one")
    folder = next(p.parent for p in (project / ".sweepflow" / "runs" / "one").glob("*/stdout.log"))
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (folder / "pid").write_text(str(victim.pid))
    bench.run(project, "one", "--refresh")
    foreign = int(victim.poll() is not None)
    victim.kill()
    victim.wait()
    return (
        {"fault": "stale pid file, then --refresh", "trials": 1, "orphans": 0}
        | _tally(project)
        | {"foreign": foreign, "silent": 0}
    )


def corrupt_result(bench: Bench) -> dict[str, object]:
    jobs = "jobs:\n  two:\n    run: python prog.py\n    sets:\n      - each: a=1,2\n"
    project = bench.project("truncated", jobs)
    bench.run(project, "two")
    result = sorted((project / ".sweepflow" / "results").iterdir())[0]
    result.write_bytes(result.read_bytes()[:-20])
    again = bench.run(project, "two")
    warned = "cached result is corrupt" in again.stdout + again.stderr
    return (
        {"fault": "truncated cached result", "trials": 2, "orphans": 0}
        | _tally(project)
        | {"silent": int(not warned)}
    )


COLUMNS = ("fault", "trials", "duplicate runs", "ran twice", "killed", "orphans", "lost")
COLUMNS += ("foreign", "silent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    source = args.source.resolve()
    with tempfile.TemporaryDirectory(prefix="sweepflow-reliability-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        server, url = _start_server(env, root / "prefect-home")
        bench = Bench(source, root, url)
        rows = []
        try:
            for fault in (sigkill_resume, lambda b: concurrent(b, 2), lambda b: concurrent(b, 4),
                          self_logging, disk_full, stale_pid, corrupt_result):  # fmt: skip
                started = time.perf_counter()
                row = fault(bench)
                if row is None:
                    print("disk full: skipped (cannot mount a tmpfs: run as root)")
                    continue
                rows.append(row)
                print(f"{row['fault']}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        finally:
            server.terminate()
            server.wait()
    print(f"source: {source}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for row in rows:
        print("| " + " | ".join(str(row.get(c, 0)) for c in COLUMNS) + " |")


if __name__ == "__main__":
    main()
