"""Table-driven tests of job files: schema, expansion, ``add``, overrides, and errors.

Each table row is a job-file snippet written to a temporary ``sweepflow.yaml`` and the
result a user would see (batches, trials, argv) or a substring of the error they get.
Expected values are written out by hand from the specification and HydraFlow's
documented examples, never computed with the code under test.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_confinement import sweepflow_child

import sweepflow
from sweepflow import JobError, JobFileError, SweepSyntaxError, load_jobs
from sweepflow.cli.main import main as cli_main
from sweepflow.plan.commands import invocations
from sweepflow.plan.expansion import compile_job
from sweepflow.spec.jobs import find_job_file

ROOT = Path(__file__).resolve().parents[1]


def write(directory: Path, text: str, name: str = "sweepflow.yaml") -> Path:
    """Write a job file (dedented) and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def one_job(directory: Path, body: str, name: str = "train") -> sweepflow.Job:
    """Load a file holding a single job whose keys are ``body`` (one key per line)."""
    indented = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    return load_jobs(write(directory, f"jobs:\n  {name}:\n{indented}\n")).jobs[name]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work inside ``tmp_path`` so messages show ``sweepflow.yaml`` relative to the cwd."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    return tmp_path


# ---------------------------------------------------------------------------
# Batches: the `each` assignment followed by the `all` lists (HydraFlow's order)
# ---------------------------------------------------------------------------

BATCHES = [
    (
        "hydraflow-doc-each-width-all-height",
        """
        run: python app.py
        sets:
          - each: width=100,300
            all: height=100:300:100
        """,
        [["width=100", "height=100,200,300"], ["width=300", "height=100,200,300"]],
    ),
    ("no-sets-one-empty-batch", "run: python app.py", [[]]),
    (
        "each-product-last-key-fastest",
        """
        run: python app.py
        sets:
          - each: model=cnn,mlp lr=1,2
        """,
        [
            ["model=cnn", "lr=1"],
            ["model=cnn", "lr=2"],
            ["model=mlp", "lr=1"],
            ["model=mlp", "lr=2"],
        ],
    ),
    (
        "all-only-is-one-batch",
        """
        run: python app.py
        sets:
          - all: a=1,2 b=x,y
        """,
        [["a=1,2", "b=x,y"]],
    ),
    (
        "sets-concatenated-in-order",
        """
        run: python app.py
        sets:
          - each: a=1,2
          - each: b=3
            all: c=4,5
        """,
        [["a=1"], ["a=2"], ["b=3", "c=4,5"]],
    ),
    (
        "aliases-steps-batch-args",
        """
        run: python app.py
        steps:
          - batch: a=1,2
            args: b=3,4
        """,
        [["a=1", "b=3,4"], ["a=2", "b=3,4"]],
    ),
    (
        "pipe-alternatives-are-batches",
        """
        run: python app.py
        sets:
          - each: a=1,2|3,4 b=x
        """,
        [["a=1,2", "b=x"], ["a=3,4", "b=x"]],
    ),
    (
        "zip-advances-together-after-each",
        """
        run: python app.py
        sets:
          - each: m=a,b
            zip: "lr=0.1,0.01 wd=1e-4,1e-5"
        """,
        [
            ["m=a", "lr=0.1", "wd=1e-4"],
            ["m=a", "lr=0.01", "wd=1e-5"],
            ["m=b", "lr=0.1", "wd=1e-4"],
            ["m=b", "lr=0.01", "wd=1e-5"],
        ],
    ),
    (
        "job-seeds-become-last-all-list",
        """
        run: python app.py
        seeds: 3
        sets:
          - each: a=1
            all: b=1,2
        """,
        [["a=1", "b=1,2", "seed=0,1,2"]],
    ),
    (
        "set-seeds-win-over-job-seeds",
        """
        run: python app.py
        seeds: 3
        sets:
          - each: a=1
          - each: a=2
            seeds: "rep=1:2"
        """,
        [["a=1", "seed=0,1,2"], ["a=2", "rep=1,2"]],
    ),
    (
        "add-and-per-batch-not-in-batches",
        """
        run: python app.py
        per: batch
        add: hydra/launcher=basic
        sets:
          - each: a=1
            all: b=1,2
            add: c=3
        """,
        [["a=1", "b=1,2"]],
    ),
    (
        "yaml-list-of-tokens-joined",
        """
        run: python app.py
        sets:
          - each: ["a=1,2", "b=x"]
        """,
        [["a=1", "b=x"], ["a=2", "b=x"]],
    ),
    (
        "log-range-in-each",
        """
        run: python app.py
        sets:
          - each: lr=log(0.001:0.1:3)
        """,
        [["lr=0.001"], ["lr=0.01"], ["lr=0.1"]],
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [r[1:] for r in BATCHES], ids=[r[0] for r in BATCHES]
)
def test_batches(here: Path, body: str, expected: list[list[str]]) -> None:
    assert compile_job(one_job(here, body)).batches() == expected


# ---------------------------------------------------------------------------
# Trials: every concrete assignment, batch order, `all` expanded last-fastest
# ---------------------------------------------------------------------------

TRIALS = [
    ("no-sets-one-empty-trial", "run: python app.py", [{}]),
    (
        "all-last-key-fastest",
        """
        run: python app.py
        sets:
          - all: a=1,2 b=3,4
        """,
        [{"a": "1", "b": "3"}, {"a": "1", "b": "4"}, {"a": "2", "b": "3"}, {"a": "2", "b": "4"}],
    ),
    (
        "zip-alone-two-trials",
        """
        run: python app.py
        sets:
          - zip: "lr=0.1,0.01 wd=1e-4,1e-5"
        """,
        [{"lr": "0.1", "wd": "1e-4"}, {"lr": "0.01", "wd": "1e-5"}],
    ),
    (
        "pipes-four-trials",
        """
        run: python app.py
        sets:
          - each: a=1,2|3,4 b=x
        """,
        [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}, {"a": "3", "b": "x"}, {"a": "4", "b": "x"}],
    ),
    (
        "each-then-all-in-batch-order",
        """
        run: python app.py
        sets:
          - each: m=a,b
            all: s=0,1
        """,
        [
            {"m": "a", "s": "0"},
            {"m": "a", "s": "1"},
            {"m": "b", "s": "0"},
            {"m": "b", "s": "1"},
        ],
    ),
    (
        "seeds-string-token",
        """
        run: python app.py
        seeds: "rep=1:2"
        """,
        [{"rep": "1"}, {"rep": "2"}],
    ),
]


@pytest.mark.parametrize(("body", "expected"), [r[1:] for r in TRIALS], ids=[r[0] for r in TRIALS])
def test_trials(here: Path, body: str, expected: list[dict[str, str]]) -> None:
    assert compile_job(one_job(here, body)).trials() == expected


def test_hydraflow_documented_example_has_six_trials(here: Path) -> None:
    job = one_job(
        here, "run: python app.py\nsets:\n  - each: width=100,300\n    all: height=100:300:100"
    )
    assert [(t["width"], t["height"]) for t in compile_job(job).trials()] == [
        ("100", "100"), ("100", "200"), ("100", "300"),
        ("300", "100"), ("300", "200"), ("300", "300"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------
# Counting (batches, trials), with and without command-line overrides
# ---------------------------------------------------------------------------

SWEEP = """
run: python app.py
seeds: 2
sets:
  - each: lr=1,2 m=a
    all: wd=1,2
    add: lr=9 k=1
  - zip: lr=1,2 z=3,4
"""

COUNTS = [
    ("no-overrides", SWEEP, [], (4, 12)),
    ("pin-lr", SWEEP, ["lr=0.5"], (3, 8)),
    ("widen-lr-and-seed", SWEEP, ["lr=0.1,0.01", "seed=0:2"], (18, 24)),
    ("new-key-added-to-every-set", SWEEP, ["new=1,2"], (8, 24)),
    (
        "pipe-counts-batches-per-alternative",
        "run: x\nsets:\n  - each: a=1,2|3 b=x,y\n    all: c=1,2",
        [],
        (4, 12),
    ),
]


@pytest.mark.parametrize(
    ("body", "overrides", "expected"), [r[1:] for r in COUNTS], ids=[r[0] for r in COUNTS]
)
def test_count(here: Path, body: str, overrides: list[str], expected: tuple[int, int]) -> None:
    assert compile_job(one_job(here, body), overrides).count() == expected


# ---------------------------------------------------------------------------
# Overrides replace a key's values in every set and sweep like `each`
# ---------------------------------------------------------------------------

OVERRIDES = [
    (
        "replace-each-values",
        "run: x\nsets:\n  - each: lr=1,2 m=a",
        ["lr=0.5"],
        [{"m": "a", "lr": "0.5"}],
    ),
    (
        "replace-all-values",
        "run: x\nsets:\n  - all: lr=1,2 m=a,b",
        ["lr=9"],
        [{"lr": "9", "m": "a"}, {"lr": "9", "m": "b"}],
    ),
    (
        "replace-seeds",
        "run: x\nseeds: 5",
        ["seed=7"],
        [{"seed": "7"}],
    ),
    (
        "replace-zip-key-keeps-partner",
        "run: x\nsets:\n  - zip: lr=1,2 z=3,4",
        ["lr=0"],
        [{"z": "3", "lr": "0"}, {"z": "4", "lr": "0"}],
    ),
    (
        "add-unknown-key",
        "run: x\nsets:\n  - each: a=1",
        ["b=1:2"],
        [{"a": "1", "b": "1"}, {"a": "1", "b": "2"}],
    ),
    (
        "every-set-gets-the-override",
        "run: x\nsets:\n  - each: lr=1\n  - each: lr=2,3",
        ["lr=0"],
        [{"lr": "0"}, {"lr": "0"}],
    ),
]


@pytest.mark.parametrize(
    ("body", "overrides", "expected"), [r[1:] for r in OVERRIDES], ids=[r[0] for r in OVERRIDES]
)
def test_override_trials(here: Path, body: str, overrides: list[str], expected: list[dict]) -> None:
    assert list(compile_job(one_job(here, body), overrides).iter_trials()) == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [("lr", "no '='"), ("lr=5:3", "after stop"), ("|a=1", "empty alternative")],
    ids=["no-equals", "bad-range", "leading-pipe"],
)
def test_override_errors(here: Path, override: str, message: str) -> None:
    job = one_job(here, "run: x\nsets:\n  - each: lr=1")
    with pytest.raises(SweepSyntaxError, match=message):
        compile_job(job, [override])


# ---------------------------------------------------------------------------
# add: merged key by key (the set wins), shell-like words, after the parameters
# ---------------------------------------------------------------------------

ADD = [
    (
        "set-add-wins-key-by-key",
        """
        run: python train.py
        add: a=1 b=2
        sets:
          - each: x=1
            add: b=3 c=4
        """,
        [],
        [["python", "train.py", "x=1", "a=1", "b=3", "c=4"]],
    ),
    (
        "job-add-only",
        "run: python train.py\nadd: a=1\nsets:\n  - each: x=1,2",
        [],
        [["python", "train.py", "x=1", "a=1"], ["python", "train.py", "x=2", "a=1"]],
    ),
    (
        "with-alias-for-add",
        "run: python train.py\nsets:\n  - each: x=1\n    with: c=5",
        [],
        [["python", "train.py", "x=1", "c=5"]],
    ),
    (
        "shell-words-keep-quoted-space",
        "run: python train.py\nadd: \"note='hello world' x=1\"",
        [],
        [["python", "train.py", "note=hello world", "x=1"]],
    ),
    (
        "override-removes-add-item",
        "run: python train.py\nsets:\n  - each: x=1\n    add: lr=9 k=1",
        ["lr=0.5"],
        [["python", "train.py", "x=1", "lr=0.5", "k=1"]],
    ),
    (
        "per-batch-multirun-then-add",
        "run: python train.py\nper: batch\nadd: hydra/launcher=basic\nsets:\n  - all: x=1,2",
        [],
        None,  # checked below: --multirun ... hydra.* ... add
    ),
]


@pytest.mark.parametrize(
    ("body", "overrides", "expected"), [r[1:] for r in ADD], ids=[r[0] for r in ADD]
)
def test_add_in_argv(here: Path, body: str, overrides: list[str], expected) -> None:
    argvs = [list(unit.argv) for unit in invocations(compile_job(one_job(here, body), overrides))]
    if expected is not None:
        assert argvs == expected
    else:
        (argv,) = argvs
        assert argv[:4] == ["python", "train.py", "--multirun", "x=1,2"]
        assert argv[4] == "hydra.job.name=train"
        assert argv[5].startswith("hydra.sweep.dir=")
        assert argv[6:] == ["hydra/launcher=basic"]


def test_add_items_are_not_trial_params(here: Path) -> None:
    job = one_job(here, "call: mod:fn\nadd: k=1\nsets:\n  - each: a=1,2")
    units = list(invocations(compile_job(job)))
    assert [(u.function, u.items, u.params) for u in units] == [
        ("mod:fn", ("a=1", "k=1"), {"a": "1"}),
        ("mod:fn", ("a=2", "k=1"), {"a": "2"}),
    ]
    assert compile_job(job).trials() == [{"a": "1"}, {"a": "2"}]


def test_submit_is_one_invocation_with_a_parameter_file(here: Path) -> None:
    job = one_job(here, "submit: python sub.py\nsets:\n  - each: a=1,2\n    all: b=3,4", "grid")
    (unit,) = invocations(compile_job(job))
    assert unit.argv[:2] == ("python", "sub.py")
    assert unit.argv[-1] == str(unit.param_file)
    assert unit.param_file.name.startswith("params-") and unit.param_file.suffix == ".jsonl"
    assert unit.lines == (
        '{"params": {"a": "1", "b": "3"}, "args": ["a=1", "b=3"]}',
        '{"params": {"a": "1", "b": "4"}, "args": ["a=1", "b=4"]}',
        '{"params": {"a": "2", "b": "3"}, "args": ["a=2", "b=3"]}',
        '{"params": {"a": "2", "b": "4"}, "args": ["a=2", "b=4"]}',
    )


# ---------------------------------------------------------------------------
# The submit: parameter file: one line per trial, whatever the values
# ---------------------------------------------------------------------------

# (id, job file name, job keys, the parameter file's lines)
PARAM_FILES = [
    (
        "json-default-with-add",
        "sweepflow.yaml",
        "submit: python h.py\nadd: k=1\nsets:\n  - each: a=1,2",
        [
            '{"params": {"a": "1"}, "args": ["a=1", "k=1"]}',
            '{"params": {"a": "2"}, "args": ["a=2", "k=1"]}',
        ],
    ),
    (
        "args-when-asked",
        "sweepflow.yaml",
        "submit: python h.py\nsubmit_format: args\nadd: \"note='p q'\"\nsets:\n  - each: a=1,2",
        ["a=1 'note=p q'", "a=2 'note=p q'"],
    ),
    (
        "args-in-a-hydraflow-file",
        "hydraflow.yaml",
        "submit: python h.py\nsets:\n  - each: a=1,2",
        ["a=1", "a=2"],
    ),
    (
        "args-for-hydraflow-steps",
        "sweepflow.yaml",
        "submit: python h.py\nsteps:\n  - batch: a=1,2",
        ["a=1", "a=2"],
    ),
    (
        "json-when-asked-in-a-hydraflow-file",
        "hydraflow.yaml",
        "submit: python h.py\nsubmit_format: json\nsteps:\n  - batch: a=1",
        ['{"params": {"a": "1"}, "args": ["a=1"]}'],
    ),
]


@pytest.mark.parametrize(
    ("file", "body", "lines"), [p[1:] for p in PARAM_FILES], ids=[p[0] for p in PARAM_FILES]
)
def test_parameter_file_lines(here: Path, file: str, body: str, lines: list[str]) -> None:
    indented = textwrap.indent(body, "    ")
    job = load_jobs(write(here, f"jobs:\n  j:\n{indented}\n", file)).jobs["j"]
    (unit,) = invocations(compile_job(job))
    assert unit.param_file is not None
    assert unit.param_file.suffix == (".jsonl" if lines[0].startswith("{") else ".txt")
    assert list(unit.lines) == lines


def test_json_line_of_a_batch_has_its_multirun_args(here: Path) -> None:
    job = one_job(
        here, "submit: python h.py\nper: batch\nsets:\n  - each: a=1\n    all: b=3,4", "j"
    )
    (unit,) = invocations(compile_job(job))
    (row,) = [json.loads(line) for line in unit.lines]
    assert row["params"] == {}, "a batch is one --multirun command, not one trial"
    assert row["args"][:4] == ["--multirun", "a=1", "b=3,4", "hydra.job.name=j"]
    assert row["args"][4].startswith("hydra.sweep.dir=")


# Values a line must hold: newlines, carriage returns, and what str.splitlines() splits on.
BREAKS = [("newline", "\n"), ("crlf", "\r\n"), ("line-separator", "\u2028"), ("form-feed", "\f")]


@pytest.mark.parametrize("text", [b[1] for b in BREAKS], ids=[b[0] for b in BREAKS])
def test_json_lines_hold_any_value(here: Path, text: str) -> None:
    job = one_job(here, "submit: python h.py\nsets:\n  - each: a=1,2", "j")
    (unit,) = invocations(compile_job(job, [f"a='x{text}y',2"]))
    written = "".join(line + "\n" for line in unit.lines)  # what execute() writes
    rows = [json.loads(line) for line in written.splitlines()]
    assert [row["params"] for row in rows] == [{"a": f"'x{text}y'"}, {"a": "2"}]
    assert [row["args"] for row in rows] == [[f"a='x{text}y'"], ["a=2"]]
    assert written.isascii()


# (id, job keys, the error's parts: what, where (key path, file:line), how to fix)
REFUSED_LINES = [
    (
        "each-value",
        "submit: python h.py\nsubmit_format: args\nsets:\n  - each: \"msg='a\\nb',c\"",
        [
            "Job 'j'",
            "line break in msg=\"'a\\nb'\"",
            "jobs.j.sets[0].each at sweepflow.yaml:6",
            "remove the line break",
            "submit_format: args writes each trial on one line",
            "or drop it",
        ],
    ),
    (
        "all-value-second-set",
        "submit: python h.py\nsubmit_format: args\nsets:\n  - each: a=1\n"
        "  - all: \"b=ok,'x\\u2028y'\"",
        ["jobs.j.sets[1].all at sweepflow.yaml:7"],
    ),
    (
        "job-add",
        "submit: python h.py\nsubmit_format: args\nadd: \"note='a\\rb'\"",
        ["line break in add item 'note=a\\rb'", "jobs.j.add at sweepflow.yaml:5"],
    ),
    (
        "set-add",
        "submit: python h.py\nsubmit_format: args\nsets:\n  - add: \"note='a\\nb'\"",
        ["jobs.j.sets[0].add at sweepflow.yaml:6"],
    ),
    (
        "hydraflow-steps",
        "submit: python h.py\nsteps:\n  - batch: \"msg='a\\nb'\"",
        ["jobs.j.sets[0].each at sweepflow.yaml:5", "set submit_format: json"],
    ),
]


@pytest.mark.parametrize(
    ("body", "messages"), [r[1:] for r in REFUSED_LINES], ids=[r[0] for r in REFUSED_LINES]
)
def test_args_lines_refuse_a_line_break(here: Path, body: str, messages: list[str]) -> None:
    job = one_job(here, body, "j")
    with pytest.raises(JobError) as caught:
        list(invocations(compile_job(job)))
    assert "\n" not in str(caught.value), "one line"
    for message in messages:
        assert message in str(caught.value)


def test_args_lines_refuse_a_line_break_in_an_override(here: Path) -> None:
    job = one_job(here, "submit: python h.py\nsubmit_format: args\nsets:\n  - each: a=1", "j")
    with pytest.raises(JobError, match=r"line break in the command-line override 'a=\"x\\ny\"'"):
        list(invocations(compile_job(job, ['a="x\ny"'])))


def test_submit_format_belongs_to_submit_jobs(here: Path) -> None:
    job = one_job(here, "run: python x.py\nsubmit_format: args", "j")
    with pytest.raises(JobError, match=r"submit_format: but is a run: job.*jobs\.j\.submit_format"):
        compile_job(job)
    with pytest.raises(JobFileError, match=r"jobs\.j\.submit_format at sweepflow\.yaml:4"):
        one_job(here, "submit: python x.py\nsubmit_format: lines", "j")


SUBMIT_WITH_BREAK = """
jobs:
  sub:
    submit: python submit.py prog.py
    sets:
      - each: "msg='a\\nb',plain"
"""


def test_dry_run_shows_one_line_per_trial(tmp_path: Path) -> None:
    write(tmp_path, SUBMIT_WITH_BREAK)
    done = sweepflow_child(tmp_path, "run", "sub", "--dry-run")
    assert done.returncode == 0, done.stderr
    command, header, *lines, summary = done.stdout.splitlines()
    assert summary == "2 trials in 2 batches"
    assert "(2 lines" in header and len(lines) == 2, "as many lines as the header says"
    assert command.startswith("python submit.py prog.py ") and command.endswith(".jsonl")
    assert header.endswith("(2 lines, one JSON object each):")
    assert [json.loads(line)["args"] for line in lines] == [["msg='a\nb'"], ["msg=plain"]]


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_args_line_break_refused_before_anything_starts(tmp_path: Path, dry: bool) -> None:
    """A HydraFlow job file (args lines) with a value holding a newline: one error line."""
    write(tmp_path, SUBMIT_WITH_BREAK, "hydraflow.yaml")
    done = sweepflow_child(tmp_path, "run", "sub", *(["--dry-run"] if dry else []))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: Job 'sub' has a line break in msg=\"'a\\nb'\"")
    assert "(jobs.sub.sets[0].each at hydraflow.yaml:5)" in line
    assert "set submit_format: json" in line
    assert not (tmp_path / ".sweepflow" / "runs").exists(), "no parameter file written"


def test_example_handler_runs_each_trial_with_its_exact_value(
    project: Path, prefect_api: str
) -> None:
    """examples/submit.py reads the JSON lines; each trial's program gets its value."""
    shutil.copy(ROOT / "examples" / "submit.py", project / "submit.py")
    (project / "prog.py").write_text(
        "import json, sys\n"
        "with open('seen.jsonl', 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    write(project, SUBMIT_WITH_BREAK)
    assert cli_main(["run", "sub"]) == 0
    seen = [json.loads(line) for line in (project / "seen.jsonl").read_text().splitlines()]
    assert seen == [["msg='a\nb'"], ["msg=plain"]]
    (param_file,) = (project / ".sweepflow" / "runs" / "sub").glob("params-*.jsonl")
    assert len(param_file.read_text().splitlines()) == 2


# ---------------------------------------------------------------------------
# Settings with their own syntax
# ---------------------------------------------------------------------------

DURATIONS = [
    ("1h30m", 5400.0),
    ("90", 90.0),
    ("90s", 90.0),
    ("10m", 600.0),
    ("2h", 7200.0),
    ("1.5", 1.5),
]


@pytest.mark.parametrize(("text", "seconds"), DURATIONS, ids=[d[0] for d in DURATIONS])
def test_timeout_durations(here: Path, text: str, seconds: float) -> None:
    assert one_job(here, f"run: x\ntimeout: {text}").timeout == seconds


def test_string_lists_and_schedule(here: Path) -> None:
    job = one_job(here, "run: x\ntags: a b\nwatch: ['*.py', 'src/*.py']\nschedule: '0 3 * * *'")
    assert job.tags == ("a", "b")
    assert job.watch == ("*.py", "src/*.py")
    assert job.schedule is not None and job.schedule.cron == "0 3 * * *"


# ---------------------------------------------------------------------------
# Structural errors: the whole file is invalid, every problem with file:line
# ---------------------------------------------------------------------------

STRUCTURAL = [
    (
        "unknown-set-key-exact-message",
        """
        jobs:
          train:
            run: python train.py
            sets:
              - each: a=1
                all: b=1
                each_: c=1
        """,
        ["Unknown key 'each_' in jobs.train.sets[0] at sweepflow.yaml:7 — did you mean 'each'?"],
    ),
    (
        "unknown-job-key-near-miss",
        "jobs:\n  train:\n    rn: x\n",
        ["jobs.train", "sweepflow.yaml:3", "did you mean 'run'?"],
    ),
    (
        "unknown-top-level-key",
        "job:\n  train:\n    run: x\n",
        ["Unknown key 'job'", "sweepflow.yaml:1", "did you mean 'jobs'?"],
    ),
    (
        "unknown-key-far-from-any",
        "jobs:\n  train:\n    run: x\n    zzzzzz: 1\n",
        ["'zzzzzz'", "sweepflow.yaml:4", "valid keys", "sets"],
    ),
    (
        "unknown-schedule-key",
        "jobs:\n  t:\n    run: x\n    schedule: {cron: '0 3 * * *', tz: UTC}\n",
        ["'tz'", "jobs.t.schedule", "timezone"],
    ),
    (
        "retries-not-integer",
        "jobs:\n  train:\n    run: x\n    retries: two\n",
        ["jobs.train.retries", "sweepflow.yaml:4", "integer", "two"],
    ),
    (
        "retries-negative",
        "jobs:\n  train:\n    run: x\n    retries: -1\n",
        ["jobs.train.retries", "sweepflow.yaml:4", "-1"],
    ),
    (
        "per-trials-typo",
        "jobs:\n  train:\n    run: x\n    per: trials\n",
        ["jobs.train.per", "sweepflow.yaml:4", "'trial'", "'batch'"],
    ),
    (
        "timeout-not-a-duration",
        "jobs:\n  train:\n    run: x\n    timeout: 10x\n",
        ["jobs.train.timeout", "sweepflow.yaml:4", "'10x' is not a duration", "1h30m"],
    ),
    (
        "timeout-zero",
        "jobs:\n  train:\n    run: x\n    timeout: 0\n",
        ["jobs.train.timeout", "greater than 0"],
    ),
    (
        "cache-not-bool",
        "jobs:\n  train:\n    run: x\n    cache: maybe\n",
        ["jobs.train.cache", "true or false", "maybe"],
    ),
    (
        "schedule-four-fields",
        'jobs:\n  train:\n    run: x\n    schedule: "0 3 * *"\n',
        ["jobs.train.schedule", "sweepflow.yaml:4", "five-field", "'0 3 * * *'"],
    ),
    (
        "schedule-six-fields",
        'jobs:\n  train:\n    run: x\n    schedule: "0 3 * * * *"\n',
        ["five-field"],
    ),
    (
        "sets-not-a-list",
        "jobs:\n  train:\n    run: x\n    sets: a=1\n",
        ["jobs.train.sets", "a list"],
    ),
    (
        "set-not-a-mapping",
        "jobs:\n  train:\n    run: x\n    sets: [a=1]\n",
        ["jobs.train.sets[0]", "a mapping"],
    ),
    (
        "each-not-a-string",
        "jobs:\n  train:\n    run: x\n    sets:\n      - each: 5\n",
        ["jobs.train.sets[0].each", "sweepflow.yaml:5", "a string"],
    ),
    ("job-is-null", "jobs:\n  train:\n", ["jobs.train", "sweepflow.yaml:2", "a mapping"]),
    (
        "yaml-syntax-error",
        "jobs:\n  train:\n    run: x\n   bad: [\n",
        ["YAML syntax error", "sweepflow.yaml:4:4"],
    ),
    ("yaml-tab-indent", "jobs:\n  train:\n\trun: x\n", ["YAML syntax error", "sweepflow.yaml:3:1"]),
    (
        "duplicate-key",
        "jobs:\n  train:\n    run: x\n    run: y\n",
        ["Duplicate key 'run'", "jobs.train", "sweepflow.yaml:4"],
    ),
    (
        "duplicate-job",
        "jobs:\n  a:\n    run: x\n  a:\n    run: y\n",
        ["Duplicate key 'a'", "sweepflow.yaml:4"],
    ),
    ("top-level-list", "- a\n- b\n", ["sweepflow.yaml", "mapping"]),
    (
        "each-and-batch",
        "jobs:\n  t:\n    run: x\n    sets:\n      - each: a=1\n        batch: a=2\n",
        ["Both 'each' and its alias 'batch'", "jobs.t.sets[0]", "keep one"],
    ),
    (
        "all-and-args",
        "jobs:\n  t:\n    run: x\n    sets:\n      - all: a=1\n        args: a=2\n",
        ["Both 'all' and its alias 'args'"],
    ),
    (
        "sets-and-steps",
        "jobs:\n  t:\n    run: x\n    sets: []\n    steps: []\n",
        ["Both 'sets' and its alias 'steps'", "jobs.t"],
    ),
    (
        "seeds-bool-not-a-count",
        "jobs:\n  t:\n    run: x\n    seeds: true\n",
        ["jobs.t.seeds", "sweepflow.yaml:4", "count", "seed=0:4"],
    ),
    (
        "seeds-float-one-message",
        "jobs:\n  t:\n    run: x\n    sets:\n      - seeds: 2.5\n",
        ["jobs.t.sets[0].seeds", "sweepflow.yaml:5", "2.5"],
    ),
    (
        "unquoted-comma-in-flow-mapping",
        "jobs:\n  t:\n    run: x\n    sets: [{each: a=1,2}]\n",
        ["jobs.t.sets[0]", "sweepflow.yaml:4", "quote it"],
    ),
]


@pytest.mark.parametrize(
    ("text", "messages"), [r[1:] for r in STRUCTURAL], ids=[r[0] for r in STRUCTURAL]
)
def test_structural_errors(here: Path, text: str, messages: list[str]) -> None:
    path = write(here, text)
    with pytest.raises(JobFileError) as caught:
        load_jobs(path)
    (problem,) = caught.value.problems  # one mistake, one message
    assert "\n" not in problem
    for message in messages:
        assert message in problem


def test_all_problems_listed_sorted_by_line(here: Path) -> None:
    path = write(
        here,
        """
        jobs:
          other:
            run: y
            foo: 1
          train:
            run: x
            sets:
              - each: a=1
                each_: b=1
            retries: two
            per: trials
            timeout: 10x
            schedule: "0 3 * *"
        """,
    )
    with pytest.raises(JobFileError) as caught:
        load_jobs(path)
    problems = caught.value.problems
    places = [
        ("'foo'", 4),
        ("'each_'", 9),
        ("retries", 10),
        ("per", 11),
        ("timeout", 12),
        ("schedule", 13),
    ]
    assert len(problems) == len(places)
    for problem, (word, line) in zip(problems, places, strict=True):
        assert word in problem and f"sweepflow.yaml:{line}" in problem
    assert "6 problems" in str(caught.value)


def test_unknown_key_invalidates_every_job(here: Path) -> None:
    path = write(here, "jobs:\n  good:\n    run: x\n  bad:\n    run: y\n    sest: []\n")
    with pytest.raises(JobFileError, match="did you mean 'sets'"):
        load_jobs(path)


def test_file_outside_cwd_is_shown_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = write(tmp_path / "project", "jobs:\n  t:\n    run: x\n    rn: y\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(JobFileError) as caught:
        load_jobs(path)
    assert f"{path}:4" in caught.value.problems[0]


def test_missing_file_is_a_job_file_error(here: Path) -> None:
    with pytest.raises(JobFileError, match=r"nope\.yaml"):
        load_jobs(here / "nope.yaml")


# ---------------------------------------------------------------------------
# Semantic errors: per job, raised on expansion, never blocking other jobs
# ---------------------------------------------------------------------------

SEMANTIC = [
    (
        "no-command",
        "sets: [{each: a=1}]",
        ["Job 'bad'", "none of run / call / submit", "exactly one", "jobs.bad", "sweepflow.yaml:6"],
    ),
    ("run-and-call", "run: x\ncall: m:f", ["more than one of run / call / submit", "exactly one"]),
    ("run-and-submit", "run: x\nsubmit: y", ["exactly one"]),
    (
        "sweep-syntax-in-each",
        "run: x\nsets:\n  - each: lr=5:3",
        ["jobs.bad.sets[0].each", "sweepflow.yaml:9", "column 4", "lr=5:3"],
    ),
    (
        "sweep-syntax-in-all",
        "run: x\nsets:\n  - all: a=1:2:0",
        ["jobs.bad.sets[0].all", "sweepflow.yaml:9", "column"],
    ),
    (
        "sweep-syntax-in-zip",
        "run: x\nsets:\n  - zip: a=1:x b=1",
        ["jobs.bad.sets[0].zip", "column"],
    ),
    (
        "zip-unequal",
        'run: x\nsets:\n  - zip: "lr=0.1,0.01 wd=1e-4"',
        ["zip", "unequal", "jobs.bad.sets[0]"],
    ),
    ("seeds-zero", "run: x\nseeds: 0", ["seeds", "jobs.bad.seeds", ">= 1"]),
    ("unclosed-quote-in-add", 'run: x\nadd: "note=\'hello"', ["add", "jobs.bad.add"]),
    (
        "same-key-in-each-and-all",
        "run: x\nsets:\n  - each: a=1,2\n    all: a=3",
        ["'a'", "twice", "jobs.bad.sets[0]"],
    ),
]

GOOD_THEN_BAD = """
jobs:
  good:
    run: python app.py
    sets:
      - each: a=1,2
  bad:
{body}
"""


@pytest.mark.parametrize(
    ("body", "messages"), [r[1:] for r in SEMANTIC], ids=[r[0] for r in SEMANTIC]
)
def test_semantic_errors_stay_in_their_job(here: Path, body: str, messages: list[str]) -> None:
    text = GOOD_THEN_BAD.replace("{body}", textwrap.indent(body, "    "))
    jobfile = load_jobs(write(here, text))  # loading succeeds: the error is the job's own
    with pytest.raises(JobError) as caught:
        compile_job(jobfile.jobs["bad"]).batches()
    for message in messages:
        assert message in str(caught.value)
    assert compile_job(jobfile.jobs["good"]).batches() == [["a=1"], ["a=2"]]


def test_compiling_raises_the_semantic_error(here: Path) -> None:
    job = one_job(here, "run: x\nsets:\n  - each: lr=5:3")
    with pytest.raises(JobError, match=r"jobs\.train\.sets\[0\]\.each"):
        compile_job(job)


JOB_LOOKUP = [
    ("trian", "did you mean 'train'"),
    ("zzz", "jobs: train, eval"),
]


@pytest.mark.parametrize(("name", "message"), JOB_LOOKUP, ids=["near-miss", "far-miss-lists-jobs"])
def test_unknown_job_name(here: Path, name: str, message: str) -> None:
    jobfile = load_jobs(write(here, "jobs:\n  train:\n    run: x\n  eval:\n    run: y\n"))
    with pytest.raises(JobError, match=message):
        jobfile.job(name)


# ---------------------------------------------------------------------------
# Which file is read
# ---------------------------------------------------------------------------

FILES = [
    ("hydraflow-only", ["hydraflow.yaml"], "hydraflow.yaml"),
    ("sweepflow-only", ["sweepflow.yaml"], "sweepflow.yaml"),
    ("sweepflow-wins", ["hydraflow.yaml", "sweepflow.yaml"], "sweepflow.yaml"),
]


@pytest.mark.parametrize(("present", "chosen"), [r[1:] for r in FILES], ids=[r[0] for r in FILES])
def test_find_job_file(here: Path, present: list[str], chosen: str) -> None:
    for name in present:
        write(here, f"jobs:\n  from_{name.split('.')[0]}:\n    run: x\n", name)
    assert find_job_file(here) == here / chosen
    assert list(load_jobs().jobs) == [f"from_{chosen.split('.')[0]}"]


def test_no_job_file_says_what_to_create(here: Path) -> None:
    with pytest.raises(JobFileError, match=r"sweepflow\.yaml"):
        find_job_file(here)


def test_hydraflow_file_read_as_is(here: Path) -> None:
    write(
        here,
        """
        jobs:
          train:
            run: python train.py
            with: hydra/launcher=basic
            steps:
              - batch: model=small,large
                args: lr=0.1,0.01
        """,
        "hydraflow.yaml",
    )
    job = load_jobs().jobs["train"]
    assert next(list(u.argv) for u in invocations(compile_job(job))) == [
        "python", "train.py", "model=small", "lr=0.1", "hydra/launcher=basic",
    ]  # fmt: skip


# ---------------------------------------------------------------------------
# Expansion is lazy
# ---------------------------------------------------------------------------


def test_million_trials_counted_and_streamed_lazily(here: Path) -> None:
    job = one_job(here, "run: x\nsets:\n  - each: a=1:1000 b=1:1000")
    assert compile_job(job).count() == (1_000_000, 1_000_000)
    stream = compile_job(job).iter_trials()
    assert isinstance(stream, Iterator) and not isinstance(stream, (list, tuple))
    assert next(stream) == {"a": "1", "b": "1"}
    assert next(stream) == {"a": "1", "b": "2"}
