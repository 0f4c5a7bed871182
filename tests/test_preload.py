"""Warm starts (``preload:``): ``run: python`` trials forked from a preloaded interpreter.

Real processes throughout: most tests run one trial with :func:`sweepflow.execution.trial.execute`
(no Prefect), one runs a sweep through the run-job flow, and the job-file errors go
through the CLI. ``colorsys`` stands for a heavy module: no program here imports it, so
finding it in ``sys.modules`` proves the trial was forked from the zygote.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from sweepflow.cli.main import main
from sweepflow.execution.trial import TrialFailed, TrialSpec, accept, execute, terminate_all
from sweepflow.plan.expansion import compile_job
from sweepflow.spec.jobs import load_jobs

PROGRAMS = Path(__file__).resolve().parent / "programs"

PROBE = """\
import json, os, sys

print("args", sys.argv[1:])
print("warm" if "colorsys" in sys.modules else "cold", file=sys.stderr)
record = {"args": sys.argv[1:], "ppid": os.getppid(), "pid": os.getpid(),
          "colorsys": "colorsys" in sys.modules, "name": __name__,
          "job": os.environ.get("SWEEPFLOW_JOB"), "cwd": os.getcwd()}
print(json.dumps(record), file=open(os.environ["SWEEPFLOW_TRIAL_DIR"] + "/probe.json", "w"))
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _spec(project: Path, argv: list[str], name: str = "t", **fields) -> TrialSpec:
    """The spec of one run: trial of ``argv`` in ``project``, preloading colorsys."""
    fields.setdefault("preload", ("colorsys",))
    return TrialSpec(
        job="j",
        kind="run",
        index=0,
        argv=tuple(argv),
        digest=name,
        cache_key=name,
        workdir=str(project / ".sweepflow" / "runs" / "j" / name),
        project_dir=str(project),
        **fields,
    )


def _probe(spec: TrialSpec) -> dict:
    return json.loads((Path(spec.workdir) / "probe.json").read_text())


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _wait_for(path: Path, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)
    return path.read_text()


# -- the same results, from a fork -------------------------------------------------------
@pytest.mark.usefixtures("prefect_api")
def test_a_preloaded_sweep_gives_the_same_results_as_a_cold_one(project: Path) -> None:
    from flows.run_job import run_job

    _write(
        project,
        "prog.py",
        """\
        import json, os, sys
        import sweepflow

        a = int(sys.argv[1].split("=")[1])
        print(f"a={a} square={a * a}")
        sweepflow.log_metrics({"square": a * a})
        with open(os.environ["SWEEPFLOW_TRIAL_DIR"] + "/probe.json", "w") as f:
            json.dump({"ppid": os.getppid(), "colorsys": "colorsys" in sys.modules}, f)
        """,
    )
    job_file = _write(
        project,
        "sweepflow.yaml",
        """\
        jobs:
          cold:
            run: python prog.py
            sets: [{each: "a=1:4"}]
          warm:
            run: python prog.py
            preload: colorsys json
            sets: [{each: "a=1:4"}]
        """,
    )

    results = {job: run_job(job=job, job_file=str(job_file)) for job in ("cold", "warm")}

    def outputs(job: str) -> dict[str, tuple]:
        rows = {}
        for folder in (project / ".sweepflow" / "runs" / job).iterdir():
            if (folder / "probe.json").exists():
                probe = json.loads((folder / "probe.json").read_text())
                stdout = (folder / "stdout.log").read_text()
                rows[stdout] = (probe["colorsys"], probe["ppid"])
        return rows

    cold, warm = outputs("cold"), outputs("warm")
    assert sorted(cold) == sorted(warm) == [f"a={a} square={a * a}\n" for a in range(1, 5)]
    assert {flag for flag, _ in cold.values()} == {False}  # each started from scratch
    assert {ppid for _, ppid in cold.values()} == {os.getpid()}
    assert {flag for flag, _ in warm.values()} == {True}  # forked from the zygote
    (zygote,) = {ppid for _, ppid in warm.values()}  # one zygote served them all
    assert zygote != os.getpid()
    metrics = {
        job: sorted(row["metrics"]["square"] for row in result["trials"])
        for job, result in results.items()
    }
    assert metrics["cold"] == metrics["warm"] == [1, 4, 9, 16]


def test_the_forked_program_sees_what_python_would_give_it(project: Path) -> None:
    _write(project, "prog.py", PROBE)
    argv = ["a b", "$(touch pwned)", "`touch pwned`", "'", '"', ";", "x\ny", "*", ">pwned"]
    spec = _spec(project, ["python", "prog.py", *argv], env={"EXTRA": "1"})

    result = execute(spec)

    probe = _probe(spec)
    assert result.returncode == 0
    assert probe["args"] == argv  # verbatim: no shell anywhere
    assert not list(project.parent.rglob("*pwned*"))
    assert probe["colorsys"] and probe["ppid"] != os.getpid()
    assert (probe["name"], probe["job"], probe["cwd"]) == ("__main__", "j", spec.workdir)
    assert not (Path(spec.workdir) / "pid").exists()  # removed when the program ended
    assert (Path(spec.workdir) / "stderr.log").read_text() == "warm\n"


def test_python_dash_m_runs_the_module_as_main(project: Path) -> None:
    _write(project, "pkg/__init__.py", "")
    _write(project, "pkg/mod.py", PROBE + "print(__spec__.name)\n")
    spec = _spec(project, ["python", "-u", "-m", "pkg.mod", "k=v"])

    execute(spec)

    probe = _probe(spec)
    assert (probe["name"], probe["args"], probe["colorsys"]) == ("__main__", ["k=v"], True)
    assert (Path(spec.workdir) / "stdout.log").read_text() == "args ['k=v']\npkg.mod\n"


# -- failures look like those of a new process --------------------------------------------
EXITS = [
    ("exit-3", "import sys\nprint('bad input', file=sys.stderr)\nsys.exit(3)\n", 3, "bad input"),
    ("exit-message", "import sys\nsys.exit('giving up')\n", 1, "giving up"),
    ("exception", "def f():\n    raise ValueError('boom')\nf()\n", 1, "ValueError: boom"),
]


@pytest.mark.parametrize(
    ("source", "code", "tail"), [e[1:] for e in EXITS], ids=[e[0] for e in EXITS]
)
def test_a_failing_program_fails_its_trial(
    project: Path, source: str, code: int, tail: str
) -> None:
    _write(project, "prog.py", source)
    spec = _spec(project, ["python", "prog.py"])

    with pytest.raises(TrialFailed, match=f"program exited with code {code}") as caught:
        execute(spec)

    assert tail in str(caught.value)
    stderr = (Path(spec.workdir) / "stderr.log").read_text()
    if "raise" in source:  # the traceback starts in the program, as python's would
        assert stderr.splitlines()[1].startswith(f'  File "{project / "prog.py"}", line 3')
        assert "_zygote" not in stderr and "runpy" not in stderr


def test_a_timeout_kills_the_forked_process_group(project: Path) -> None:
    shutil.copy(PROGRAMS / "spawn.py", project / "spawn.py")  # starts `sleep 60`, then hangs
    spec = _spec(project, ["python", "spawn.py"], timeout=1)
    started = time.monotonic()

    with pytest.raises(TrialFailed, match="timed out after 1 s; its process group was killed"):
        execute(spec)

    assert time.monotonic() - started < 30  # cut off, not left to its 60 s
    pid = int((project / "self.pid").read_text())
    grandchild = int((project / "child.pid").read_text())
    assert _gone(pid) and _gone(grandchild)


def test_terminate_all_stops_forked_trials(project: Path) -> None:
    _write(project, "prog.py", "import time\ntime.sleep(30)\n")
    spec = _spec(project, ["python", "prog.py"])
    errors: list[BaseException] = []

    def run() -> None:
        try:
            execute(spec)
        except TrialFailed as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    pid = json.loads(_wait_for(Path(spec.workdir) / "pid"))["pid"]
    assert os.getpgid(pid) == pid  # a group of its own, as stop_orphan expects
    assert terminate_all() == 1
    thread.join(10)

    assert "program exited with code -15" in str(errors[0])
    with pytest.raises(TrialFailed, match="the run is stopping"):
        execute(spec)  # nothing more starts in this process ...
    accept()
    _write(project, "prog.py", "pass\n")
    assert execute(spec).returncode == 0  # ... until a new run accepts units again


# -- the zygote's own failures --------------------------------------------------------------
def test_a_missing_preload_module_fails_every_trial_clearly(project: Path) -> None:
    _write(project, "prog.py", PROBE)
    for name in ("a", "b"):
        spec = _spec(project, ["python", "prog.py"], name, preload=("json", "no_such_mod"))
        started = time.monotonic()
        with pytest.raises(TrialFailed) as caught:
            execute(spec)
        assert time.monotonic() - started < 30  # fails, rather than waiting on a zygote
        message = str(caught.value)
        assert "preload: cannot import 'no_such_mod'" in message
        assert "ModuleNotFoundError" in message and "\n" not in message


def test_a_killed_zygote_is_replaced(project: Path) -> None:
    _write(project, "prog.py", PROBE)
    first = _spec(project, ["python", "prog.py"], "first")
    execute(first)
    zygote = _probe(first)["ppid"]
    os.kill(zygote, signal.SIGKILL)
    assert _gone(zygote)

    second = _spec(project, ["python", "prog.py"], "second")
    execute(second)

    assert _probe(second)["colorsys"] and _probe(second)["ppid"] not in (zygote, os.getpid())


def test_a_zygote_dying_mid_trial_fails_that_trial_only(project: Path) -> None:
    _write(
        project,
        "prog.py",
        """\
        import os, signal, subprocess, time
        child = subprocess.Popen(["sleep", "60"])
        with open("child.pid", "w") as f:
            f.write(str(child.pid))
        os.kill(os.getppid(), signal.SIGKILL)  # the zygote
        time.sleep(60)
        """,
    )
    spec = _spec(project, ["python", "prog.py"], "dies")

    with pytest.raises(TrialFailed, match="died while the program"):
        execute(spec)

    assert _gone(int((Path(spec.workdir) / "child.pid").read_text()))
    _write(project, "probe.py", PROBE)
    after = _spec(project, ["python", "probe.py"], "after")
    execute(after)
    assert _probe(after)["colorsys"]


def _trial_in_a_child(
    project: Path, preload: tuple[str, ...] | None = None
) -> tuple[subprocess.Popen, TrialSpec]:
    """A child process running one trial that prints its parent's pid and sleeps."""
    _write(project, "prog.py", "import os, time\nprint(os.getppid(), flush=True)\ntime.sleep(60)\n")
    options = {} if preload is None else {"preload": preload}
    spec = _spec(project, ["python", "prog.py"], **options)
    code = (
        "import sys; from sweepflow.execution.trial import *; "
        "execute(TrialSpec.model_validate_json(sys.argv[1]))"
    )
    return subprocess.Popen([sys.executable, "-c", code, spec.model_dump_json()]), spec


@pytest.mark.parametrize("preload", [("colorsys",), ()], ids=["warm", "new-process"])
def test_a_trial_stops_when_the_process_running_it_is_killed(
    project: Path, preload: tuple[str, ...]
) -> None:
    parent, spec = _trial_in_a_child(project, preload)
    try:
        pid = json.loads(_wait_for(Path(spec.workdir) / "pid"))["pid"]
        zygote = int(_wait_for(Path(spec.workdir) / "stdout.log"))
    finally:
        parent.kill()
        parent.wait()

    assert _gone(pid) and _gone(zygote)


def test_a_trial_stops_when_its_zygote_is_killed_even_if_no_one_is_left_to_stop_it(
    project: Path,
) -> None:
    parent, spec = _trial_in_a_child(project)
    try:
        pid = json.loads(_wait_for(Path(spec.workdir) / "pid"))["pid"]
        zygote = int(_wait_for(Path(spec.workdir) / "stdout.log"))
        os.kill(parent.pid, signal.SIGSTOP)  # the requester cannot kill the trial's group
        os.kill(zygote, signal.SIGKILL)
        assert _gone(pid)  # the kernel stopped it (PR_SET_PDEATHSIG)
    finally:
        parent.kill()
        parent.wait()


def test_importing_sweepflow_registers_no_exit_or_fork_handlers() -> None:
    code = """\
import atexit, os
before = atexit._ncallbacks()
import sweepflow, sweepflow.execution.trial, sweepflow.spec.jobs
from sweepflow.execution import warm
print(atexit._ncallbacks() - before, warm._HOOKED)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["0", "False"]


# -- job files ---------------------------------------------------------------------------
BAD_JOBS = [
    ("call-job", "call: m:f", "is a call: job"),
    ("submit-job", "submit: python handler.py", "is a submit: job"),
    ("not-python", "run: bash train.sh", "'bash' is not a python interpreter"),
    ("python-dash-c", "run: python -c 'print(1)'", "python option '-c'"),
    ("no-script", "run: python -u", "names no script or module"),
    ("per-batch", "run: python app.py\n    per: batch", "per: batch"),
]


@pytest.mark.parametrize(("body", "words"), [b[1:] for b in BAD_JOBS], ids=[b[0] for b in BAD_JOBS])
def test_preload_on_a_job_that_cannot_fork_is_one_error_line(
    project: Path, capsys: pytest.CaptureFixture[str], body: str, words: str
) -> None:
    _write(project, "sweepflow.yaml", f"jobs:\n  j:\n    {body}\n    preload: [numpy]\n")

    code = main(["run", "j"])

    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: Job 'j' ") and words in err
    assert "(jobs.j.preload at sweepflow.yaml:" in err


def test_preload_lists_and_strings(project: Path) -> None:
    _write(
        project,
        "sweepflow.yaml",
        """\
        jobs:
          a: {run: python a.py, preload: "numpy  pandas.core"}
          b: {run: python -B -m a, preload: [numpy]}
          c: {run: python a.py, preload: []}
          d: {run: python a.py, preload: "numpy, pandas"}
        """,
    )
    with pytest.raises(ValueError, match=r"jobs\.d\.preload at sweepflow.yaml:5: 'numpy,'"):
        load_jobs()
    (project / "sweepflow.yaml").write_text(
        (project / "sweepflow.yaml").read_text().replace('"numpy, pandas"', "numpy")
    )
    jobs = load_jobs().jobs
    assert [jobs[k].preload for k in "abcd"] == [
        ("numpy", "pandas.core"),
        ("numpy",),
        (),
        ("numpy",),
    ]
    for job in jobs.values():
        compile_job(job)  # all valid
