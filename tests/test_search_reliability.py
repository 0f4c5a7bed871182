"""A search's study under stress and bad input: two drivers of one study, paths that
would leave the state folder, storages Optuna cannot open.

The bad-input tests never start Prefect (they fail before it); the fast driver test runs
two real processes on a real journal and SQLite storage without Prefect; one test runs
two real ``sweepflow run`` processes against the session's Prefect API.
"""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sweepflow.cli.main import main
from sweepflow.search.locations import lock_path, place_storage, storage_problem
from sweepflow.search.loop import ask_lock

ROOT = Path(__file__).resolve().parents[1]
FAST_OBJECTIVE = """
import time
from pathlib import Path


def quadratic(args):
    params = dict(item.split("=", 1) for item in args)
    return {"loss": (float(params["x"]) - 1) ** 2 + float(params["y"]) ** 2}


def gated(args):
    # quadratic, once the file 'go' exists (made when both drivers have asked)
    deadline = time.monotonic() + 120
    while not (Path(__file__).parent / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return quadratic(args)
"""


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return env


def _project(project: Path, optimize: str, call: str = "quadratic") -> Path:
    (project / "objective.py").write_text(FAST_OBJECTIVE)
    path = project / "sweepflow.yaml"
    path.write_text(
        f"jobs:\n  tune:\n    call: objective:{call}\n    optimize:\n"
        + textwrap.indent(textwrap.dedent(optimize).strip(), "      ")
        + "\n"
    )
    return path


def _load(location: str, name: str = "tune") -> Any:
    import optuna

    from sweepflow.search.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(location))


def _written(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# -- storage forms ---------------------------------------------------------------------
STORAGES = [
    ("journal-relative", "studies/a.journal", "/s/studies/a.journal"),
    ("journal-dotdot-inside", "x/../a.journal", "/s/a.journal"),
    ("journal-absolute", "/data/a.journal", "/data/a.journal"),
    ("sqlite-relative", "sqlite:///a.db", "sqlite:////s/a.db"),
    ("sqlite-absolute", "sqlite:////data/a.db", "sqlite:////data/a.db"),
    ("sqlite-query", "sqlite:///a.db?timeout=9", "sqlite:////s/a.db?timeout=9"),
    ("postgres", "postgresql://me@db/optuna", "postgresql://me@db/optuna"),
    ("driver", "mysql+pymysql://me@db/optuna", "mysql+pymysql://me@db/optuna"),
    ("bogus", "bogus://x", "has the scheme 'bogus', which no Optuna storage opens"),
    ("file-url", "file:///x.journal", "has the scheme 'file'"),
    ("redis", "redis://localhost", "has the scheme 'redis'"),
    ("not-a-url", "my db://x", "is not a storage URL"),
    ("empty", "", "is empty"),
    ("folder", "studies/", "names a folder"),
    ("journal-escapes", "../../x.journal", "leaves the state folder"),
    ("journal-escapes-inside", "a/../../x.journal", "leaves the state folder"),
    ("sqlite-escapes", "sqlite:///../x.db", "leaves the state folder"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [s[1:] for s in STORAGES], ids=[s[0] for s in STORAGES]
)
def test_storage_forms(text: str, expected: str) -> None:
    problem = storage_problem(text)
    if expected.startswith(("/", "sqlite", "postgresql", "mysql")):
        assert problem is None
        assert place_storage(text, Path("/s")) == expected
    else:
        assert problem is not None and expected in problem
        if "leaves" not in expected:  # the accepted forms, listed
            assert "sqlite:///study.db" in problem and "postgresql://" in problem
        with pytest.raises(ValueError):
            place_storage(text, Path("/s"))


# -- refused when the job file is loaded -----------------------------------------------
REFUSED = [
    ("study-escapes", "study: ../../../x", "optimize.study at sweepflow.yaml:5", "contains '/'"),
    ("study-slash", "study: team/tune", "optimize.study at sweepflow.yaml:5", "contains '/'"),
    ("journal", "storage: ../../x.journal", "optimize.storage at sweepflow.yaml:5", "leaves"),
    ("sqlite", "storage: sqlite:///../x.db", "optimize.storage at sweepflow.yaml:5", "leaves"),
    ("bogus", "storage: bogus://x", "optimize.storage at sweepflow.yaml:5", "scheme 'bogus'"),
]


@pytest.mark.parametrize(
    ("line", "where", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_bad_study_or_storage_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, line: str, where: str, message: str
) -> None:
    project = tmp_path / "a" / "b" / "project"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    monkeypatch.delenv("SWEEPFLOW_HOME", raising=False)
    _project(project, f"{line}\nmetric: loss\nspace: x=0.0:1.0 y=0.0:1.0")
    assert main(["run", "tune"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: Invalid value for jobs.tune.")
    assert where in err and message in err
    assert _written(tmp_path) == {
        "a",
        "a/b",
        *(f"a/b/project{p}" for p in ("", "/sweepflow.yaml", "/objective.py")),
    }


def test_bad_storage_option_is_refused_before_anything_runs(
    project: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, "metric: loss\nspace: x=0.0:1.0 y=0.0:1.0")
    assert main(["run", "tune", "--storage", "bogus://x"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --storage 'bogus://x' has the scheme 'bogus'")
        and err.count("\n") == 1
    )
    assert "sqlite:///study.db" in err and "postgresql://" in err  # what to write instead
    assert main(["run", "tune", "--storage", "../x.journal", "--dry-run"]) == 2
    assert "--storage '../x.journal' leaves the state folder" in capsys.readouterr().err
    assert main(["study", "tune", "--storage", "bogus://x"]) == 2
    assert "--storage 'bogus://x' has the scheme" in capsys.readouterr().err
    assert not (project / ".sweepflow").exists()


@pytest.mark.skipif(
    importlib.util.find_spec("MySQLdb") is not None, reason="the MySQL driver is installed"
)
def test_a_database_without_its_driver_is_refused(project: Path, capsys) -> None:
    _project(project, "metric: loss\nstorage: mysql://me:secret@db/optuna\nspace: x=0.0:1.0")
    assert main(["run", "tune"]) == 2
    err = capsys.readouterr().err
    assert "needs the database driver 'MySQLdb'" in err and "pip install mysqlclient" in err
    assert "(jobs.tune.optimize.storage at sweepflow.yaml:6)" in err
    assert "secret" not in err  # the password is masked
    assert not (project / ".sweepflow").exists()


def test_study_names_name_files_inside_the_state_folder(tmp_path: Path) -> None:
    from sweepflow.search.study import study_location
    from sweepflow.spec.jobs import Optimize

    state = tmp_path / "state"
    for name in ("..", "tune v2", ".hidden", "a:b", "x" * 300):
        settings = Optimize(metric="loss", space="x=0:1", study=name)
        found, location = study_location(settings, "tune", state)
        assert found == name
        assert Path(location).parent == state / "studies", location
    _, placed = study_location(Optimize(metric="loss", space="x=0:1"), "tune", state, "t.db")
    assert placed == str(state / "t.db")


# -- two drivers of one study ----------------------------------------------------------
DRIVER = """
import sys, time
from pathlib import Path

import optuna

from sweepflow.plan.space import Dimension, SearchSpace
from sweepflow.search.locations import lock_path
from sweepflow.search.loop import StudySource, ask_lock
from sweepflow.search.study import open_storage

location, state = sys.argv[1], Path(sys.argv[2])
optuna.logging.set_verbosity(optuna.logging.WARNING)
lock = lambda: ask_lock(lock_path(location, state, "s"))
with lock():
    study = optuna.create_study(study_name="s", storage=open_storage(location), load_if_exists=True)
space = SearchSpace((Dimension("x", "float", 0.0, 1.0),), {}, ())


class Spec:
    def __init__(self, index, params):
        self.index, self.cache_key = index, ""


source = StudySource(study, space, 10, Spec, lambda key: None, "driver", lock=lock)
while (unit := source.take(0)) is not None:
    time.sleep(0.02)  # the trial runs
    study.tell(unit.items[0].trial.number, 0.5)
print(source.asked)
"""


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_drivers_share_n_trials_under_the_ask_lock(tmp_path: Path, kind: str) -> None:
    """Three processes ask one study at once: together exactly ``n_trials`` asks."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    location = {"journal": str(tmp_path / "s.journal"), "sqlite": f"sqlite:///{tmp_path}/s.db"}
    command = [sys.executable, str(script), location[kind], str(tmp_path)]
    drivers = [
        subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    outputs = [d.communicate(timeout=120) for d in drivers]
    for driver, (_, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err.decode()
    assert sum(int(out) for out, _ in outputs) == 10
    states = Counter(t.state.name for t in _load(location[kind], "s").trials)
    assert states == {"COMPLETE": 10}


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_sweepflow_runs_of_one_study_run_n_trials(project: Path, storage: str) -> None:
    """Two ``sweepflow run tune`` at once (same job file, state folder and study): the
    study ends with exactly ``n_trials`` trials; a third run finds it complete and says
    so at once. A relative SQLite path is placed in the state folder.

    The trials wait until both drivers have asked some, so the drivers overlap whatever
    their start-up times.
    """
    line = "storage: sqlite:///studies/tune.db\n" if storage == "sqlite" else ""
    optimize = line + "metric: loss\nn_trials: 10\nparallel: 2\nspace: x=-5.0:5.0 y=-5.0:5.0"
    _project(project, optimize, call="gated")
    path = (
        project / ".sweepflow" / "studies" / ("tune.db" if storage == "sqlite" else "tune.journal")
    )
    location = f"sqlite:///{path}" if storage == "sqlite" else str(path)
    command = [sys.executable, "-m", "sweepflow", "run", "tune"]
    kwargs: dict[str, Any] = {"cwd": project, "env": _env(), "text": True}
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    # --debug: a driver that fails shows its traceback
    drivers = [subprocess.Popen([*command, "--debug"], **pipes, **kwargs) for _ in "ab"]
    try:
        deadline = time.monotonic() + 120
        asking: set[str] = set()
        while len(asking) < 2:  # both drivers hold asked trials
            assert all(d.poll() is None for d in drivers), [d.communicate() for d in drivers]
            assert time.monotonic() < deadline, "the two drivers did not both ask in 120 s"
            time.sleep(0.2)
            with ask_lock(lock_path(location, project / ".sweepflow", "tune")):  # as drivers do
                if path.exists():
                    with contextlib.suppress(KeyError):  # no study yet
                        trials = _load(location).trials
                        asking = {t.user_attrs.get("sweepflow:driver", "") for t in trials}
            asking.discard("")
        (project / "go").touch()
        outputs = [d.communicate(timeout=120) for d in drivers]
    finally:
        for driver in drivers:
            driver.kill()
    for driver, (_, err) in zip(drivers, outputs, strict=True):
        assert driver.returncode == 0, err
    assert Counter(t.state.name for t in _load(location).trials) == {"COMPLETE": 10}
    written = _written(project.parent)
    assert "project/.sweepflow/studies/tune-plots" in written
    assert all(p == "project" or p.startswith("project/") for p in written)

    started = time.monotonic()
    third = subprocess.run(command, capture_output=True, timeout=60, **kwargs)
    assert third.returncode == 0, third.stderr
    assert "study 'tune' already holds 10 of 10 trials" in third.stderr
    assert "extend it with --n-trials" in third.stderr
    assert time.monotonic() - started < 20  # no flow started
    assert len(_load(location).trials) == 10
