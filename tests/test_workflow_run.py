"""Running a workflow: cache hits and misses by config, code and content, ``--stages``,
the ``sweepflow workflow`` commands, and the run-workflow Prefect flow.

Each step of the project's pipeline appends its name to ``calls.log`` when it runs, so
a test sees exactly which steps ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sweepflow.store import Catalog
from sweepflow.workflow import WorkflowError, load_config
from sweepflow.workflow.run import StepFailed, WorkflowResult, import_workflow, run_workflow

MODULES = ("pipe_helpers", "pipe_prepare", "pipe_train", "pipe_evaluate", "pipe")

FILES = {
    "pipe_helpers.py": '''
"""Helpers of the train step."""
SCALE = 1.0


def fit(x, y):
    return float((x * y).sum() / (x * x).sum()) * SCALE
''',
    "pipe_log.py": """
from pathlib import Path


def called(name):
    with open(Path(__file__).parent / "calls.log", "a") as handle:
        handle.write(name + "\\n")
""",
    "pipe_prepare.py": """
from pathlib import Path

import numpy as np
from pydantic import BaseModel

import sweepflow
from pipe_log import called


class PrepareConfig(BaseModel):
    n: int = 16
    seed: int = 0
    label: str = "a"  # recorded, but the data does not depend on it


@sweepflow.step(outputs={"dataset": "dataset"})
def prepare(cfg: PrepareConfig, workspace: Path) -> dict[str, Path]:
    called("prepare")
    x = np.random.default_rng(cfg.seed).normal(size=cfg.n)
    np.save(workspace / "data.npy", np.stack([x, 2.0 * x]))
    return {"dataset": workspace / "data.npy"}
""",
    "pipe_train.py": """
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel

import sweepflow
from pipe_helpers import fit
from pipe_log import called


class TrainConfig(BaseModel):
    lr: float = 0.1


@sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    called("train")
    x, y = np.load(dataset.path)
    (workspace / "model.json").write_text(json.dumps({"w": fit(x, y), "lr": cfg.lr}))
    return {"model": workspace / "model.json"}
""",
    "pipe_evaluate.py": """
import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel

import sweepflow
from pipe_log import called


class EvaluateConfig(BaseModel):
    split: str = "test"


@sweepflow.step(
    inputs={"dataset": "dataset", "model": "model"}, outputs={"evaluation": "evaluation"}
)
def evaluate(
    cfg: EvaluateConfig, dataset: sweepflow.Artifact, model: sweepflow.Artifact, workspace: Path
) -> dict[str, Path]:
    called("evaluate")
    x, y = np.load(dataset.path)
    w = json.loads(model.path.read_text())["w"]
    mse = float(((w * x - y) ** 2).mean())
    sweepflow.log_metrics({"mse": mse})
    (workspace / "evaluation.json").write_text(json.dumps({"mse": mse}))
    return {"evaluation": workspace / "evaluation.json"}
""",
    "pipe.py": """
import sweepflow
from pipe_evaluate import evaluate
from pipe_prepare import prepare
from pipe_train import train

pipeline = sweepflow.Workflow("train_and_evaluate", [prepare, train, evaluate])
""",
    "config.yaml": "prepare:\n  n: 16\ntrain:\n  lr: 0.1\nevaluate:\n  split: test\n",
}


@pytest.fixture
def pipeline_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The project folder with the 3-step pipeline; its modules re-imported per run."""
    for name, text in FILES.items():
        (project / name).write_text(text.lstrip())
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # edits within one second
    monkeypatch.syspath_prepend(str(project))
    yield project
    _forget_modules()


def _forget_modules() -> None:
    for name in [*MODULES, "pipe_log"]:
        sys.modules.pop(name, None)


def _run(
    project: Path, overrides: Sequence[str] = (), stages: str | None = None, **kwargs: object
) -> WorkflowResult:
    _forget_modules()  # the code as it is on disk now, as a new process would run it
    workflow = import_workflow("pipe:pipeline", project)
    configs = load_config(workflow, project / "config.yaml", overrides)
    return run_workflow(workflow, configs, project, project / ".sweepflow", stages=stages, **kwargs)  # type: ignore[arg-type]


def _calls(project: Path) -> list[str]:
    log = project / "calls.log"
    found = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return found


def _status(result: WorkflowResult) -> dict[str, str]:
    return {o.step: o.status for o in result.steps}


def test_second_run_is_all_hits(pipeline_project: Path) -> None:
    first = _run(pipeline_project)
    assert _calls(pipeline_project) == ["prepare", "train", "evaluate"]
    assert _status(first) == {"prepare": "ran", "train": "ran", "evaluate": "ran"}
    assert first.by_step()["evaluate"].metrics["mse"] == pytest.approx(0.0, abs=1e-12)
    second = _run(pipeline_project)
    assert _calls(pipeline_project) == []
    assert _status(second) == {"prepare": "hit", "train": "hit", "evaluate": "hit"}
    assert [o.outputs for o in second.steps] == [o.outputs for o in first.steps]
    again = _run(pipeline_project, no_cache=True)
    assert _calls(pipeline_project) == ["prepare", "train", "evaluate"]
    assert _status(again) == {"prepare": "ran", "train": "ran", "evaluate": "ran"}


def test_outputs_are_stored_with_provenance_and_lineage(pipeline_project: Path) -> None:
    result = _run(pipeline_project)
    evaluation = result.by_step()["evaluate"].outputs["evaluation"]
    with Catalog(pipeline_project / ".sweepflow" / "store") as catalog:
        atom = catalog.store.get(evaluation)
        prov = atom.meta.provenance
        assert prov.step == "evaluate" and prov.workflow == "train_and_evaluate"
        assert set(prov.inputs) == {"dataset", "model"}
        assert "pipe_evaluate.py" in prov.code and prov.config == {"split": "test"}
        assert atom.meta.metadata["metrics"]["mse"] == pytest.approx(0.0, abs=1e-12)
        edges = catalog.lineage(evaluation, direction="up")["edges"]
        assert {(e["input"]) for e in edges} == {"dataset", "model"}
        roots = [r for r in catalog.roots() if r["kind"] == "run"]
        assert roots and roots[0]["workflow"] == "train_and_evaluate"
        assert evaluation in roots[0]["digests"]


def test_a_late_parameter_reruns_only_later_steps(pipeline_project: Path) -> None:
    _run(pipeline_project)
    _calls(pipeline_project)
    result = _run(pipeline_project, ["train.lr=0.01"])
    assert _calls(pipeline_project) == ["train", "evaluate"]
    assert _status(result) == {"prepare": "hit", "train": "ran", "evaluate": "ran"}


def test_editing_a_helper_of_train_reruns_train_and_evaluate(pipeline_project: Path) -> None:
    _run(pipeline_project)
    _calls(pipeline_project)
    helpers = pipeline_project / "pipe_helpers.py"
    helpers.write_text(helpers.read_text().replace("SCALE = 1.0", "SCALE = 0.5"))
    result = _run(pipeline_project)
    assert _calls(pipeline_project) == ["train", "evaluate"]
    assert result.by_step()["evaluate"].metrics["mse"] > 0.1  # the new helper ran


def test_editing_a_comment_reruns_nothing(pipeline_project: Path) -> None:
    _run(pipeline_project)
    _calls(pipeline_project)
    train = pipeline_project / "pipe_train.py"
    train.write_text(train.read_text().replace("    called(", "    # why, not what\n    called("))
    helpers = pipeline_project / "pipe_helpers.py"
    helpers.write_text(helpers.read_text().replace('"""Helpers', '"""Re-worded helpers'))
    assert _status(_run(pipeline_project)) == {"prepare": "hit", "train": "hit", "evaluate": "hit"}
    assert _calls(pipeline_project) == []


def test_byte_identical_upstream_outputs_give_downstream_hits(pipeline_project: Path) -> None:
    _run(pipeline_project)
    _calls(pipeline_project)
    result = _run(pipeline_project, ["prepare.label=b"])  # a new key, the same bytes
    assert _calls(pipeline_project) == ["prepare"]
    assert _status(result) == {"prepare": "ran", "train": "hit", "evaluate": "hit"}


def test_stages_resolve_unselected_steps_from_the_store(pipeline_project: Path) -> None:
    with pytest.raises(WorkflowError, match=r"run --stages prepare first"):
        _run(pipeline_project, stages="train:evaluate")
    assert _calls(pipeline_project) == []
    _run(pipeline_project, stages="prepare")
    assert _calls(pipeline_project) == ["prepare"]
    result = _run(pipeline_project, ["train.lr=0.5"], stages="train:evaluate")
    assert _calls(pipeline_project) == ["train", "evaluate"]
    assert [o.step for o in result.steps] == ["train", "evaluate"]
    with pytest.raises(WorkflowError, match=r"run --stages prepare first"):
        _run(pipeline_project, ["prepare.n=8"], stages="train")
    _run(pipeline_project)
    _calls(pipeline_project)
    after_full = _run(pipeline_project, stages="train:evaluate")
    assert _status(after_full) == {"train": "hit", "evaluate": "hit"}
    assert _calls(pipeline_project) == []


def test_transient_errors_are_retried_and_workflow_errors_are_not(
    pipeline_project: Path,
) -> None:
    prepare = pipeline_project / "pipe_prepare.py"
    flaky = prepare.read_text().replace(
        '    called("prepare")\n',
        '    called("prepare")\n'
        '    marker = Path(__file__).parent / "failed-once"\n'
        "    if not marker.exists():\n"
        "        marker.touch()\n"
        '        raise ConnectionError("the file server went away")\n',
    )
    prepare.write_text(flaky)
    _run(pipeline_project, retries=1, retry_delay=0.01)
    assert _calls(pipeline_project) == ["prepare", "prepare", "train", "evaluate"]
    prepare.write_text(flaky.replace('{"dataset": workspace / "data.npy"}', '{"dataset": "x"}'))
    with pytest.raises(WorkflowError, match=r"output 'dataset' at .* does not exist"):
        _run(pipeline_project, retries=3, retry_delay=0.01)
    assert _calls(pipeline_project) == ["prepare"]
    prepare.write_text(flaky.replace("ConnectionError(", "ValueError("))
    (pipeline_project / "failed-once").unlink()
    with pytest.raises(StepFailed, match=r"step 'prepare' failed: ValueError: the file server"):
        _run(pipeline_project, retries=3, retry_delay=0.01)
    assert _calls(pipeline_project) == ["prepare"]


def test_a_stale_hit_runs_again(pipeline_project: Path) -> None:
    prepare = pipeline_project / "pipe_prepare.py"
    prepare.write_text(
        prepare.read_text().replace(
            '@sweepflow.step(outputs={"dataset": "dataset"})',
            "def fresh(outputs):\n"
            '    return not (Path(__file__).parent / "stale").exists()\n\n\n'
            '@sweepflow.step(outputs={"dataset": "dataset"}, validate=fresh)',
        )
    )
    _run(pipeline_project)
    _calls(pipeline_project)
    (pipeline_project / "stale").touch()
    result = _run(pipeline_project)
    assert _calls(pipeline_project) == ["prepare"]  # the same bytes: the rest are hits
    assert _status(result) == {"prepare": "ran", "train": "hit", "evaluate": "hit"}


# ---- the CLI ---------------------------------------------------------------------------


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "SWEEPFLOW_SERVER_IDLE": "0"}
    return subprocess.run(
        [sys.executable, "-m", "sweepflow", "workflow", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_cli_show_and_schema(pipeline_project: Path) -> None:
    shown = _cli(pipeline_project, "show", "pipe:pipeline")
    assert shown.returncode == 0, shown.stderr
    assert "prepare.dataset -> train.dataset (dataset)" in shown.stdout
    schema = _cli(pipeline_project, "schema", "pipe:pipeline")
    assert schema.returncode == 0, schema.stderr
    properties = json.loads(schema.stdout)["properties"]
    assert set(properties) == {"prepare", "train", "evaluate"}
    (pipeline_project / "sweepflow.yaml").write_text("workflows:\n  tae: pipe:pipeline\n")
    named = _cli(pipeline_project, "show", "tae")
    assert named.returncode == 0, named.stderr
    assert named.stdout == shown.stdout
    unknown = _cli(pipeline_project, "show", "nope")
    assert unknown.returncode == 2 and "names: tae" in unknown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "pipe:nothing"), "pipe.nothing is nothing, not a workflow"),
        (("show", "pipeline"), "not module:attribute"),
        (("run", "pipe:pipeline", "--config", "config.yaml", "train.lr=x"), "train.lr"),
        (("run", "pipe:pipeline", "--config", "config.yaml", "--stages", "tran"), "did you mean"),
        (("run", "pipe:pipeline", "--config", "config.yaml", "--stages", "train"), "prepare first"),
    ],
    ids=["not-a-workflow", "not-a-reference", "bad-override", "bad-stage", "unstored-input"],
)
def test_cli_bad_input_is_one_line(
    pipeline_project: Path, args: tuple[str, ...], message: str
) -> None:
    done = _cli(pipeline_project, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert _calls(pipeline_project) == []


def test_cli_run_through_prefect(pipeline_project: Path, prefect_api: str) -> None:
    first = _cli(pipeline_project, "run", "pipe:pipeline", "--config", "config.yaml")
    assert first.returncode == 0, first.stderr
    assert _calls(pipeline_project) == ["prepare", "train", "evaluate"]
    assert "ran" in first.stdout and "dataset:" in first.stdout, first.stdout
    second = _cli(
        pipeline_project, "run", "pipe:pipeline", "--config", "config.yaml", "train.lr=0.2"
    )
    assert second.returncode == 0, second.stderr
    assert _calls(pipeline_project) == ["train", "evaluate"]
    lines = {line.split()[0]: line.split()[1] for line in second.stdout.splitlines() if line}
    assert lines == {"prepare": "hit", "train": "ran", "evaluate": "ran"}

    from prefect import get_client

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs()
    names = sorted(r.name for r in runs if r.name in {"prepare", "train", "evaluate"})
    assert names == ["evaluate", "evaluate", "prepare", "train", "train"]  # hits: no task
