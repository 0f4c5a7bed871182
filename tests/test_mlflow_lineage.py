"""A workflow run's lineage on its MLflow run, read back with MLflow's own client.

A three-step chain ``prepare -> train -> evaluate`` (``evaluate`` takes the model and the
dataset) is logged on a real trial run of a real SQLite store (the sweep machinery's
``Tracker`` makes the run); MLflow then shows the consumed artifacts as dataset inputs
with their contexts, the tags carry the full digests, and ``lineage.json`` downloads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from sweepflow.store import ObjectStore
from sweepflow.tracking import rules
from sweepflow.tracking.lineage import lineage_tags, log_lineage
from sweepflow.tracking.writer import Tracker
from sweepflow.workflow.run import StepOutcome

DATASET = "d1" * 32
MODEL = "40de" * 16
REPORT = "e7" * 32


def _chain() -> list[StepOutcome]:
    """prepare(dataset) -> train(dataset -> model) -> evaluate(model, dataset -> report)."""
    return [
        StepOutcome(
            step="prepare", status="hit", seconds=0.01, key="1" * 64,
            outputs={"dataset": DATASET}, types={"dataset": "dataset"},
        ),
        StepOutcome(
            step="train", status="ran", seconds=1.5, key="2" * 64,
            outputs={"model": MODEL}, types={"model": "model"},
            inputs={"dataset": DATASET}, input_types={"dataset": "dataset"},
            metrics={"loss": 0.25},
        ),
        StepOutcome(
            step="evaluate", status="ran", seconds=0.5, key="3" * 64,
            outputs={"report": REPORT}, types={"report": "report"},
            inputs={"model": MODEL, "dataset": DATASET},
            input_types={"model": "model", "dataset": "dataset"},
            metrics={"accuracy": 0.9, "nll": float("nan")},
        ),
    ]  # fmt: skip


def _child_run(uri: str, experiment: str) -> tuple[Tracker, str]:
    """A trial run under a parent, made as a workflow sweep makes it."""
    tracker = Tracker(uri, experiment, experiment)
    parent = tracker.start_parent({}, {})
    run = tracker.trial_run(parent, {"sweepflow.label": "lr=0.1"}, {"lr": "0.1"}, 0)
    [run_id] = tracker.store.create(tracker.experiment_id, [run])
    return tracker, run_id


def _inputs(client: Any, run_id: str) -> dict[str, dict[str, Any]]:
    """The run's dataset inputs by name: digest, source type, source, input tags."""
    run = client.get_run(run_id)
    return {
        i.dataset.name: {
            "digest": i.dataset.digest,
            "source_type": i.dataset.source_type,
            "source": json.loads(i.dataset.source),
            "tags": {t.key: t.value for t in i.tags},
        }
        for i in run.inputs.dataset_inputs
    }


@pytest.fixture
def logged(store: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    """The chain logged on a fresh trial run: (MLflow client, run id)."""
    tracker, run_id = _child_run(store, f"pipeline-{request.node.name}")
    log_lineage(tracker.client, run_id, _chain())
    return tracker.client, run_id


def test_consumed_artifacts_are_dataset_inputs_with_their_contexts(logged: Any) -> None:
    client, run_id = logged
    found = _inputs(client, run_id)
    assert set(found) == {"dataset:d1d1d1d1d1d1", "model:40de40de40de"}
    dataset, model = found["dataset:d1d1d1d1d1d1"], found["model:40de40de40de"]
    # MLflow keeps one input per dataset and run: both steps that took it are its context.
    assert dataset["tags"]["mlflow.data.context"] == "train.dataset,evaluate.dataset"
    assert model["tags"]["mlflow.data.context"] == "evaluate.model"
    assert dataset["digest"] == DATASET[:36] and model["digest"] == MODEL[:36]
    assert dataset["tags"]["sweepflow.digest"] == DATASET
    assert dataset["source_type"] == model["source_type"] == "sweepflow"
    assert dataset["source"] == {
        "path": f"store/objects/sha256/d1/d1/{DATASET}",
        "digest": DATASET,
        "made_by": "prepare",
    }
    assert model["source"]["made_by"] == "train"


def test_tags_carry_full_digests_status_and_final_outputs(logged: Any) -> None:
    client, run_id = logged
    tags = client.get_run(run_id).data.tags
    assert tags["sweepflow.step.prepare.status"] == "hit"
    assert tags["sweepflow.step.train.status"] == "ran"
    assert tags["sweepflow.step.train.cache_key"] == "2" * 64
    assert tags["sweepflow.step.train.input.dataset"] == DATASET
    assert tags["sweepflow.step.train.output.model"] == MODEL
    assert tags["sweepflow.step.evaluate.input.model"] == MODEL
    assert tags["sweepflow.step.evaluate.input.dataset"] == DATASET
    assert tags["sweepflow.step.evaluate.output.report"] == REPORT
    assert tags["sweepflow.artifacts"] == "report:e7e7e7e7e7e7"
    assert tags["sweepflow.label"] == "lr=0.1"  # the run's own tags stay


def test_lineage_json_downloads_with_every_step(logged: Any, tmp_path: Path) -> None:
    client, run_id = logged
    assert [f.path for f in client.list_artifacts(run_id)] == ["lineage.json"]
    record = json.loads(
        Path(client.download_artifacts(run_id, "lineage.json", tmp_path)).read_text()
    )
    steps = record["steps"]
    assert [s["step"] for s in steps] == ["prepare", "train", "evaluate"]
    assert [s["status"] for s in steps] == ["hit", "ran", "ran"]
    assert steps[2]["key"] == "3" * 64
    assert steps[2]["inputs"] == {"model": MODEL, "dataset": DATASET}
    assert steps[2]["outputs"] == {"report": REPORT}
    assert steps[2]["types"] == {"report": "report"}
    assert steps[2]["metrics"] == {"accuracy": 0.9, "nll": "nan"}  # JSON has no NaN
    assert record["artifacts"] == ["report:e7e7e7e7e7e7"]


def test_runs_search_shows_the_datasets(logged: Any) -> None:
    """The UI's runs table lists a run's datasets from the search results."""
    client, run_id = logged
    experiment_id = client.get_run(run_id).info.experiment_id
    [run] = client.search_runs([experiment_id], "tags.`sweepflow.role` = 'trial'")
    names = {i.dataset.name for i in run.inputs.dataset_inputs}
    assert names == {"dataset:d1d1d1d1d1d1", "model:40de40de40de"}


def test_logging_again_adds_nothing(logged: Any) -> None:
    client, run_id = logged
    before = _inputs(client, run_id)
    log_lineage(client, run_id, _chain())
    assert _inputs(client, run_id) == before
    assert len(client.get_run(run_id).inputs.dataset_inputs) == 2


def test_source_names_the_maker_of_an_input_from_an_earlier_run(store: str, tmp_path: Path) -> None:
    """Only ``evaluate`` ran now: the model's maker comes from the store's record."""
    root = tmp_path / "state" / "store"
    payload = tmp_path / "model.bin"
    payload.write_bytes(b"weights")
    model = ObjectStore(root).put(payload, "model", {"step": "train", "output": "model"})
    evaluate = StepOutcome(
        step="evaluate", status="ran", seconds=0.5, key="3" * 64,
        outputs={"report": REPORT}, types={"report": "report"},
        inputs={"model": model.digest, "dataset": DATASET},
        input_types={"model": "model", "dataset": "dataset"},
    )  # fmt: skip
    tracker, run_id = _child_run(store, "pipeline-from-store")
    log_lineage(tracker.client, run_id, [evaluate], store_root=root)
    found = _inputs(tracker.client, run_id)
    source = found[f"model:{model.digest[:12]}"]["source"]
    assert source["made_by"] == "train"
    assert Path(source["path"]) == model.path.parent.resolve()
    assert found["dataset:d1d1d1d1d1d1"]["source"]["made_by"] is None  # not in the store


def test_many_steps_stay_within_mlflow_limits(store: str) -> None:
    """60 steps make 301 tags (MLflow takes 100 a request) and a long id list."""
    long_type = "t" * 200

    def digest(n: int) -> str:
        return hashlib.sha256(str(n).encode()).hexdigest()

    steps = [
        StepOutcome(
            step=f"step_{i}", status="ran", seconds=0.0, key=digest(-i),
            outputs={"out": digest(i + 1), "side": digest(i + 1000)},
            types={"out": long_type, "side": long_type},
            inputs={"inp": digest(i)}, input_types={"inp": long_type},
        )
        for i in range(60)
    ]  # fmt: skip
    tags = lineage_tags(steps)
    assert len(tags) == 60 * 5 + 1
    ids = tags["sweepflow.artifacts"]
    assert len(ids) <= rules.MAX_TAG_LENGTH and ids.count(",") + 1 < 61  # cut
    assert all(part.startswith(long_type + ":") for part in ids.split(","))  # whole ids
    tracker, run_id = _child_run(store, "pipeline-many")
    log_lineage(tracker.client, run_id, steps)
    run = tracker.client.get_run(run_id)
    assert run.data.tags["sweepflow.step.step_59.output.side"] == digest(1059)
    assert len(run.inputs.dataset_inputs) == 60
