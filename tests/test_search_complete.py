"""Running a search whose study already holds its ``n_trials`` again: ``sweepflow run``
prints the count and the best trial and exits 0, read from the study's file, with no
flow run and without Prefect; ``--n-trials`` larger than that runs the rest.

Real searches (a journal file and a SQLite study) against the session's Prefect API,
then ``sweepflow run`` again in a fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from sweepflow.cli.main import main

ROOT = Path(__file__).resolve().parents[1]

OBJECTIVE = """
def quadratic(args):
    params = dict(item.split("=", 1) for item in args)
    x, y = float(params["x"]), float(params["y"])
    return {"loss": (x - 1) ** 2 + (y + 2) ** 2}
"""

# Runs `sweepflow run` as the console script does, then says whether Prefect was loaded
# (a run that imports it is one that starts a server or a flow).
_RERUN = """
import sys
from sweepflow.cli.main import main
code = main(sys.argv[1:])
print("prefect imported:", "prefect" in sys.modules)
sys.exit(code)
"""

STORAGES = {"journal": "", "sqlite": "storage: sqlite:///studies/tune.db\n"}


def _project(project: Path, storage: str, n_trials: int) -> None:
    (project / "objective.py").write_text(OBJECTIVE)
    sys.modules.pop("objective", None)  # call: trials import this project's module
    optimize = (
        f"{STORAGES[storage]}metric: loss\nn_trials: {n_trials}\nsampler: random\nseed: 3\n"
        "space: x=-5.0:5.0 y=-5.0:5.0"
    )
    (project / "sweepflow.yaml").write_text(
        "jobs:\n  tune:\n    call: objective:quadratic\n    optimize:\n"
        + textwrap.indent(optimize, "      ")
        + "\n"
    )


def _env(api: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}
    env.pop("PREFECT_API_URL", None)
    if api:
        env["PREFECT_API_URL"] = api
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


def _rerun(project: Path, api: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _RERUN, "run", "tune", *args]
    return subprocess.run(
        command, cwd=project, env=_env(api), capture_output=True, text=True, timeout=120
    )


def _trials(project: Path, storage: str) -> list[Any]:
    import optuna

    from sweepflow.search.study import open_storage

    studies = project / ".sweepflow" / "studies"
    location = (
        f"sqlite:///{studies / 'tune.db'}" if storage == "sqlite" else str(studies / "tune.journal")
    )
    study = optuna.load_study(study_name="tune", storage=open_storage(location))
    return study.get_trials(deepcopy=False)


def _flow_runs(api: str) -> int:
    response = httpx.post(f"{api.rstrip('/')}/flow_runs/count", json={}, timeout=30)
    response.raise_for_status()
    return int(response.json())


def _best_line(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("best trial #")]
    return line


@pytest.mark.parametrize("storage", list(STORAGES))
def test_rerun_of_a_complete_search_starts_nothing(
    project: Path, prefect_api: str, capsys: pytest.CaptureFixture[str], storage: str
) -> None:
    _project(project, storage, n_trials=4)
    assert main(["run", "tune"]) == 0
    first = capsys.readouterr().err
    assert "4 done" in first
    before = [(t.number, t.state.name) for t in _trials(project, storage)]
    assert len(before) == 4
    runs = _flow_runs(prefect_api)

    again = _rerun(project, prefect_api)
    assert again.returncode == 0, again.stderr
    assert "study complete: 4 trials (use --n-trials to extend)" in again.stderr
    # The best trial as the end of the search printed it.
    assert _best_line(again.stderr) == _best_line(first)
    assert "see `sweepflow study tune`" in again.stderr
    assert "Traceback" not in again.stderr
    assert "prefect imported: False" in again.stdout
    assert _flow_runs(prefect_api) == runs  # no flow run created
    assert [(t.number, t.state.name) for t in _trials(project, storage)] == before

    # Without an API configured, nothing is started either (no temporary server).
    alone = _rerun(project, None)
    assert alone.returncode == 0, alone.stderr
    assert "study complete: 4 trials" in alone.stderr
    assert "prefect imported: False" in alone.stdout
    assert len(_trials(project, storage)) == 4


def test_more_n_trials_runs_the_rest(
    project: Path, prefect_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(project, "journal", n_trials=3)
    assert main(["run", "tune"]) == 0
    capsys.readouterr()
    runs = _flow_runs(prefect_api)

    assert main(["run", "tune", "--n-trials", "5"]) == 0
    extended = capsys.readouterr().err
    assert "2 done" in extended, extended
    assert "study complete" not in extended
    assert "resumed: 3 finished before" in extended
    assert _flow_runs(prefect_api) == runs + 1
    assert sorted(t.state.name for t in _trials(project, "journal")) == ["COMPLETE"] * 5

    # Complete at 5 now; the job's own n_trials (3) is complete too.
    for args in (("--n-trials", "5"), ()):
        again = _rerun(project, prefect_api, *args)
        assert again.returncode == 0, again.stderr
        assert "study complete: 5 trials (use --n-trials to extend)" in again.stderr
        assert "prefect imported: False" in again.stdout
    assert _flow_runs(prefect_api) == runs + 1
    assert len(_trials(project, "journal")) == 5
