"""Benchmark: an Optuna search through sweepflow versus plain ``study.optimize``.

Run: ``.venv/bin/python bench/optimize.py [--trials 100] [--seconds 0.5]`` (about 2
minutes on 2 cores). In one run, on the same objective (sleeps ``--seconds``, then
returns a quadratic of three parameters), with 2 trials in flight and TPE
(``constant_liar``) on a journal file:

- ideal: ``trials x seconds / 2``;
- plain Optuna: ``study.optimize(objective, n_trials, n_jobs=2)`` in this process;
- sweepflow: ``sweepflow run tune`` as a user runs it (a new process: imports, MLflow
  store, flow run, study, Prefect task and MLflow child run per trial, artifacts),
  reporting to a running ``prefect server`` (as after ``sweepflow up``); and the same
  search's ask-to-last-tell time from its trial records.

It prints wall times and the ratios to the ideal (the optimize issue's goal: 1.15x).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import _start_server

OBJECTIVE = """\
import time


def objective(args):
    p = dict(item.split("=", 1) for item in args)
    time.sleep(float(p["sleep"]))
    x, y, z = float(p["x"]), float(p["y"]), int(p["z"])
    return {"loss": (x - 2) ** 2 + (y + 1) ** 2 + (z - 3) ** 2}
"""

JOB = """\
jobs:
  tune:
    call: objective:objective
    optimize:
      metric: loss
      n_trials: {trials}
      parallel: 2
      sampler: tpe
      seed: 0
      space: x=-10.0:10.0 y=-10.0:10.0 z=0:6
    add: sleep={seconds}
"""


def _plain(trials: int, seconds: float, root: Path) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        y = trial.suggest_float("y", -10, 10)
        z = trial.suggest_int("z", 0, 6)
        time.sleep(seconds)
        return (x - 2) ** 2 + (y + 1) ** 2 + (z - 3) ** 2

    backend = optuna.storages.journal.JournalFileBackend(str(root / "plain.journal"))
    study = optuna.create_study(
        storage=optuna.storages.JournalStorage(backend),
        sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True, multivariate=True),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=2)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=0.5)
    args = parser.parse_args()
    ideal = args.trials * args.seconds / 2
    sweepflow = str(Path(sys.executable).with_name("sweepflow"))
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-opt-") as tmp:
        root = Path(tmp)
        project = root / "project"
        project.mkdir()
        (project / "objective.py").write_text(OBJECTIVE)
        (project / "sweepflow.yaml").write_text(
            JOB.format(trials=args.trials, seconds=args.seconds)
        )
        env = dict(os.environ, PREFECT_HOME=str(root / "prefect-home"))
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        plain = _plain(args.trials, args.seconds, root)
        server, url = _start_server(env, root / "server-home")
        try:
            env["PREFECT_API_URL"] = url
            started = time.perf_counter()
            subprocess.run(
                [sweepflow, "run", "tune"],
                cwd=project,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            end_to_end = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=30)
        loop = _loop_seconds(project / ".sweepflow" / "studies" / "tune.journal")
    print(f"{args.trials} trials of {args.seconds:g} s, 2 in flight; ideal {ideal:.1f} s")
    rows = [
        ("plain study.optimize(n_jobs=2)", plain),
        ("sweepflow run (end to end, new process)", end_to_end),
        ("sweepflow search loop (first ask to last tell)", loop),
    ]
    for label, seconds in rows:
        print(f"  {label:<48} {seconds:7.1f} s  {seconds / ideal:5.2f}x ideal")
    print(f"  sweepflow end to end / plain optuna: {end_to_end / plain:.2f}x")


def _loop_seconds(journal: Path) -> float:
    import optuna

    backend = optuna.storages.journal.JournalFileBackend(str(journal))
    study = optuna.load_study(study_name="tune", storage=optuna.storages.JournalStorage(backend))
    trials = study.get_trials(deepcopy=False)
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    return (end - start).total_seconds()


if __name__ == "__main__":
    main()
