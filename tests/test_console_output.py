"""What ``sweepflow run`` prints: parameters and every metric as columns, the best trials
when there are more than a screenful, readable times, and in a log (stderr not a
terminal) one plain line per trial as it finishes.

The end-to-end tests run ``python -m sweepflow run`` on a real sweep against the
session's Prefect API, once under a pseudo-terminal of a fixed size and once with its
output going to a pipe read line by line while the run goes on.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import queue
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from sweepflow.cli.main import main
from sweepflow.cli.summary import (
    ColumnsError,
    View,
    counts_line,
    duration,
    layout,
    parse_columns,
    print_summary,
    trial_line,
)
from sweepflow.engine.progress import TrialOutcome

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")

# A trial program reporting six metrics (more than the four the table used to show);
# a=25 fails; a=3 waits for a file named `go` when WAIT_FOR_GO is set.
PROGRAM = """
import os, sys, time
from pathlib import Path
import sweepflow

params = dict(item.split("=", 1) for item in sys.argv[1:])
a = int(params["a"])
if a == 25:
    sys.exit("diverged at a=25")
if a == 3 and os.environ.get("WAIT_FOR_GO"):
    go = Path(__file__).resolve().parent / "go"
    deadline = time.monotonic() + 90
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
sweepflow.log_metrics({
    "loss": float(a), "accuracy": 1 / a, "f1": 0.5, "grad_norm": 2.0 * a,
    "epochs": 3.0, "throughput": 100.0 * a,
})
"""
METRICS = ["loss", "accuracy", "epochs", "f1", "grad_norm", "throughput"]


def _project(folder: Path, size: int) -> None:
    (folder / "fit.py").write_text(PROGRAM)
    (folder / "sweepflow.yaml").write_text(
        textwrap.dedent(
            f"""
            jobs:
              fit:
                run: python fit.py
                sets:
                  - each: a=1:{size} seed=7
            """
        ).lstrip()
    )


def _env(**extra: str) -> dict[str, str]:
    drop = ("PREFECT_LOGGING_", "FORCE_COLOR", "TTY_", "NO_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env | extra


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sweepflow", "run", "fit", "--max-parallel", "2", *args]


# -- formatting ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0 s"),
        (0.84, "0.8 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.96, "1 min 00 s"),
        (245.4, "4 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 00 min"),
        (3720.0, "1 h 02 min"),
        (90061.0, "25 h 01 min"),
        (None, ""),
        (float("nan"), ""),
    ],
    ids=lambda value: repr(value),
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "names", "error"),
    [
        ("loss", ("loss",), None),
        ("loss, acc ,f1", ("loss", "acc", "f1"), None),
        ("loss,,acc", None, "metric name 2 is empty"),
        ("", None, "metric name 1 is empty"),
        ("loss,loss", None, "'loss' is named twice"),
    ],
    ids=["one", "spaces", "empty-middle", "empty", "twice"],
)
def test_parse_columns(text: str, names: tuple[str, ...] | None, error: str | None) -> None:
    if error is None:
        assert parse_columns(text) == names
    else:
        with pytest.raises(ColumnsError, match=error):
            parse_columns(text)


def _outcome(index: int, status: str = "done", **metrics: float) -> TrialOutcome:
    params = {"lr": str(index), "seed": "0"}
    label = " ".join(f"{k}={v}" for k, v in params.items())
    return TrialOutcome(index, label, status, 1.0, metrics, params=params)


def test_layout_fits_everything_in_index_order() -> None:
    outcomes = [_outcome(i, loss=10 - i, acc=0.1 * i) for i in (2, 0, 1)]
    shape = layout(outcomes, View(), max_rows=10)
    assert [o.index for o in shape.rows] == [0, 1, 2]
    assert shape.constant == {"seed": "0"} and shape.params == ["lr"]
    assert shape.metrics == ["loss", "acc"] and shape.hidden == 0


def test_layout_keeps_the_best_and_every_failed_trial() -> None:
    outcomes = [_outcome(i, loss=float(i % 7)) for i in range(20)]
    outcomes[3] = _outcome(3, "failed")
    outcomes[15] = _outcome(15, "failed")
    shape = layout(outcomes, View(), max_rows=6)
    # lowest loss first (a sweep has no direction: lowest counts as best), ties by number
    assert [o.index for o in shape.rows] == [0, 7, 14, 1, 3, 15]
    assert shape.hidden == 14
    shape = layout(outcomes, View(target="loss", maximize=True), max_rows=6)
    assert [o.index for o in shape.rows] == [6, 13, 5, 12, 3, 15]
    assert shape.hidden == 14


def test_layout_columns_option_and_target() -> None:
    outcomes = [_outcome(i, loss=float(i), acc=1.0 / (i + 1), f1=0.5) for i in range(4)]
    shape = layout(outcomes, View(target="acc"), max_rows=10)
    assert shape.metrics == ["acc", "f1", "loss"] and shape.target == "acc"
    shape = layout(outcomes, View(columns=("f1", "nope", "loss")), max_rows=2)
    assert shape.metrics == ["f1", "loss"] and shape.missing == ["nope"]
    assert shape.target == "f1"


def test_trial_line_is_plain_and_complete() -> None:
    failed = TrialOutcome(
        4, "lr=0.1", "failed", None, {}, "exit code 3\nmore", params={"lr": "0.1"}
    )
    assert trial_line(failed, 2, 9) == "[2/9] trial 4 failed  lr=0.1  exit code 3"
    unnamed = TrialOutcome(0, "model=cnn", "cached", 65.0, {"acc": 0.91234567})
    assert trial_line(unnamed, 1, 1) == "[1/1] trial 0 cached 1 min 05 s  model=cnn  acc=0.912346"


def test_counts_line() -> None:
    counts = {"done": 1, "cached": 2, "failed": 3, "pruned": 4, "cancelled": 5}
    assert counts_line(counts, 3725, interrupted=True) == (
        "interrupted: 1 done, 2 cached, 3 failed, 4 pruned, 5 not started in 1 h 02 min"
    )


def test_summary_on_a_small_terminal_says_how_to_see_the_rest() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, height=20, force_terminal=True, color_system=None)
    outcomes = [_outcome(i, loss=float(i), acc=0.5) for i in range(40)]
    print_summary(console, outcomes, View(job="fit", file="my jobs.yaml"))
    text = out.getvalue()
    assert "same in every trial: seed=0" in text
    assert "... 32 more trials: see `sweepflow results fit -f 'my jobs.yaml' --sort loss`" in text
    assert len(text.splitlines()) <= 20


def test_summary_in_a_log_is_wide_and_has_no_escapes() -> None:
    out = io.StringIO()
    console = Console(file=out, width=40, force_terminal=False)
    names = {f"metric_number_{n}": float(n) for n in range(8)}
    print_summary(console, [_outcome(i, **names) for i in range(3)], View(job="fit"))
    text = out.getvalue()
    assert "\x1b" not in text and "…" not in text
    assert all(name in text for name in names)  # whole headers, no wrapping at 40


def test_summary_on_a_narrow_terminal_cuts_no_column() -> None:
    out = io.StringIO()
    console = Console(file=out, width=60, height=50, force_terminal=True, color_system=None)
    names = {f"metric_{n}": 1234.5678 + n for n in range(8)}
    print_summary(console, [_outcome(i, **names) for i in range(3)], View(job="fit"))
    text = out.getvalue()
    assert "…" not in text
    for name, value in names.items():  # every metric, by name and whole value
        assert f"{name}={value:.6g}" in text.replace("\n", ""), text


def test_bad_columns_option_is_one_line(project: Path, capsys: pytest.CaptureFixture) -> None:
    _project(project, 3)
    assert main(["run", "fit", "--columns", "loss,,acc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --columns 'loss,,acc': metric name 2 is empty")
    assert "\n" not in err and "Traceback" not in err


# -- end to end ----------------------------------------------------------------------
def _run_in_pty(command: list[str], cwd: Path, env: dict[str, str], rows: int, cols: int) -> str:
    """Run ``command`` with a pseudo-terminal of ``rows`` x ``cols`` as its stdout and
    stderr; return everything it wrote."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        process.kill() if process.poll() is None else None
        process.wait()
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert process.returncode == 1, text  # one trial fails
    return text


@pytest.mark.usefixtures("prefect_api")
def test_terminal_shows_param_and_metric_columns_and_the_best(project: Path) -> None:
    _project(project, 30)
    env = _env(TERM="xterm-256color", COLUMNS="160", LINES="24")
    raw = _run_in_pty(_command(), project, env, rows=24, cols=160)
    text = ANSI.sub("", raw).replace("\r\n", "\n")

    assert "\x1b[" in raw  # a terminal: the live bar, in colour
    assert "[1/30] trial" not in text  # no log lines in a terminal
    assert "same in every trial: seed=7" in text
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    cells = [cell.strip() for cell in header.strip("┃").split("┃")]
    assert cells == ["#", "a", "status", "time", *METRICS]
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]
    # 24 lines: the 11 lowest losses and the failed trial, then a line for the rest.
    assert [row[1] for row in rows] == [*(str(a) for a in range(1, 12)), "25"]
    assert rows[0][2] == "done" and rows[0][4] == "1"
    assert re.fullmatch(r"\d+\.\d s", rows[0][3]), rows[0]
    assert rows[-1][2] == "failed"
    assert "... 18 more trials: see `sweepflow results fit --sort loss`" in text
    assert "trials: 12 of 30: best loss (lowest first), all failed" in text
    final = next(line for line in text.splitlines() if line.startswith("29 done"))
    assert re.fullmatch(r"29 done, 0 cached, 1 failed in (\d+\.\d s|\d+ min \d\d s)", final.strip())
    assert "0:00:" not in text  # the bar's elapsed time is readable too


@pytest.mark.usefixtures("prefect_api")
def test_log_gets_a_line_per_trial_as_it_finishes(project: Path) -> None:
    _project(project, 3)
    env = _env(WAIT_FOR_GO="1")
    process = subprocess.Popen(
        _command("--columns", "loss,throughput"),
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stream = process.stdout
    reader = threading.Thread(target=lambda: [lines.put(line.decode()) for line in stream])
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while sum("] trial " in line for line in seen) < 2 and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "".join(seen)
        # Two trials are reported while the third still waits: the run is not over.
        assert process.poll() is None, "".join(seen)
        early = [line for line in seen if "] trial " in line]
        assert len(early) == 2, "".join(seen)
        for line in early:
            assert re.fullmatch(
                r"\[[12]/3\] trial [01] done \d+\.\d s  a=[12] seed=7  loss=[12] throughput=[12]00"
                r"\n",
                line,
            ), line
        (project / "go").touch()
        process.wait(timeout=180)
    finally:
        process.kill() if process.poll() is None else None
        process.wait()
        reader.join()
    while not lines.empty():
        seen.append(lines.get())
    text = "".join(seen)
    assert process.returncode == 0, text
    assert "\x1b" not in text
    assert re.search(r"^\[3/3\] trial 2 done \d+\.\d s  a=3 seed=7  loss=3 ", text, re.M), text
    header = next(line for line in text.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "#",
        "a",
        "status",
        "time",
        "loss",
        "throughput",
    ]
    assert text.index("[3/3]") < text.index("┃") < text.index("3 done, 0 cached, 0 failed in")
