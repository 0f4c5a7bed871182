"""Paths a user gives stay where they belong: artifact folders inside the run's
artifacts, ``watch`` globs inside the project folder.

``sweepflow.log_artifact(f, "../../..")`` (or an absolute folder) is refused in the
trial program, before anything is recorded; a ``watch`` glob that leaves the project or
that a glob cannot take is refused when the job file is loaded, with its file:line and
key path, so the dry run and the run fail alike, before anything starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepflow import JobError, JobFileError, SweepflowError, load_jobs
from sweepflow.cache.fingerprint import code_files, watch_glob
from sweepflow.reporting import channel
from sweepflow.reporting.channel import ArtifactPathError, artifact_folder, log_artifact

ROOT = Path(__file__).resolve().parents[1]


def sweepflow_child(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m sweepflow ARGS`` in a fresh process, in ``project``."""
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "SWEEPFLOW_HOME": ""},
        check=False,
    )


# ---------------------------------------------------------------------------
# Artifact folders: relative, inside the run's artifacts
# ---------------------------------------------------------------------------

# (id, artifact_path, the folder recorded, or the error's words)
ARTIFACT_PATHS = [
    ("top", None, None),
    ("empty-is-top", "", None),
    ("dot-is-top", ".", None),
    ("folder", "plots", "plots"),
    ("normalised", "plots/./epoch-1/", "plots/epoch-1"),
    ("inner-dotdot-stays-inside", "plots/../logs", "logs"),
    ("dotted-name", "..plots", "..plots"),
    ("parent", "..", "leaves the run's artifacts"),
    ("up-three", "../../..", "leaves the run's artifacts"),
    ("down-then-out", "plots/../../x", "leaves the run's artifacts"),
    ("windows-separators", "plots\\..\\..\\x", "leaves the run's artifacts"),
    ("absolute", "/tmp/elsewhere", "is absolute"),
    ("double-slash", "//server/share", "is absolute"),
    ("drive", "C:/Users", "is absolute"),
]


@pytest.mark.parametrize(
    ("given", "expected"), [a[1:] for a in ARTIFACT_PATHS], ids=[a[0] for a in ARTIFACT_PATHS]
)
def test_artifact_folder(given: str | None, expected: str | None) -> None:
    if expected is None or not expected.startswith(("leaves", "is absolute")):
        assert artifact_folder(given) == expected
        return
    with pytest.raises(ArtifactPathError) as caught:
        artifact_folder(given)
    message = str(caught.value)
    assert f"artifact path {given!r} {expected}" in message
    assert "give a folder inside the run's artifacts" in message and "'plots'" in message
    assert isinstance(caught.value, SweepflowError) and isinstance(caught.value, ValueError)


ESCAPING = [("dotdot", "../../.."), ("absolute", "ABSOLUTE")]


@pytest.mark.parametrize("folder", [e[1] for e in ESCAPING], ids=[e[0] for e in ESCAPING])
def test_trial_program_is_refused_and_records_nothing(tmp_path: Path, folder: str) -> None:
    """A real trial process (``SWEEPFLOW_REPORT`` set, as the flow starts it) fails with
    the error; its report holds no artifact line, so the flow copies nothing."""
    outside = tmp_path / "outside"
    folder = str(outside) if folder == "ABSOLUTE" else folder
    (tmp_path / "plot.txt").write_text("data")
    report = tmp_path / "trial" / "report.jsonl"
    report.parent.mkdir()
    program = tmp_path / "prog.py"
    program.write_text(
        "import sys, sweepflow\n"
        "sweepflow.log_metrics({'x': 1.0})\n"
        "sweepflow.log_artifact('plot.txt', sys.argv[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SWEEPFLOW_REPORT": str(report)}
    done = subprocess.run(
        [sys.executable, str(program), folder],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"sweepflow.reporting.channel.ArtifactPathError: artifact path {folder!r}"
    )
    kinds = [json.loads(line)["kind"] for line in report.read_text().splitlines()]
    assert kinds == ["metrics"], "the artifact was not recorded"
    assert not outside.exists()


def test_by_hand_is_refused_before_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWEEPFLOW_REPORT", raising=False)

    def no_mlflow() -> None:
        raise AssertionError("MLflow must not be reached")

    monkeypatch.setattr(channel, "_by_hand", no_mlflow)
    (tmp_path / "plot.txt").write_text("data")
    with pytest.raises(ArtifactPathError, match=r"is absolute"):
        log_artifact(tmp_path / "plot.txt", str(tmp_path / "elsewhere"))
    with pytest.raises(ArtifactPathError, match=r"leaves the run's artifacts"):
        log_artifact(tmp_path / "plot.txt", "../..")


def test_recorded_folder_is_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("SWEEPFLOW_REPORT", str(report))
    (tmp_path / "plot.txt").write_text("data")
    log_artifact(tmp_path / "plot.txt", "plots/./a/../b/")
    (line,) = report.read_text().splitlines()
    assert json.loads(line)["artifact_path"] == "plots/b"


def test_flow_copies_nothing_outside_the_run(project: Path, prefect_api: str) -> None:
    """End to end: a trial asking for an absolute artifact folder fails, and no file
    lands there (before the fix the flow copied it to that folder)."""
    from sweepflow.cli.main import main

    outside = project.parent / "escaped"
    (project / "prog.py").write_text(
        "import sweepflow\n"
        "open('plot.txt', 'w').write('data')\n"
        f"sweepflow.log_artifact('plot.txt', {str(outside)!r})\n"
    )
    (project / "sweepflow.yaml").write_text("jobs:\n  art:\n    run: python prog.py\n")
    assert main(["run", "art"]) == 1
    assert not outside.exists()
    (log,) = (project / ".sweepflow" / "runs" / "art").glob("*/stderr.log")
    assert "ArtifactPathError: artifact path" in log.read_text()


# ---------------------------------------------------------------------------
# watch globs: inside the project folder, usable by a glob
# ---------------------------------------------------------------------------

# (id, watch value in the job file, the problem's words)
BAD_WATCH = [
    ("absolute-outside", "['/etc/passwd']", "'/etc/passwd' is outside the project folder"),
    ("dotdot", "['../shared/*.py']", "'../shared/*.py' leaves the project folder"),
    ("dotdot-after-descending", "['src/../../x.py']", "leaves the project folder"),
    ("dotdot-after-wildcard", "['*/../../x.py']", "'..' after a wildcard"),
    ("dotdot-after-globstar", "['**/..']", "'..' after a wildcard"),
    ("string-form", "'*.py ../up.py'", "'../up.py' leaves the project folder"),
    ("empty", "['']", "'' names no file"),
    ("project-itself", "['.']", "names the project folder, not files"),
    ("globstar-in-name", "['src/**.py']", "'**' must be a whole part of the path"),
    ("home", "['~/data/*.csv']", "starts with '~', which is not expanded"),
]


def write_job(folder: Path, watch: str) -> Path:
    path = folder / "sweepflow.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            jobs:
              other:
                run: python other.py
              w:
                run: python train.py
                watch: {watch}
            """
        )
    )
    return path


@pytest.mark.parametrize(
    ("watch", "words"), [b[1:] for b in BAD_WATCH], ids=[b[0] for b in BAD_WATCH]
)
def test_bad_watch_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, watch: str, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_job(tmp_path, watch)
    with pytest.raises(JobFileError) as caught:
        load_jobs()
    (problem,) = caught.value.problems
    index = 1 if watch.startswith("'*.py") else 0
    assert problem.startswith(f"Invalid value for jobs.w.watch[{index}] at sweepflow.yaml:6: ")
    assert words in problem
    assert "\n" not in problem


# A glob pathlib cannot take raised NotImplementedError, IndexError or ValueError from
# deep inside the fingerprint; now every one is a JobError saying why.
UNUSABLE = ["/etc/passwd", ".", "", "src/**.py", "../x", "a\0b"]


@pytest.mark.parametrize("pattern", UNUSABLE, ids=[repr(p) for p in UNUSABLE])
def test_code_files_never_reaches_pathlib_with_a_bad_glob(tmp_path: Path, pattern: str) -> None:
    with pytest.raises(JobError):
        code_files("python train.py", tmp_path, [pattern])


def test_good_globs_are_made_relative(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.yaml").write_text("a: 1")
    (tmp_path / "train.py").write_text("")
    inside = str(tmp_path / "conf" / "*.yaml")
    assert watch_glob(inside, tmp_path) == "conf/*.yaml"
    found = code_files("python train.py", tmp_path, [inside, "conf/../train.py"])
    assert found == [(tmp_path / "conf" / "a.yaml").resolve(), (tmp_path / "train.py").resolve()]


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_dry_run_and_run_fail_alike_before_anything_starts(tmp_path: Path, dry: bool) -> None:
    write_job(tmp_path, "['/etc/passwd']")
    (tmp_path / "train.py").write_text("")
    done = sweepflow_child(tmp_path, "run", "w", *(["--dry-run"] if dry else []))
    assert (done.returncode, done.stdout) == (2, "")
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: Invalid value for jobs.w.watch[0] at sweepflow.yaml:6: ")
    assert "'/etc/passwd' is outside the project folder" in line
    assert not (tmp_path / ".sweepflow").exists(), "nothing started"
