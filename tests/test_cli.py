"""Tests of the ``sweepflow`` command line: dry runs, job lists, ``show``, and errors.

Most tests call :func:`sweepflow.cli.main.main` in-process inside a temporary project; a
few start a real ``python -m sweepflow`` to check what a user's shell would see (exit
code, one ``error:`` line, no traceback unless ``--debug``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
import yaml

import sweepflow
from sweepflow import JobError
from sweepflow.cli.main import main

PROJECT = """
jobs:
  train:
    run: python train.py
    sets:
      - each: model=cnn,mlp
        all: lr=0.1,0.01
  quoted:
    run: python train.py
    add: "note='hello world'"
  fit:
    call: train:fit
    sets:
      - zip: lr=0.1,0.01 epochs=20,50
  handler:
    submit: python submit.py train.py
    sets:
      - each: model=cnn
        all: lr=0.01,0.05
  hydra:
    run: python train.py
    per: batch
    add: hydra/launcher=basic
    sets:
      - each: model=cnn,mlp
        all: lr=1:3:m
  broken:
    run: python train.py
    sets:
      - each: lr=5:3
  nocmd:
    sets:
      - each: a=1
"""


def write(directory: Path, text: str, name: str = "sweepflow.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding PROJECT as ``sweepflow.yaml``; the cwd."""
    write(tmp_path, PROJECT)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    monkeypatch.setenv("COLUMNS", "300")  # rich tables: no wrapping of the reasons
    return tmp_path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``sweepflow ARGS`` in-process; return (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def assert_one_error_line(code: int, out: str, err: str) -> str:
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---------------------------------------------------------------------------
# run --dry-run: one line per trial with the exact argv, then the summary
# ---------------------------------------------------------------------------

TRAIN_LINES = [
    "python train.py model=cnn lr=0.1",
    "python train.py model=cnn lr=0.01",
    "python train.py model=mlp lr=0.1",
    "python train.py model=mlp lr=0.01",
    "4 trials in 2 batches",
]

DRY_RUNS = [
    ("train", ["run", "train", "--dry-run"], TRAIN_LINES),
    ("short-flag-n", ["run", "train", "-n"], TRAIN_LINES),
    ("option-before-job", ["run", "--dry-run", "train"], TRAIN_LINES),
    (
        "override-pins-a-value",
        ["run", "train", "lr=0.5", "--dry-run"],
        [
            "python train.py model=cnn lr=0.5",
            "python train.py model=mlp lr=0.5",
            "2 trials in 2 batches",
        ],
    ),
    (
        "overrides-widen-and-pin",
        ["run", "train", "model=cnn", "lr=0.1,0.01,0.001", "--dry-run"],
        [
            "python train.py model=cnn lr=0.1",
            "python train.py model=cnn lr=0.01",
            "python train.py model=cnn lr=0.001",
            "3 trials in 3 batches",
        ],
    ),
    (
        "override-adds-a-key",
        ["run", "train", "model=cnn", "seed=0:1", "--dry-run"],
        [
            "python train.py model=cnn seed=0 lr=0.1",
            "python train.py model=cnn seed=0 lr=0.01",
            "python train.py model=cnn seed=1 lr=0.1",
            "python train.py model=cnn seed=1 lr=0.01",
            "4 trials in 2 batches",
        ],
    ),
    (
        "items-after-dashdash-verbatim",
        ["run", "train", "model=cnn", "lr=0.1", "--dry-run", "--", "--flag", "two words"],
        ["python train.py model=cnn lr=0.1 --flag 'two words'", "1 trial in 1 batch"],
    ),
    (
        "value-with-space-is-quoted",
        ["run", "quoted", "--dry-run"],
        ["python train.py 'note=hello world'", "1 trial in 1 batch"],
    ),
    (
        "call-prints-function-call",
        ["run", "fit", "--dry-run"],
        [
            "train:fit(['lr=0.1', 'epochs=20'])",
            "train:fit(['lr=0.01', 'epochs=50'])",
            "2 trials in 2 batches",
        ],
    ),
    (
        "call-with-override",
        ["run", "fit", "epochs=7", "--dry-run"],
        [
            "train:fit(['epochs=7', 'lr=0.1'])",
            "train:fit(['epochs=7', 'lr=0.01'])",
            "2 trials in 2 batches",
        ],
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), [r[1:] for r in DRY_RUNS], ids=[r[0] for r in DRY_RUNS]
)
def test_dry_run_prints_each_trial(
    project: Path, cli, args: list[str], expected: list[str]
) -> None:
    code, out, err = cli(*args)
    assert (code, err) == (0, "")
    assert out.splitlines() == expected


def test_dry_run_argv_round_trips_through_the_shell(project: Path, cli) -> None:
    _, out, _ = cli("run", "quoted", "--dry-run", "--", "a;b", "$HOME")
    assert shlex.split(out.splitlines()[0]) == [
        "python",
        "train.py",
        "note=hello world",
        "a;b",
        "$HOME",
    ]


def test_dry_run_writes_nothing(project: Path, cli) -> None:
    before = sorted(project.rglob("*"))
    for job in ("train", "fit", "handler", "hydra"):
        assert cli("run", job, "--dry-run")[0] == 0
    assert sorted(project.rglob("*")) == before


def test_dry_run_json_lines(project: Path, cli) -> None:
    code, out, _ = cli("run", "train", "--dry-run", "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    *trials, last = records
    assert [r["params"] for r in trials] == [
        {"model": "cnn", "lr": "0.1"},
        {"model": "cnn", "lr": "0.01"},
        {"model": "mlp", "lr": "0.1"},
        {"model": "mlp", "lr": "0.01"},
    ]
    assert trials[1]["argv"] == ["python", "train.py", "model=cnn", "lr=0.01"]
    assert last["summary"]["trials"] == 4 and last["summary"]["batches"] == 2


def test_submit_dry_run_shows_handler_and_parameter_file(project: Path, cli) -> None:
    code, out, _ = cli("run", "handler", "--dry-run", "--", "--partition=gpu")
    assert code == 0
    command, header, *rest = out.splitlines()
    argv = shlex.split(command)
    assert argv[:4] == ["python", "submit.py", "train.py", "--partition=gpu"]
    param_file = Path(argv[-1])
    assert re.fullmatch(r"params-[0-9a-f]+\.jsonl", param_file.name)
    assert header == f"# {param_file.name} (2 lines, one JSON object each):"
    assert rest == [
        '{"params": {"model": "cnn", "lr": "0.01"}, "args": ["model=cnn", "lr=0.01"]}',
        '{"params": {"model": "cnn", "lr": "0.05"}, "args": ["model=cnn", "lr=0.05"]}',
        "2 trials in 1 batch",
    ]


def test_per_batch_prints_multirun_commands(project: Path, cli) -> None:
    code, out, _ = cli("run", "hydra", "--dry-run")
    assert code == 0
    *commands, summary = out.splitlines()
    assert summary == "6 trials in 2 batches"
    argvs = [shlex.split(line) for line in commands]
    assert [argv[:5] for argv in argvs] == [
        ["python", "train.py", "--multirun", "model=cnn", "lr=1e-3,2e-3,3e-3"],
        ["python", "train.py", "--multirun", "model=mlp", "lr=1e-3,2e-3,3e-3"],
    ]
    for argv in argvs:
        assert argv[5] == "hydra.job.name=hydra"
        assert argv[6].startswith("hydra.sweep.dir=")
        assert argv[7:] == ["hydra/launcher=basic"]
    assert argvs[0][6] != argvs[1][6]  # each batch gets its own sweep folder


# ---------------------------------------------------------------------------
# Which job file is read
# ---------------------------------------------------------------------------


def test_file_option_reads_another_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    (tmp_path / "conf").mkdir()
    path = write(
        tmp_path / "conf", "jobs:\n  other:\n    run: echo\n    sets:\n      - each: x=1,2\n"
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("run", "other", "--dry-run", "--file", str(path))
    assert code == 0
    assert out.splitlines() == ["echo x=1", "echo x=2", "2 trials in 2 batches"]


def test_hydraflow_yaml_used_when_no_sweepflow_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    write(
        tmp_path,
        "jobs:\n  train:\n    run: python app.py\n    steps:\n      - batch: a=1\n",
        "hydraflow.yaml",
    )
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("run", "train", "--dry-run")
    assert (code, out.splitlines()) == (0, ["python app.py a=1", "1 trial in 1 batch"])


# ---------------------------------------------------------------------------
# jobs and show
# ---------------------------------------------------------------------------


def table_rows(out: str) -> dict[str, list[str]]:
    """Rows of a rich table by their first cell."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            rows[cells[0]] = cells[1:]
    return rows


JOB_ROWS = [
    ("train", ["run", "python train.py", "4", "2", "ok"]),
    ("fit", ["call", "train:fit", "2", "2", "ok"]),
    ("handler", ["submit", "python submit.py train.py", "2", "1", "ok"]),
    ("hydra", ["run", "python train.py", "6", "2", "ok"]),
]


@pytest.mark.parametrize(("job", "cells"), JOB_ROWS, ids=[r[0] for r in JOB_ROWS])
def test_jobs_lists_valid_jobs_with_counts(project: Path, cli, job: str, cells: list[str]) -> None:
    code, out, _ = cli("jobs")
    assert code == 0
    assert table_rows(out)[job] == cells


INVALID_ROWS = [
    ("broken", ["invalid", "jobs.broken.sets[0].each", "sweepflow.yaml:29", "lr=5:3"]),
    ("nocmd", ["invalid", "run / call / submit", "jobs.nocmd"]),
]


@pytest.mark.parametrize(("job", "words"), INVALID_ROWS, ids=[r[0] for r in INVALID_ROWS])
def test_jobs_marks_invalid_job_with_reason(project: Path, cli, job: str, words: list[str]) -> None:
    code, out, _ = cli("jobs")
    assert code == 0
    assert table_rows(out)[job][-1] == "invalid"
    # The full reason follows the table on a line of its own, never cut by the width.
    (reason,) = [line for line in out.splitlines() if line.startswith(f"invalid {job}: ")]
    for word in words:
        assert word in reason


def test_show_prints_resolved_sets(project: Path, cli) -> None:
    code, out, _ = cli("show", "train")
    assert code == 0
    shown = yaml.safe_load(out)
    assert list(shown) == ["train"]
    assert shown["train"]["sets"] == [
        {
            "each": [{"model": ["cnn", "mlp"]}],
            "all": {"lr": ["0.1", "0.01"]},
            "batches": 2,
            "trials": 4,
        }
    ]
    assert (shown["train"]["batches"], shown["train"]["trials"]) == (2, 4)
    assert shown["train"]["run"] == "python train.py"


def test_show_without_job_shows_all_and_marks_invalid(project: Path, cli) -> None:
    code, out, _ = cli("show")
    assert code == 0
    shown = yaml.safe_load(out)
    assert list(shown) == ["train", "quoted", "fit", "handler", "hydra", "broken", "nocmd"]
    assert "after stop" in shown["broken"]["invalid"]
    assert "invalid" not in shown["train"]


# ---------------------------------------------------------------------------
# Errors: exit code 2, exactly one `error:` line, no traceback
# ---------------------------------------------------------------------------

ERRORS = [
    ("unknown-job", ["run", "trian", "--dry-run"], ["No job 'trian'", "did you mean 'train'"]),
    ("show-unknown-job", ["show", "trian"], ["did you mean 'train'"]),
    ("override-without-equals", ["run", "train", "lr", "--dry-run"], ["'lr'", "="]),
    ("override-bad-range", ["run", "train", "lr=5:3", "--dry-run"], ["lr=5:3", "column"]),
    (
        "bad-sweep-in-set",
        ["run", "broken", "--dry-run"],
        ["jobs.broken.sets[0].each", "sweepflow.yaml:29", "column"],
    ),
    ("no-command", ["run", "nocmd", "--dry-run"], ["exactly one", "jobs.nocmd"]),
    ("call-job-with-dashdash", ["run", "fit", "--dry-run", "--", "--x"], ["--", "call"]),
    ("unknown-option", ["run", "train", "--nope"], ["--nope"]),
    ("missing-job-argument", ["run"], ["Missing argument"]),
    ("unknown-command", ["trian"], ["trian"]),
    ("missing-file-option", ["jobs", "--file", "nope.yaml"], ["nope.yaml"]),
]


@pytest.mark.parametrize(("args", "words"), [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS])
def test_errors_are_one_line(project: Path, cli, args: list[str], words: list[str]) -> None:
    line = assert_one_error_line(*cli(*args))
    for word in words:
        assert word in line


BAD_FILES = [
    (
        "unknown-key",
        "jobs:\n  train:\n    run: x\n    sets:\n      - each: a=1\n        each_: b=1\n",
        "error: Unknown key 'each_' in jobs.train.sets[0] at sweepflow.yaml:6"
        " — did you mean 'each'?",
    ),
    (
        "yaml-syntax",
        "jobs:\n  train:\n    run: x\n   bad: [\n",
        "error: YAML syntax error at sweepflow.yaml:4:4",
    ),
    (
        "duplicate-key",
        "jobs:\n  train:\n    run: x\n    run: y\n",
        "error: Duplicate key 'run' in jobs.train at sweepflow.yaml:4",
    ),
]


@pytest.mark.parametrize(
    "command", [["jobs"], ["show"], ["run", "train", "--dry-run"]], ids=["jobs", "show", "run"]
)
@pytest.mark.parametrize(
    ("text", "start"), [r[1:] for r in BAD_FILES], ids=[r[0] for r in BAD_FILES]
)
def test_invalid_file_fails_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli, text: str, start: str, command: list[str]
) -> None:
    write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*cli(*command))
    assert line.startswith(start)


def test_every_file_problem_on_its_own_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    write(
        tmp_path,
        "jobs:\n  train:\n    run: x\n    retries: two\n    per: trials\n  other:\n    rn: y\n",
    )
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", "train", "--dry-run")
    assert (code, out) == (2, "")
    head, *problems = err.splitlines()
    assert head.startswith("error: ") and "3 problems" in head
    assert len(problems) == 3
    for problem, (key, line) in zip(problems, [("retries", 4), ("per", 5), ("rn", 7)], strict=True):
        assert key in problem and f"sweepflow.yaml:{line}" in problem
    assert "Traceback" not in err


def test_no_job_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*cli("jobs"))
    assert "sweepflow.yaml" in line and "--file" in line


@pytest.mark.parametrize(
    "args",
    [["--debug", "run", "trian", "--dry-run"], ["run", "trian", "--dry-run", "--debug"]],
    ids=["before-command", "after-command"],
)
def test_debug_raises_the_error(project: Path, args: list[str]) -> None:
    with pytest.raises(JobError, match="did you mean 'train'"):
        main(args)


def test_no_arguments_prints_help(project: Path, cli) -> None:
    code, out, err = cli()
    assert code == 0
    assert "Usage:" in out and "run" in out and "jobs" in out
    assert err == ""


# ---------------------------------------------------------------------------
# Through a real interpreter, as a user's shell runs it
# ---------------------------------------------------------------------------


def sweepflow_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    source_root = str(Path(sweepflow.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "300"
    env.pop("SWEEPFLOW_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_subprocess_dry_run(project: Path) -> None:
    done = sweepflow_cmd("run", "train", "--dry-run", cwd=project)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == TRAIN_LINES


SUBPROCESS_ERRORS = [
    ("unknown-job", ["run", "trian", "--dry-run"], "did you mean 'train'"),
    ("bad-override", ["run", "train", "lr", "--dry-run"], "'lr'"),
    ("unknown-option", ["--nope"], "--nope"),
]


@pytest.mark.parametrize(
    ("args", "word"), [r[1:] for r in SUBPROCESS_ERRORS], ids=[r[0] for r in SUBPROCESS_ERRORS]
)
def test_subprocess_error_exit_code_and_one_line(project: Path, args: list[str], word: str) -> None:
    done = sweepflow_cmd(*args, cwd=project)
    line = assert_one_error_line(done.returncode, done.stdout, done.stderr)
    assert word in line


def test_subprocess_debug_shows_traceback(project: Path) -> None:
    done = sweepflow_cmd("--debug", "run", "trian", "--dry-run", cwd=project)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "JobError" in done.stderr


def installed_version() -> str:
    try:
        return version("sweepflow")
    except PackageNotFoundError:
        pytest.skip(
            "sweepflow is not installed (no package metadata): --version has nothing to print"
        )


def test_version(project: Path, cli) -> None:
    expected = installed_version()
    code, out, _ = cli("--version")
    assert (code, out) == (0, f"sweepflow {expected}\n")
    assert re.fullmatch(r"sweepflow \d+\.\d+\S*\n", out)


def test_subprocess_version(project: Path) -> None:
    expected = installed_version()
    done = sweepflow_cmd("--version", cwd=project)
    assert (done.returncode, done.stdout) == (0, f"sweepflow {expected}\n")


# ---------------------------------------------------------------------------
# Refused before anything starts: one line, exit 2, no state folder written
# ---------------------------------------------------------------------------

EARLY = """
jobs:
  empty:
    run: ""
  nofunction:
    call: os
  nomodule:
    call: no_such_module_here:main
  huge:
    run: python train.py
    sets:
      - all: a=1:1e12
"""

REFUSED = [
    ("empty-run", ["run", "empty"], ["has an empty run", "jobs.empty.run", "sweepflow.yaml:3"]),
    (
        "call-without-function",
        ["run", "nofunction"],
        ["'os' is not module:function", "jobs.nofunction.call", "sweepflow.yaml:5"],
    ),
    (
        "call-of-a-missing-module",
        ["run", "nomodule"],
        ["no module 'no_such_module_here'", "jobs.nomodule.call", "sweepflow.yaml:7"],
    ),
    (
        "more-trials-than-max",
        ["run", "huge"],
        ["1,000,000,000,000 trials", "--max-trials 1,000,000", "jobs.huge.sets"],
    ),
    ("max-trials-option", ["run", "huge", "--max-trials", "10"], ["more than --max-trials 10"]),
]


@pytest.mark.parametrize(("args", "words"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_bad_jobs_are_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli, args: list[str], words: list[str]
) -> None:
    write(tmp_path, EARLY)
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*cli(*args))
    for word in words:
        assert word in line
    assert not (tmp_path / ".sweepflow").exists()


def test_a_job_file_that_is_not_utf8_names_the_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    (tmp_path / "sweepflow.yaml").write_bytes(b"jobs:\n  a:\n    run: python \xff.py\n")
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(*cli("run", "a", "--dry-run"))
    assert (
        line
        == "error: job file sweepflow.yaml:3:17 is not UTF-8 text (byte 0xff): save it as UTF-8"
    )
