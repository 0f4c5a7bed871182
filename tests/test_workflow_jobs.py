"""``workflow:`` jobs driven as a user drives them: ``sweepflow run`` in a child process
against the session's Prefect API, read back from the steps' own log, MLflow, Prefect
and the CLI.

The project is a prepare -> train -> evaluate pipeline in plain numpy; each step appends
a line (its name and config) to ``calls.log`` when it runs, so a test sees exactly which
steps ran. One project is swept, re-run, zipped and searched once for the module (the
``ran`` fixture); each test reads what one of those runs did. The bad-input tests need
no Prefect API: their runs stop before anything starts (or fail on an address where no
API answers, rather than start a server of their own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from test_run_job import child_env

# Where a check that should refuse bad input before anything starts lets it through, the
# run must not start a Prefect server of its own: it fails on this address instead.
NO_API = "http://127.0.0.1:9/api"

HEX64 = r"[0-9a-f]{64}"

FILES = {
    "steps_log.py": """
        from pathlib import Path


        def called(name, **values):
            line = " ".join([name, *(f"{k}={v}" for k, v in sorted(values.items()))])
            with open(Path(__file__).parent / "calls.log", "a") as handle:
                handle.write(line + "\\n")
        """,
    "pipe.py": """
        import json
        from pathlib import Path

        import numpy as np
        from pydantic import BaseModel

        import sweepflow
        from steps_log import called


        class PrepareConfig(BaseModel):
            n: int = 32


        class TrainConfig(BaseModel):
            lr: float = 0.1
            seed: int = 0
            steps: int = 10


        class EvaluateConfig(BaseModel):
            split: str = "test"


        @sweepflow.step(outputs={"dataset": "dataset"})
        def prepare(cfg: PrepareConfig, workspace: Path) -> dict[str, Path]:
            called("prepare", n=cfg.n)
            x = np.random.default_rng(0).normal(size=cfg.n)
            np.save(workspace / "data.npy", np.stack([x, 2.0 * x]))
            return {"dataset": workspace / "data.npy"}


        @sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
        def train(
            cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path
        ) -> dict[str, Path]:
            called("train", lr=cfg.lr, seed=cfg.seed, steps=cfg.steps)
            x, y = np.load(dataset.path)
            w = float(np.random.default_rng(cfg.seed).normal())
            for _ in range(cfg.steps):
                w -= cfg.lr * float(((w * x - y) * x).mean())
            sweepflow.log_metrics({"loss": float(((w * x - y) ** 2).mean())})
            (workspace / "model.json").write_text(json.dumps({"w": w}))
            return {"model": workspace / "model.json"}


        @sweepflow.step(
            inputs={"dataset": "dataset", "model": "model"}, outputs={"evaluation": "evaluation"}
        )
        def evaluate(
            cfg: EvaluateConfig, dataset: sweepflow.Artifact, model: sweepflow.Artifact,
            workspace: Path,
        ) -> dict[str, Path]:
            called("evaluate")
            x, y = np.load(dataset.path)
            w = json.loads(model.path.read_text())["w"]
            mse = float(((w * x - y) ** 2).mean())
            sweepflow.log_metrics({"test_mse": mse})
            (workspace / "evaluation.json").write_text(json.dumps({"mse": mse}))
            return {"evaluation": workspace / "evaluation.json"}


        train_and_evaluate = sweepflow.Workflow("train_and_evaluate", [prepare, train, evaluate])
        """,
    "config.yaml": """
        prepare:
          n: 32
        train:
          lr: 0.1
          seed: 0
          steps: 10
        evaluate:
          split: test
        """,
    "sweepflow.yaml": """
        workflows:
          train_and_evaluate: pipe:train_and_evaluate
        jobs:
          sweep:
            workflow: train_and_evaluate
            config: config.yaml
            sets:
              - each: train.lr=0.3,0.1,0.03 train.seed=0:2
          zipped:
            workflow: pipe:train_and_evaluate
            config: config.yaml
            sets:
              - zip: train.lr=0.2,0.05 train.steps=5,20
                seeds: train.seed=0:1
          search:
            workflow: train_and_evaluate
            config: config.yaml
            optimize:
              metric: evaluate.test_mse
              space: train.lr=log(0.01:1.0) train.steps=5,10,20
              n_trials: 4
          bad_key:
            workflow: train_and_evaluate
            config: config.yaml
            sets:
              - each: train.lr=0.1 train.lrr=0.1,0.2
          unknown_workflow:
            workflow: train_and_evaluat
            config: config.yaml
            sets:
              - each: train.lr=0.1
          no_config:
            workflow: train_and_evaluate
            config: configs/missing.yaml
            sets:
              - each: train.lr=0.1
          plain_seeds:
            workflow: train_and_evaluate
            config: config.yaml
            seeds: 2
            sets:
              - each: train.lr=0.1
          bad_search:
            workflow: train_and_evaluate
            config: config.yaml
            optimize:
              metric: evaluate.test_mse
              space: train.lrr=log(0.01:1.0)
              n_trials: 2
        """,
}

SWEEP_ORDER = [(lr, seed) for lr in ("0.3", "0.1", "0.03") for seed in ("0", "1", "2")]
SWEEP = set(SWEEP_ORDER)


def write_project(folder: Path) -> Path:
    """The pipeline project in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FILES.items():
        (folder / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return folder


def sweepflow_env() -> dict[str, str]:
    """This environment for a child (the session's Prefect API, where one started),
    without the caller's MLflow or sweepflow settings: the project's defaults apply."""
    env = child_env()
    for name in (
        "SWEEPFLOW_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID",
        "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID",
    ):  # fmt: skip
        env.pop(name, None)
    return env


def sweepflow(
    project: Path, *args: str, api: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``sweepflow ARGS`` in ``project``, as typed in a terminal there (with
    ``PREFECT_API_URL=api`` if given)."""
    command = [sys.executable, "-m", "sweepflow", *args]
    env = sweepflow_env() | ({"PREFECT_API_URL": api} if api else {})
    return subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=300
    )


def calls(project: Path) -> list[str]:
    """The steps that ran since the last call (their log lines), and a fresh log."""
    log = project / "calls.log"
    found = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return found


def step_names(lines: list[str]) -> Counter[str]:
    """How many times each step ran, from ``calls.log`` lines."""
    return Counter(line.split()[0] for line in lines)


def mlflow_client(project: Path) -> Any:
    from mlflow import MlflowClient

    uri = f"sqlite:///{(project / '.sweepflow' / 'mlflow.db').resolve().as_posix()}"
    return MlflowClient(tracking_uri=uri)


def runs_of(project: Path, job: str, role: str) -> list[Any]:
    """MLflow runs of ``job``'s experiment with ``sweepflow.role=<role>``, oldest first."""
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name(job)
    assert experiment is not None, f"no MLflow experiment {job!r}"
    return client.search_runs(
        [experiment.experiment_id],
        f"tags.`sweepflow.role` = '{role}'",
        max_results=1000,
        order_by=["attributes.start_time ASC"],
    )


def task_runs(flow_run_id: str) -> list[Any]:
    """The task runs of a flow run, from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as prefect_client:
        return prefect_client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])),
            limit=200,
        )


@dataclass
class Ran:
    """What the module's runs did: each run's process, the steps it ran, and the
    store's artifacts after it (``sweepflow artifacts ls --json``)."""

    project: Path
    done: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    steps: dict[str, list[str]] = field(default_factory=dict)
    artifacts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def run(self, name: str, *args: str, listed: bool = True) -> None:
        self.done[name] = sweepflow(self.project, "run", *args)
        self.steps[name] = calls(self.project)
        if not listed:
            return
        listed = sweepflow(self.project, "artifacts", "ls", "--json")
        assert listed.returncode == 0, listed.stderr
        self.artifacts[name] = json.loads(listed.stdout)

    def ok(self, name: str) -> subprocess.CompletedProcess[str]:
        done = self.done[name]
        assert done.returncode == 0, done.stdout + done.stderr
        return done


@pytest.fixture(scope="module")
def ran(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Ran:
    """The sweep run twice, then the zipped job, then the search, in one project."""
    ran = Ran(write_project(tmp_path_factory.mktemp("workflow jobs") / "project"))
    ran.run("first", "sweep")
    ran.run("second", "sweep")
    ran.run("zipped", "zipped", listed=False)
    ran.run("search", "search", listed=False)
    return ran


def trial_runs(ran: Ran, job: str, sweep: int = 0) -> tuple[Any, list[Any]]:
    """The ``sweep``-th parent run of ``job`` and its trials' runs."""
    parent = runs_of(ran.project, job, "parent")[sweep]
    children = [
        run
        for run in runs_of(ran.project, job, "trial")
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ]
    return parent, children


# -- 1. a sweep makes a step its trials share once; a re-run is all hits -----------------
def test_sweep_makes_the_shared_step_once(ran: Ran) -> None:
    done = ran.ok("first")
    assert step_names(ran.steps["first"]) == {"prepare": 1, "train": 9, "evaluate": 9}
    trained = {tuple(line.split()[1:3]) for line in ran.steps["first"] if line.startswith("train")}
    assert trained == {(f"lr={lr}", f"seed={seed}") for lr, seed in SWEEP}
    assert "9 done, 0 cached, 0 failed" in done.stderr
    made = Counter(a["step"] for a in ran.artifacts["first"])
    assert made == {"prepare": 1, "train": 9, "evaluate": 9}, ran.artifacts["first"]


def test_trials_table_has_a_column_per_step_metric(ran: Ran) -> None:
    done = ran.ok("first")
    table = (done.stdout + done.stderr).splitlines()
    header = next(line for line in table if line.startswith("┃"))
    for column in ("train.lr", "train.seed", "status", "evaluate.test_mse", "train.loss"):
        assert column in header, header
    assert sum(line.startswith("│") and " done " in line for line in table) == 9, table

    rows = json.loads(sweepflow(ran.project, "results", "sweep", "--format", "json").stdout)
    assert len(rows) == 9
    assert {"train.lr", "train.seed", "train.loss", "evaluate.test_mse"} <= set(rows[0])
    assert {(row["train.lr"], row["train.seed"]) for row in rows} == SWEEP


def test_rerun_is_all_cached_with_no_task_run(ran: Ran) -> None:
    done = ran.ok("second")
    assert ran.steps["second"] == []
    assert "0 done, 9 cached, 0 failed" in done.stderr
    table = (done.stdout + done.stderr).splitlines()
    assert sum(line.startswith("│") and " cached " in line for line in table) == 9, table
    assert "nothing to run" in done.stderr  # read from the store: no flow run, no MLflow run
    assert ran.artifacts["second"] == ran.artifacts["first"]
    (first,) = runs_of(ran.project, "sweep", "parent")
    assert task_runs(first.data.tags["prefect.flow_run_id"]) != []  # the query can see some
    # The stored metrics, as the first run reported them.
    _, children = trial_runs(ran, "sweep")
    shown = {r.data.params["train.lr"] + " " + r.data.params["train.seed"]: r for r in children}
    for line in table:
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > 4 and cells[3] == "cached":
            run = shown[f"{cells[1]} {cells[2]}"]
            assert float(cells[5]) == pytest.approx(run.data.metrics["evaluate.test_mse"], 1e-5)


# -- 6. Prefect: a task run per step that ran, named after the step ---------------------
def test_task_runs_are_named_after_the_steps(ran: Ran) -> None:
    first = runs_of(ran.project, "sweep", "parent")[0]
    found = task_runs(first.data.tags["prefect.flow_run_id"])
    names = Counter(run.name.split("[")[0] for run in found)
    assert names == {"prepare": 1, "train": 9, "evaluate": 9}, [r.name for r in found]
    assert {run.state_type.value for run in found} == {"COMPLETED"}


# -- 4. MLflow: a parent and a run per trial, with the trial's lineage ------------------
def test_mlflow_runs_carry_params_metrics_and_lineage(ran: Ran) -> None:
    import re

    parents = runs_of(ran.project, "sweep", "parent")
    assert len(parents) == 1  # the re-run was read from the store
    parent, children = trial_runs(ran, "sweep")
    assert parent.info.status == "FINISHED"
    assert len(children) == 9
    assert {(r.data.params["train.lr"], r.data.params["train.seed"]) for r in children} == SWEEP
    client = mlflow_client(ran.project)
    datasets = set()
    for run in children:
        assert run.info.status == "FINISHED"
        assert set(run.data.params) == {"train.lr", "train.seed"}
        assert set(run.data.metrics) >= {"evaluate.test_mse", "train.loss"}
        tags = run.data.tags
        assert tags["sweepflow.step.prepare.status"] in {"ran", "hit"}
        assert tags["sweepflow.step.train.status"] == "ran"
        for name in (
            "prepare.cache_key", "prepare.output.dataset", "train.cache_key",
            "train.input.dataset", "train.output.model", "evaluate.cache_key",
            "evaluate.input.dataset", "evaluate.input.model", "evaluate.output.evaluation",
        ):  # fmt: skip
            assert re.fullmatch(HEX64, tags[f"sweepflow.step.{name}"]), (name, tags)
        dataset = tags["sweepflow.step.prepare.output.dataset"]
        model = tags["sweepflow.step.train.output.model"]
        assert tags["sweepflow.step.train.input.dataset"] == dataset
        assert tags["sweepflow.step.evaluate.input.model"] == model
        datasets.add(dataset)
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        by_digest = {{t.key: t.value for t in i.tags}["sweepflow.digest"]: i for i in inputs}
        assert set(by_digest) == {dataset, model}
        assert by_digest[dataset].dataset.name == f"dataset:{dataset[:12]}"
        context = {t.key: t.value for t in by_digest[dataset].tags}["mlflow.data.context"]
        assert context == "train.dataset,evaluate.dataset"
        lineage = json.loads(
            Path(client.download_artifacts(run.info.run_id, "lineage.json")).read_text()
        )
        assert [s["step"] for s in lineage["steps"]] == ["prepare", "train", "evaluate"]
    assert len(datasets) == 1  # one prepare for the sweep
    statuses = Counter(r.data.tags["sweepflow.step.prepare.status"] for r in children)
    assert statuses == {"ran": 1, "hit": 8}, statuses


# -- 2. zip: and seeds: over step keys --------------------------------------------------
def test_zip_and_seeds_over_step_keys(ran: Ran) -> None:
    done = ran.ok("zipped")
    assert "4 done" in done.stderr
    trained = {tuple(line.split()[1:]) for line in ran.steps["zipped"] if line.startswith("train")}
    assert trained == {
        ("lr=0.2", "seed=0", "steps=5"), ("lr=0.2", "seed=1", "steps=5"),
        ("lr=0.05", "seed=0", "steps=20"), ("lr=0.05", "seed=1", "steps=20"),
    }  # fmt: skip
    assert step_names(ran.steps["zipped"]) == {"train": 4, "evaluate": 4}  # prepare: a hit
    _, children = trial_runs(ran, "zipped")
    params = {tuple(sorted(r.data.params.items())) for r in children}
    assert params == {
        (("train.lr", lr), ("train.seed", seed), ("train.steps", steps))
        for lr, steps in (("0.2", "5"), ("0.05", "20"))
        for seed in ("0", "1")
    }


# -- 5. a search over step keys ---------------------------------------------------------
def test_search_over_step_keys_reports_the_best_trial(ran: Ran) -> None:
    done = ran.ok("search")
    assert "4 done, 0 cached, 0 failed" in done.stderr
    assert step_names(ran.steps["search"]) == {"train": 4, "evaluate": 4}  # prepare: a hit
    parent, children = trial_runs(ran, "search")
    assert len(children) == 4
    assert all(set(r.data.params) == {"train.lr", "train.steps"} for r in children)
    assert {r.data.params["train.steps"] for r in children} <= {"5", "10", "20"}
    best = min(children, key=lambda r: r.data.metrics["evaluate.test_mse"])
    line = next(line for line in done.stderr.splitlines() if line.startswith("best trial"))
    assert parent.data.tags["sweepflow.best_run_id"] == best.info.run_id
    assert parent.data.tags["sweepflow.best_metric"] == "evaluate.test_mse"
    value = best.data.metrics["evaluate.test_mse"]
    assert f": evaluate.test_mse = {value:g}  (train.lr=" in line, line
    assert f"train.lr={best.data.params['train.lr']} " in line, line


# -- 3. bad input: one line, nothing run -------------------------------------------------
ERRORS = [
    pytest.param(
        "bad_key",
        ["Job 'bad_key' trial 0 (train.lr=0.1 train.lrr=0.1)", "did you mean 'train.lr'"],
        id="misspelt-step-key",
    ),
    pytest.param(
        "unknown_workflow",
        ["Job 'unknown_workflow'", "train_and_evaluat", "workflows:"],
        id="unknown-workflow",
    ),
    pytest.param(
        "no_config", ["Job 'no_config'", "configs/missing.yaml", "config:"], id="missing-config"
    ),
    pytest.param(  # seeds: N sweeps a plain seed=..., which no step has
        "plain_seeds",
        ["Job 'plain_seeds' trial 0 (train.lr=0.1 seed=0)", "'seed' is not a step", "train"],
        id="seeds-count",
    ),
]


@pytest.mark.parametrize(("job", "wanted"), ERRORS)
def test_bad_input_is_one_line_and_runs_nothing(project: Path, job: str, wanted: list[str]) -> None:
    write_project(project)
    done = sweepflow(project, "run", job, api=NO_API)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for text in wanted:
        assert text in lines[0], lines[0]
    assert not (project / "calls.log").exists()
    assert not (project / ".sweepflow" / "mlflow.db").exists()
    assert not list((project / ".sweepflow").glob("store/objects/*/*"))


def test_unknown_step_key_lists_the_valid_keys(project: Path) -> None:
    write_project(project)
    done = sweepflow(project, "run", "sweep", "train.zzz=1", api=NO_API)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "train.zzz=1" in line and "valid keys: train.lr, train.seed, train.steps" in line


def test_dry_run_prints_a_workflow_line_per_trial(project: Path) -> None:
    write_project(project)
    done = sweepflow(project, "run", "sweep", "--dry-run", api=NO_API)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and lines[-1] == "9 trials in 9 batches"
    prefix = "workflow train_and_evaluate (pipe:train_and_evaluate): "
    assert lines[:-1] == [f"{prefix}train.lr={lr} train.seed={seed}" for lr, seed in SWEEP_ORDER]

    done = sweepflow(project, "run", "sweep", "--dry-run", "--json", api=NO_API)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert records[-1] == {"summary": {"job": "sweep", "trials": 9, "batches": 9}}
    assert [(r["workflow"], r["args"]) for r in records[:-1]] == [
        ("pipe:train_and_evaluate", [f"train.lr={lr}", f"train.seed={seed}"])
        for lr, seed in SWEEP_ORDER
    ]
    assert not (project / ".sweepflow" / "mlflow.db").exists()


def test_search_with_a_bad_step_key_is_refused_before_it_starts(
    prefect_api: str, project: Path
) -> None:
    write_project(project)
    done = sweepflow(project, "run", "bad_search")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "train.lrr" in done.stderr and "did you mean 'train.lr'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (project / ".sweepflow" / "mlflow.db").exists()


def test_search_dry_run_shows_the_workflow_a_trial_runs(project: Path) -> None:
    write_project(project)
    done = sweepflow(project, "run", "search", "--dry-run", api=NO_API)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "search: minimize evaluate.test_mse over 4 trials (tpe sampler)"
    assert lines[-1].startswith("a trial runs: workflow train_and_evaluate"), lines
    assert "train.lr=0.01 train.steps=5" in lines[-1], lines
