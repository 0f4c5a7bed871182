"""Small things users trip over in the ``sweepflow`` command line: whole command
descriptions in ``--help``, shell completion, a stale ``PREFECT_API_URL``, and
``study --export``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweepflow.cli.main import main
from sweepflow.services.files import free_ports

ROOT = Path(__file__).resolve().parents[1]

JOBS = """
jobs:
  tune:
    call: objective:quadratic
    optimize:
      metric: loss
      n_trials: 3
      space: x=-5.0:5.0 y=-5.0:5.0
  deployed:
    run: python train.py
    sets:
      - each: lr=0.1
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a search job and a sweep job, as the working directory."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "sweepflow.yaml").write_text(textwrap.dedent(JOBS).lstrip("\n"))
    (folder / "objective.py").write_text(
        "def quadratic(args):\n"
        "    p = dict(a.split('=', 1) for a in args)\n"
        "    return {'loss': (float(p['x']) - 1) ** 2 + (float(p['y']) + 2) ** 2}\n"
    )
    monkeypatch.chdir(folder)
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    return folder


def _sweepflow(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m sweepflow ARGS`` as a user's shell runs it."""
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def test_help_shows_whole_command_descriptions() -> None:
    done = _sweepflow("--help", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.partition("Commands:")[2]
    assert commands and "..." not in commands and "…" not in commands
    text = " ".join(done.stdout.split())  # descriptions wrap, whole
    assert "as a cached Prefect task, tracked in MLflow." in text
    assert "Print the resolved job (defaults filled in, sets parsed and merged) as YAML." in text
    assert "Register one deployment 'run-job/<job>' per job (updates existing ones)." in text
    assert all(len(line) <= 80 for line in done.stdout.splitlines())


@pytest.mark.parametrize(
    ("app", "description"),
    [
        ("llc", "Estimate the LLC of TARGET with SAMPLER; print it, write llc.json and PNG plots."),
        ("profile", "Print the resolved profile as YAML; for SLURM, then the job script of each"),
    ],
)
def test_sub_app_help_shows_whole_command_descriptions(app: str, description: str) -> None:
    done = _sweepflow(app, "--help", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    commands = done.stdout.partition("Commands:")[2]
    assert commands and "..." not in commands and "…" not in commands
    assert description in " ".join(commands.split())


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_for_a_named_shell(shell: str, capsys) -> None:
    assert main(["--show-completion", shell]) == 0
    script = capsys.readouterr().out
    assert "_SWEEPFLOW_COMPLETE" in script and f"complete_{shell}" in script


def test_show_completion_names_the_shells_for_a_bad_one(capsys) -> None:
    assert main(["--show-completion", "tcsh"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown shell 'tcsh'" in err and "bash, zsh" in err


def test_completion_completes_commands_after_debug() -> None:
    done = _sweepflow(
        _SWEEPFLOW_COMPLETE="complete_bash", COMP_WORDS="sweepflow --debug st", COMP_CWORD="2"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["study", "status"]


@pytest.mark.parametrize("command", [["run", "tune"], ["deploy", "deployed"]], ids=str)
def test_a_stale_prefect_api_url_fails_in_one_line(project: Path, command: list[str]) -> None:
    url = f"http://127.0.0.1:{free_ports(1)[0]}/api"
    done = _sweepflow(*command, PREFECT_API_URL=url)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: nothing answers at {url} ")
    assert lines[0].endswith("start it (sweepflow up) or unset PREFECT_API_URL")
    assert not (project / "evaluations.log").exists()


def _make_study(project: Path) -> None:
    """A real study of three finished trials where ``sweepflow run tune`` keeps it."""
    import optuna

    from sweepflow.search.study import open_storage

    storage = open_storage(str(project / ".sweepflow" / "studies" / "tune.journal"))
    study = optuna.create_study(study_name="tune", storage=storage)
    for x in (0.0, 1.0, 2.0):
        study.enqueue_trial({"x": x, "y": -2.0})
    study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2, n_trials=3)


@pytest.mark.parametrize(
    ("export", "written"),
    [
        ("csv", "tune-trials.csv"),
        ("parquet", "tune-trials.parquet"),
        ("out/trials.csv", "out/trials.csv"),
        ("trials.parquet", "trials.parquet"),
    ],
)
def test_study_export_writes_the_file(project: Path, export: str, written: str, capsys) -> None:
    import pandas as pd

    _make_study(project)
    assert main(["study", "tune", "--export", export]) == 0
    out = capsys.readouterr().out
    path = project / written
    assert f"wrote 3 trials to {path}" in out
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    assert sorted(frame["x"]) == [0.0, 1.0, 2.0]


def test_study_export_to_a_bad_name_fails_before_the_table(project: Path, capsys) -> None:
    _make_study(project)
    assert main(["study", "tune", "--export", "trials.xlsx"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "--export trials.xlsx: give a file ending in .csv or .parquet" in err
