"""SIGKILL mid-workflow, then run again: the finished steps are cache hits, the killed
step runs, the store verifies clean, and ``gc`` clears what the killed run left.

A real driver process calls ``run_workflow`` (no Prefect: the store and catalog are
what a kill can break). Step ``c`` writes a marker and sleeps in the first run; the
test kills the driver then. Each step appends its name to ``calls.log`` when it runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sweepflow.store import Catalog, ObjectStore, gc, verify

PIPELINE = '''
"""Three steps; c sleeps while the marker's folder asks it to."""
import os
import time
from pathlib import Path

import sweepflow

HERE = Path(__file__).parent


def called(name):
    with open(HERE / "calls.log", "a") as handle:
        handle.write(name + "\\n")


@sweepflow.step(outputs={"x": "blob"})
def a(workspace: Path) -> dict[str, Path]:
    called("a")
    (workspace / "a.txt").write_text("a")
    return {"x": workspace / "a.txt"}


@sweepflow.step(inputs={"x": "blob"}, outputs={"y": "blob"})
def b(x: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    called("b")
    (workspace / "b.txt").write_text(x.path.read_text() + "b")
    return {"y": workspace / "b.txt"}


@sweepflow.step(inputs={"y": "blob"}, outputs={"z": "blob"})
def c(y: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    called("c")
    (workspace / "partial.txt").write_text("half-done")
    if os.environ.get("KILL_TEST_SLOW"):
        (HERE / "c.started").write_text("")
        time.sleep(120)
    (workspace / "c.txt").write_text(y.path.read_text() + "c")
    return {"z": workspace / "c.txt"}


pipeline = sweepflow.Workflow("kill_me", [a, b, c])
'''

DRIVER = """
import json
import sys

from sweepflow.workflow.run import import_workflow, run_workflow

project, state = sys.argv[1], sys.argv[2]
result = run_workflow(import_workflow("kill_pipe:pipeline", project), {}, project, state)
print(json.dumps({o.step: o.status for o in result.steps}))
"""

TIMEOUT = 60.0


def _driver(project: Path, slow: bool) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "KILL_TEST_SLOW"}
    if slow:
        env["KILL_TEST_SLOW"] = "1"
    return subprocess.Popen(
        [sys.executable, str(project / "driver.py"), str(project), str(project / "state")],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _calls(project: Path) -> list[str]:
    log = project / "calls.log"
    return log.read_text().split() if log.exists() else []


def test_sigkill_mid_workflow_then_rerun_reuses_finished_steps(project: Path) -> None:
    (project / "kill_pipe.py").write_text(PIPELINE.lstrip())
    (project / "driver.py").write_text(DRIVER.lstrip())
    store = project / "state" / "store"

    child = _driver(project, slow=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (project / "c.started").exists():
            if child.poll() is not None:
                out, err = child.communicate()
                raise AssertionError(f"driver exited {child.returncode} early:\n{out}\n{err}")
            assert time.monotonic() < deadline, "step c never started"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=TIMEOUT)
    assert child.returncode == -signal.SIGKILL
    assert _calls(project) == ["a", "b", "c"]
    leftovers = sorted(p.name for p in (store / "tmp").iterdir())
    assert leftovers and all(name.startswith("c-") for name in leftovers), leftovers

    rerun = _driver(project, slow=False)
    try:
        out, err = rerun.communicate(timeout=TIMEOUT)
    finally:
        if rerun.poll() is None:
            rerun.kill()
            rerun.communicate()
    assert rerun.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"a": "hit", "b": "hit", "c": "ran"}
    assert _calls(project) == ["a", "b", "c", "c"]  # a and b did not run again

    objects = ObjectStore(store)
    assert verify(objects) == []
    assert sorted(objects.get(d).path.read_text() for d in objects.digests()) == [
        "a",
        "ab",
        "abc",
    ]
    # What the killed run left (its workspace of c, its lease) is not an object; gc
    # clears it once it is older than the ttl (at least a day), and deletes nothing
    # reachable: the re-run is a root holding all three objects.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    with Catalog(store) as catalog:
        assert gc(catalog, ttl_days=1, dry_run=True, now=later).rows == []
        assert gc(catalog, ttl_days=1, dry_run=False, now=later).rows == []
    assert list((store / "tmp").iterdir()) == []
    assert list((store / "leases").glob("*.lease")) == []
    assert verify(objects) == [] and len(list(objects.digests())) == 3
