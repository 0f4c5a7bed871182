"""Searches (``optimize:`` jobs) against a real Prefect API, real Optuna storages (a
journal file, a SQLite RDB) and a real MLflow store.

Each test writes its own project: a job file and a small objective that records every
evaluation (its parameters and wall-clock start/end) in ``evaluations.log``, so the
tests can tell what ran, when, and how often.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sweepflow.cli.main import main

pytestmark = pytest.mark.usefixtures("prefect_api")

ROOT = Path(__file__).resolve().parents[1]

OBJECTIVE = '''
import json, os, sys, time
from pathlib import Path

import sweepflow


def _record(event, params, **more):
    line = json.dumps({"event": event, "params": params, "pid": os.getpid(), **more})
    with open(Path(__file__).parent / "evaluations.log", "a") as log:
        log.write(line + "\\n")


def quadratic(args):
    """call: (x - 1)^2 + (y + 2)^2, recording when it ran."""
    params = dict(item.split("=", 1) for item in args)
    start = time.time()
    time.sleep(float(params.get("sleep", 0)))
    x, y = float(params["x"]), float(params["y"])
    _record("finished", params, start=start, end=time.time())
    return {"loss": (x - 1) ** 2 + (y + 2) ** 2, "start": start, "end": time.time()}


def main():
    """run: the same objective as a program, reporting through sweepflow.log_metrics;
    with steps=N it reports N intermediate values and honours the pruner."""
    params = dict(item.split("=", 1) for item in sys.argv[1:])
    _record("started", params)
    x, y = float(params["x"]), float(params["y"])
    loss = (x - 1) ** 2 + (y + 2) ** 2
    steps = int(params.get("steps", 0))
    for step in range(steps):
        time.sleep(float(params.get("sleep", 0)) / max(steps, 1))
        sweepflow.log_metrics({"loss": loss + 1.0 / (step + 1)}, step=step)
        if sweepflow.should_prune():
            _record("pruned", params, step=step)
            raise sweepflow.TrialPruned()
    if not steps:
        time.sleep(float(params.get("sleep", 0)))
    metric = params.get("report", "loss")
    sweepflow.log_metrics({metric: loss})
    _record("finished", params)


if __name__ == "__main__":
    main()
'''


def make_project(project: Path, jobs: str) -> Path:
    (project / "objective.py").write_text(OBJECTIVE)
    sys.modules.pop("objective", None)  # call: trials import this project's module
    path = project / "sweepflow.yaml"
    path.write_text(textwrap.dedent(jobs).lstrip("\n"))
    return path


def evaluations(project: Path, event: str = "finished") -> list[dict[str, Any]]:
    log = project / "evaluations.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] == event]


def load_study(project: Path, name: str, storage: str | None = None) -> Any:
    import optuna

    from sweepflow.search.study import open_storage

    location = storage or str(project / ".sweepflow" / "studies" / f"{name}.journal")
    return optuna.load_study(study_name=name, storage=open_storage(location))


def mlflow_runs(project: Path, experiment: str, role: str) -> list[Any]:
    from mlflow import MlflowClient

    uri = f"sqlite:///{(project / '.sweepflow' / 'mlflow.db').as_posix()}"
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client.search_runs(
        [found.experiment_id], f"tags.`sweepflow.role` = '{role}'", max_results=1000
    )


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_LOGGING_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def key(params: dict[str, str]) -> tuple:
    return (params["x"], params["y"])


def _text(trial: Any) -> tuple:
    """A trial's (x, y) as the program received them."""
    return (f"{trial.params['x']:.12g}", f"{trial.params['y']:.12g}")


# -- convergence, MLflow, study command --------------------------------------------
def test_quadratic_converges_and_is_recorded(project: Path, capsys) -> None:
    make_project(
        project,
        """
        jobs:
          tune:
            call: objective:quadratic
            optimize:
              metric: loss
              n_trials: 40
              parallel: 2
              space: x=-5.0:5.0 y=-5.0:5.0
        """,
    )
    assert main(["run", "tune"]) == 0
    out = capsys.readouterr().err
    assert "40 done" in out and "best trial #" in out

    study = load_study(project, "tune")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 40
    best = study.best_trial
    # TPE after 40 trials lands near the optimum (1, -2); random search's expected best
    # over 40 draws on this 10x10 square is around 1.5.
    assert best.value < 0.5, best
    assert abs(best.params["x"] - 1) < 0.7 and abs(best.params["y"] + 2) < 0.7
    assert len(evaluations(project)) == 40  # each trial evaluated exactly once

    parent = mlflow_runs(project, "tune", "parent")
    assert len(parent) == 1 and parent[0].data.tags["optuna.study_name"] == "tune"
    assert parent[0].data.metrics["best_loss"] == pytest.approx(best.value)
    children = mlflow_runs(project, "tune", "trial")
    numbers = Counter(r.data.tags["optuna.trial_number"] for r in children)
    assert len(numbers) == 40 and set(numbers.values()) == {1}
    tagged = [r for r in children if r.data.tags.get("sweepflow.best") == "true"]
    assert [r.data.tags["optuna.trial_number"] for r in tagged] == [str(best.number)]
    assert float(tagged[0].data.params["x"]) == pytest.approx(best.params["x"])
    assert tagged[0].info.run_id == best.user_attrs["mlflow_run_id"]

    export = project / "trials.csv"
    assert main(["study", "tune", "--limit", "3", "--export", str(export), "--plot", "plots"]) == 0
    shown = capsys.readouterr().out
    assert f"best trial #{best.number}" in shown and "40 complete" in shown
    import pandas as pd

    frame = pd.read_csv(export)
    assert len(frame) == 40
    assert {"number", "state", "value", "x", "y"} <= set(frame.columns)
    assert frame["value"].min() == pytest.approx(best.value)
    pngs = {p.name: p.stat().st_size for p in (project / "plots").glob("*.png")}
    assert set(pngs) == {"optimization_history.png", "param_importances.png", "slice.png"}
    assert min(pngs.values()) > 10_000
    assert main(["study", "tune", "--export", str(project / "trials.parquet")]) == 0
    assert len(pd.read_parquet(project / "trials.parquet")) == 40


def test_parallel_trials_overlap(project: Path) -> None:
    make_project(
        project,
        """
        jobs:
          tune:
            call: objective:quadratic
            optimize: {metric: loss, n_trials: 6, parallel: 2, sampler: random,
                       space: x=-5.0:5.0 y=-5.0:5.0}
            add: sleep=1
        """,
    )
    from flows.optimize import optimize

    summary = optimize(job="tune", job_file=str(project / "sweepflow.yaml"))
    spans = sorted((r["start"], r["end"]) for r in evaluations(project))
    assert len(spans) == 6 and summary["counts"]["done"] == 6
    overlaps = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    assert overlaps >= 3, spans  # two at a time: neighbours overlap


# -- resume ----------------------------------------------------------------------------
def test_sigkilled_search_resumes_to_exactly_n_trials(project: Path, tmp_path: Path) -> None:
    make_project(
        project,
        """
        jobs:
          tune:
            run: python objective.py
            optimize: {metric: loss, n_trials: 8, parallel: 2, space: x=-5.0:5.0 y=-5.0:5.0}
            add: sleep=1.5
        """,
    )
    command = [sys.executable, "-m", "sweepflow", "run", "tune"]
    with (tmp_path / "first.out").open("wb") as out:
        first = subprocess.Popen(command, cwd=project, env=child_env(), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        told: set[tuple] = set()
        while len(told) < 3:  # three trials told COMPLETE (so their results are cached)
            assert first.poll() is None, (tmp_path / "first.out").read_text()
            assert time.monotonic() < deadline, "three trials did not finish in 120 s"
            time.sleep(0.2)
            if (project / ".sweepflow" / "studies" / "tune.journal").exists():
                told = {
                    _text(t)
                    for t in load_study(project, "tune").trials
                    if t.state.name == "COMPLETE"
                }
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.kill()
        first.wait()
    assert len(told) < 8

    second = subprocess.run(
        command, cwd=project, env=child_env(), capture_output=True, text=True, timeout=240
    )
    assert second.returncode == 0, second.stdout + second.stderr

    study = load_study(project, "tune")
    states = Counter(t.state.name for t in study.trials)
    assert states["COMPLETE"] == 8, states
    assert states["RUNNING"] == 0
    # Trials left RUNNING by the killed driver: told their cached value if they had
    # finished, else FAIL as interrupted (not counted, their slots asked again).
    for trial in study.trials:
        if trial.state.name == "FAIL":
            assert trial.system_attrs.get("sweepflow:interrupted") is True
    finished = Counter(key(e["params"]) for e in evaluations(project))
    assert set(finished.values()) == {1}, "a trial was evaluated twice"
    completed = {_text(t) for t in study.trials if t.state.name == "COMPLETE"}
    assert completed <= set(finished), "a trial was told a value it never computed"
    assert told <= completed, "a trial told before the kill was asked again"
    runs = mlflow_runs(project, "tune", "trial")
    done = Counter(r.data.tags["optuna.trial_number"] for r in runs if r.info.status == "FINISHED")
    assert len(done) == 8 and set(done.values()) == {1}
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}


def test_a_finished_but_untold_trial_is_told_from_the_cache(project: Path, capsys) -> None:
    make_project(
        project,
        """
        jobs:
          tune:
            call: objective:quadratic
            optimize: {metric: loss, n_trials: 3, sampler: random, space: x=-5.0:5.0 y=0:3}
        """,
    )
    assert main(["run", "tune"]) == 0
    first = load_study(project, "tune").trials[0]
    # A dead driver's trial with the same parameters, left RUNNING: as if the driver was
    # killed between the trial's end and its tell.
    study = load_study(project, "tune")
    study.enqueue_trial(dict(first.params))
    stale = study.ask(dict(first.distributions))
    study._storage.set_trial_system_attr(stale._trial_id, "sweepflow:driver", "nohost:1:1")
    evaluated = len(evaluations(project))

    assert main(["run", "tune", "--n-trials", "5"]) == 0
    study = load_study(project, "tune")
    told = study.trials[stale.number]
    assert told.state.name == "COMPLETE" and told.value == pytest.approx(first.value)
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 5}
    assert len(evaluations(project)) == evaluated + 1  # only the fifth trial ran
    capsys.readouterr()


def test_cache_hits_are_told_without_running(project: Path, capsys) -> None:
    make_project(
        project,
        """
        jobs:
          grid:
            call: objective:quadratic
            optimize: {metric: loss, sampler: grid, space: 'x=0:2 y=-2,-1'}
        """,
    )
    assert main(["run", "grid"]) == 0
    assert "6 done, 0 cached" in capsys.readouterr().err
    assert len(evaluations(project)) == 6
    # The same search in another study: every trial is a cache hit, told its value.
    other = f"sqlite:///{project / 'other.db'}"
    assert main(["run", "grid", "--storage", other]) == 0
    assert "0 done, 6 cached" in capsys.readouterr().err
    assert len(evaluations(project)) == 6
    study = load_study(project, "grid", other)
    assert sorted(t.value for t in study.trials) == sorted(
        (x - 1) ** 2 + (y + 2) ** 2 for x in (0, 1, 2) for y in (-2, -1)
    )
    assert study.best_trial.params == {"x": 1, "y": -2}


# -- pruning ---------------------------------------------------------------------------
def test_median_pruner_prunes_with_an_rdb_storage(project: Path, capsys) -> None:
    storage = f"sqlite:///{project / 'study.db'}"
    make_project(
        project,
        f"""
        jobs:
          prune:
            run: python objective.py
            optimize:
              metric: loss
              n_trials: 10
              parallel: 1
              sampler: random
              pruner: median
              storage: {storage}
              space: x=-5.0:5.0 y=-5.0:5.0
            add: steps=4
        """,
    )
    assert main(["run", "prune"]) == 0
    out = capsys.readouterr().err
    study = load_study(project, "prune", storage)
    states = Counter(t.state.name for t in study.trials)
    assert states["PRUNED"] >= 1 and states["COMPLETE"] >= 2, states
    assert states["PRUNED"] + states["COMPLETE"] == 10
    assert f"{states['PRUNED']} pruned" in out
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    for trial in pruned:
        assert trial.intermediate_values, "a pruned trial reported its steps first"
        assert len(trial.intermediate_values) < 4  # stopped before the last step
    assert len(evaluations(project, "pruned")) == states["PRUNED"]
    # A pruned trial is not cached: no result under its key.
    from sweepflow.cache.results import load_result

    results = project / ".sweepflow" / "results"
    runs = mlflow_runs(project, "prune", "trial")
    by_state = Counter(r.data.tags["optuna.state"] for r in runs)
    assert by_state == {"PRUNED": states["PRUNED"], "COMPLETE": states["COMPLETE"]}
    for run in runs:
        hit = load_result(results, run.data.tags["sweepflow.cache_key"])
        assert (hit is not None) == (run.data.tags["optuna.state"] == "COMPLETE")


def test_metric_logged_to_mlflow_and_cmaes(project: Path) -> None:
    """A program may log the objective straight to its MLflow run (MLFLOW_RUN_ID);
    the CMA-ES sampler runs under ask/tell."""
    (project / "logs_to_mlflow.py").write_text(
        textwrap.dedent(
            """
            import sys
            import mlflow

            params = dict(item.split("=", 1) for item in sys.argv[1:])
            with mlflow.start_run():  # the trial's run, from MLFLOW_RUN_ID
                mlflow.log_metric("loss", (float(params["x"]) - 1) ** 2)
            """
        )
    )
    make_project(
        project,
        """
        jobs:
          tune:
            run: python logs_to_mlflow.py
            optimize: {metric: loss, n_trials: 3, parallel: 1, sampler: cmaes,
                       space: x=-5.0:5.0 y=0.0:1.0}
        """,
    )
    from flows.optimize import optimize

    summary = optimize(job="tune", job_file=str(project / "sweepflow.yaml"))
    assert summary["counts"]["done"] == 3
    study = load_study(project, "tune")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for trial in study.trials:
        assert trial.value == pytest.approx((trial.params["x"] - 1) ** 2, rel=1e-6)


# -- bad input -------------------------------------------------------------------------
def test_missing_metric_fails_the_trial_clearly(project: Path) -> None:
    make_project(
        project,
        """
        jobs:
          tune:
            run: python objective.py
            optimize: {metric: loss, n_trials: 2, parallel: 1, space: x=0.0:1.0 y=0.0:1.0}
            add: report=accuracy
        """,
    )
    command = [sys.executable, "-m", "sweepflow", "run", "tune"]
    done = subprocess.run(
        command, cwd=project, env=child_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 1, done.stderr
    err = done.stderr
    assert "reported no 'loss' metric (it reported: accuracy)" in err
    assert "sweepflow.log_metrics({'loss': value})" in err
    assert "Traceback" not in err
    study = load_study(project, "tune")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert "reported no 'loss'" in study.trials[0].user_attrs["error"]
