"""Trustworthy under crashes and concurrency: real drivers, real signals, real stores.

Each test reproduces one way a sweep lost or duplicated work, or harmed a process it
did not own, and checks what a user would see instead: every trial run once, one
FINISHED MLflow run per successful trial, nothing foreign signalled, nothing left behind.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_run_job import child_env, executions, make_project

from sweepflow.cli.main import main

pytestmark = pytest.mark.usefixtures("prefect_api")

COMMAND = [sys.executable, "-m", "sweepflow", "run"]


def start_time(pid: int) -> int:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def finished_runs(project: Path, job: str) -> Counter:
    """FINISHED trial runs of ``job``'s experiment, by trial digest."""
    with sqlite3.connect(project / ".sweepflow" / "mlflow.db") as db:
        rows = db.execute(
            "SELECT t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = ? AND t.key = 'sweepflow.trial' AND r.status = 'FINISHED'",
            (job,),
        )
        return Counter(value for (value,) in rows)


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def wait_for(path: Path, process: subprocess.Popen, within: float = 120) -> str:
    deadline = time.monotonic() + within
    while not (path.exists() and path.read_text()):
        assert process.poll() is None, f"the driver exited before {path.name} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    return path.read_text()


def start(project: Path, *args: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*COMMAND, *args], cwd=project, env=child_env(), stdout=out, stderr=out
        )


# -- 1. two drivers of one job at once ---------------------------------------------------
def test_two_drivers_of_one_job_run_each_trial_once(project: Path, tmp_path: Path) -> None:
    make_project(
        project,
        """
        jobs:
          slow:
            run: python train.py
            add: sleep=2
            sets:
              - each: a=1:6
        """,
        "train.py",
    )
    first = start(project, "slow", "-j", "3", log=tmp_path / "0.out")
    wait_for(project / "executions.log", first)  # the second starts while trials run
    drivers = [first, start(project, "slow", "-j", "3", log=tmp_path / "1.out")]
    for driver in drivers:
        driver.wait(timeout=300)
    outputs = [(tmp_path / f"{i}.out").read_text() for i in (0, 1)]

    assert [d.returncode for d in drivers] == [0, 0], outputs
    ran = Counter(e["a"] for e in executions(project))
    assert ran == Counter({str(a): 1 for a in range(1, 7)}), ran  # none killed, none twice
    per_trial = finished_runs(project, "slow")
    assert len(per_trial) == 6 and set(per_trial.values()) == {1}, per_trial
    assert "ran in another sweepflow run" in "".join(outputs)


# -- 2. a stale pid file never names a victim --------------------------------------------
def test_a_stale_pid_file_never_stops_a_process_sweepflow_did_not_start(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(project, "jobs:\n  one:\n    run: python train.py a=1\n", "train.py")
    assert main(["run", "one"]) == 0
    (folder,) = _folders(project, "one")
    assert not (folder / "pid").exists(), "the pid file outlived its program"
    # An unrelated process that leads its own session, as sweepflow's programs do.
    foreign = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        stale = [
            str(foreign.pid),  # the old format: a bare pid proves nothing
            json.dumps(
                {
                    "pid": foreign.pid,
                    "start": start_time(foreign.pid) + 1,
                    "host": os.uname().nodename,
                }
            ),
        ]
        for text in stale:
            (folder / "pid").write_text(text)
            assert main(["run", "one", "--refresh"]) == 0
            assert foreign.poll() is None, f"a pid file {text!r} got a foreign process killed"
    finally:
        foreign.kill()
        foreign.wait()


# -- 3. a killed driver takes its trials, and what they started, along --------------------
def test_a_killed_driver_takes_its_trials_and_their_children_along(
    project: Path, tmp_path: Path
) -> None:
    make_project(project, "jobs:\n  hang:\n    run: python spawn.py\n", "spawn.py")
    driver = start(project, "hang", log=tmp_path / "out")
    try:
        grandchild = int(wait_for(project / "child.pid", driver))
        program = int(wait_for(project / "self.pid", driver))
    finally:
        driver.kill()
        driver.wait()

    assert gone(program), "the trial outlived its killed driver"
    assert gone(grandchild), "a process the trial started outlived the killed driver"


# -- 4. a program that logs to MLflow itself --------------------------------------------
SELF_LOGGING = """\
import json, os, sys, time
from pathlib import Path

import mlflow

params = dict(item.split("=", 1) for item in sys.argv[1:])
here = Path(__file__).resolve().parent
with (here / "executions.log").open("a") as log:
    log.write(json.dumps(params) + "\\n")
with mlflow.start_run():  # MLFLOW_RUN_ID: the run sweepflow made for this trial
    mlflow.log_metric("own", float(params["a"]))
if params["a"] == "2" and not (here / "killed-once").exists():
    (here / "ended").write_text(str(os.getpid()))
    time.sleep(60)  # its run is FINISHED already; the driver is killed now
"""


def test_a_self_logging_program_killed_mid_sweep_leaves_one_finished_run_per_trial(
    project: Path, tmp_path: Path
) -> None:
    make_project(
        project,
        """
        jobs:
          own:
            run: python own.py
            sets:
              - each: a=1:3
        """,
    )
    (project / "own.py").write_text(SELF_LOGGING)
    driver = start(project, "own", "-j", "3", log=tmp_path / "first.out")
    try:
        wait_for(project / "ended", driver)
    finally:
        driver.kill()
        driver.wait()
    (project / "killed-once").touch()

    again = subprocess.run(
        [*COMMAND, "own"], cwd=project, env=child_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip

    assert again.returncode == 0, again.stdout + again.stderr
    assert Counter(e["a"] for e in executions(project))["2"] == 2  # it did run again
    per_trial = finished_runs(project, "own")
    assert len(per_trial) == 3 and set(per_trial.values()) == {1}, per_trial


# -- 8. integrity of the cache ----------------------------------------------------------
TWO = """
jobs:
  two:
    run: python train.py
    sets:
      - each: a=1,2
"""


def _folders(project: Path, job: str) -> list[Path]:
    """The trial folders of ``job`` (holding the trial's logs and outputs)."""
    return sorted(p.parent for p in (project / ".sweepflow" / "runs" / job).glob("*/stdout.log"))


def _results(project: Path) -> list[Path]:
    return sorted((project / ".sweepflow" / "results").iterdir())


def test_a_corrupt_cached_result_is_reported_and_replaced(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(project, TWO, "train.py")
    assert main(["run", "two"]) == 0
    bad, _ = _results(project)
    bad.write_bytes(bad.read_bytes()[:-20])  # truncated
    capsys.readouterr()

    assert main(["run", "two"]) == 0

    err = capsys.readouterr().err
    assert "cached result is corrupt: re-running" in err
    assert sum(1 for e in executions(project)) == 3  # the corrupt one ran again
    assert main(["verify", "two"]) == 0  # and its result was replaced


def test_a_deleted_trial_folder_reruns_unless_told_not_to(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    make_project(project, TWO, "train.py")
    assert main(["run", "two"]) == 0
    folders = _folders(project, "two")
    shutil.rmtree(folders[0])
    capsys.readouterr()

    assert main(["run", "two", "--no-outputs-check"]) == 0
    assert len(executions(project)) == 2  # taken from the cache as asked
    assert main(["run", "two"]) == 0

    assert "outputs missing" in capsys.readouterr().err
    assert len(executions(project)) == 3
    assert folders[0].is_dir() and (folders[0] / "stdout.log").exists()


def test_verify_finds_and_repairs_what_a_crash_left(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    make_project(project, TWO, "train.py")
    assert main(["run", "two"]) == 0
    from sweepflow.cache.results import read_result

    first, second = _results(project)
    kept = Path(read_result(first).workdir)  # the folder of the result made corrupt
    lost = Path(read_result(second).workdir)
    first.write_text("garbage")
    shutil.rmtree(lost)
    (kept / "pid").write_text(json.dumps({"pid": 1, "start": -1, "host": "x"}))
    (project / ".sweepflow" / "results" / ".partial.123.tmp").write_text("{")
    capsys.readouterr()

    assert main(["verify"]) == 1
    found = capsys.readouterr().out
    for what in ("corrupt", "outputs missing", "pid file", "partial result"):
        assert what in found, found
    assert main(["verify", "--repair"]) == 0
    assert main(["verify"]) == 0
    assert main(["run", "two"]) == 0
    assert len(executions(project)) == 4  # both trials ran again


# -- 5. a full disk ---------------------------------------------------------------------
NOISY = """\
import sys

import sweepflow

a = float(sys.argv[1].split("=")[1])
print("x" * 100_000)  # 100 kB of log per trial: a 3 MB disk fills after a few trials
sweepflow.log_metrics({"score": a})
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Path:
    """A 3 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_with_one_line_and_leaves_nothing_running(
    small_disk: Path,
) -> None:
    make_project(
        small_disk,
        """
        jobs:
          fill:
            run: python noisy.py
            sets:
              - each: a=1:40
        """,
    )
    (small_disk / "noisy.py").write_text(NOISY)

    run = subprocess.run(
        [*COMMAND, "fill", "-j", "2"], cwd=small_disk, env=child_env(), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip

    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "Traceback" not in out and "Error logging to API" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no space left on the device holding" in errors[0], out
    assert f"df -h {small_disk}" in errors[0]
    counts = next(line for line in out.splitlines() if " done, " in line)
    done, failed, never = (
        int(re.search(rf"(\d+) {what}", counts).group(1))  # type: ignore[union-attr]
        for what in ("done", "failed", "not started")
    )
    assert done + failed + never == 40, counts  # every trial accounted for
    with sqlite3.connect(small_disk / ".sweepflow" / "mlflow.db") as db:
        statuses = Counter(status for (status,) in db.execute("SELECT status FROM runs"))
        left = db.execute("SELECT name FROM runs WHERE status IN ('RUNNING', 'SCHEDULED')")
        left = [name for (name,) in left]
    assert not left, f"{left} left open; {statuses}\n{out}"
    results = list((small_disk / ".sweepflow" / "results").iterdir())
    assert sum(finished_runs(small_disk, "fill").values()) == len(results) == done, statuses
