"""The workflow declaration layer: steps, wiring, validation, config, schema, stages.

Fast tests of the pure core: nothing here starts Prefect or touches a store.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import sweepflow
from sweepflow.errors import SweepflowError
from sweepflow.workflow import WorkflowError, describe, json_schema, load_config


class PrepareConfig(BaseModel):
    n: int = 1000
    seed: int = 0


class Optimizer(BaseModel):
    name: str = "adam"
    momentum: float = 0.9


class TrainConfig(BaseModel):
    lr: float = 0.01
    steps: int = 100
    seed: int = 0
    optimizer: Optimizer = Optimizer()


class EvaluateConfig(BaseModel):
    split: str = "test"


@sweepflow.step(outputs={"dataset": "dataset"})
def prepare(cfg: PrepareConfig, workspace: Path) -> dict[str, Path]:
    """Make a synthetic regression data set."""
    (workspace / "data.txt").write_text(f"{cfg.n} {cfg.seed}")
    return {"dataset": workspace / "data.txt"}


@sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
def train(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> dict[str, Path]:
    """Fit a model to the data set."""
    (workspace / "model.txt").write_text(dataset.path.read_text() + f" lr={cfg.lr}")
    return {"model": workspace / "model.txt"}


@sweepflow.step(
    inputs={"dataset": "dataset", "model": "model"}, outputs={"evaluation": "evaluation"}
)
def evaluate(
    cfg: EvaluateConfig, dataset: sweepflow.Artifact, model: sweepflow.Artifact, workspace: Path
) -> dict[str, Path]:
    """Score the model on the data set."""
    (workspace / "eval.json").write_text(json.dumps({"model": model.path.read_text()}))
    return {"evaluation": workspace / "eval.json"}


pipeline = sweepflow.Workflow("train_and_evaluate", [prepare, train, evaluate])


def _one_line(error: pytest.ExceptionInfo[WorkflowError]) -> str:
    assert len(error.value.problems) == 1, error.value.problems
    text = str(error.value)
    assert "\n" not in text
    return text


# --- steps -----------------------------------------------------------------------------


def test_step_records_its_declaration() -> None:
    assert train.name == "train"
    assert train.config_model is TrainConfig
    assert dict(train.inputs) == {"dataset": "dataset"}
    assert dict(train.outputs) == {"model": "model"}
    assert train.takes_workspace
    assert train.code_version is None and train.validate is None
    assert train.__module__ == __name__ and train.__doc__ == "Fit a model to the data set."


def test_step_is_still_the_plain_function(tmp_path: Path) -> None:
    out = prepare(PrepareConfig(n=5, seed=2), tmp_path)
    stored = sweepflow.Artifact("dataset", "0" * 64, out["dataset"])
    model = train(TrainConfig(lr=0.5), stored, tmp_path)["model"]
    assert model.read_text() == "5 2 lr=0.5"


def test_step_pickles_by_reference_for_worker_processes() -> None:
    loaded = pickle.loads(pickle.dumps(train))
    assert loaded is train
    assert pickle.loads(pickle.dumps(pipeline)).steps == pipeline.steps


def test_step_options_are_kept() -> None:
    def fresh(outputs: object) -> bool:
        return True

    @sweepflow.step(outputs={"served": "endpoint"}, code_version="v2", validate=fresh)
    def serve(cfg: EvaluateConfig) -> dict[str, str]:
        return {}

    assert serve.code_version == "v2" and serve.validate is fresh
    assert not serve.takes_workspace


def test_artifact_is_frozen_with_a_readable_id() -> None:
    digest = "3f2a9c" + "0" * 58
    artifact = sweepflow.Artifact("model", digest, Path("/s/model"), {"step": "train"})
    assert artifact.id == "model:3f2a9c000000"
    assert artifact.meta["step"] == "train"
    with pytest.raises(AttributeError):
        artifact.digest = "1" * 64  # type: ignore[misc]
    with pytest.raises(TypeError):
        artifact.meta["step"] = "x"  # type: ignore[index]
    with pytest.raises(ValueError, match="hex SHA-256"):
        sweepflow.Artifact("model", "not-a-digest", Path("/s"))


def _undeclared() -> None:
    @sweepflow.step(outputs={"model": "model"})
    def fit(cfg: TrainConfig, dataset: sweepflow.Artifact, workspace: Path) -> None: ...


def _not_an_artifact() -> None:
    @sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
    def fit(cfg: TrainConfig, dataset: Path, workspace: Path) -> None: ...


def _no_parameter() -> None:
    @sweepflow.step(inputs={"dataset": "dataset"}, outputs={"model": "model"})
    def fit(cfg: TrainConfig, workspace: Path) -> None: ...


def _extra_parameter() -> None:
    @sweepflow.step(outputs={"model": "model"})
    def fit(cfg: TrainConfig, epochs: int, workspace: Path) -> None: ...


def _config_not_first() -> None:
    @sweepflow.step(outputs={"model": "model"})
    def fit(workspace: Path, cfg: TrainConfig) -> None: ...


def _untyped_config() -> None:
    @sweepflow.step(outputs={"model": "model"})
    def fit(cfg, workspace: Path) -> None:  # type: ignore[no-untyped-def]
        ...


def _bad_type() -> None:
    @sweepflow.step(outputs={"model": "my model"})
    def fit(cfg: TrainConfig) -> None: ...


@pytest.mark.parametrize(
    ("declare", "expected"),
    [
        (
            _undeclared,
            "step 'fit': parameter 'dataset' is not a declared input: add it to "
            "inputs={'dataset': 'dataset'} or remove the parameter",
        ),
        (
            _not_an_artifact,
            "step 'fit': input parameter 'dataset' must be annotated 'dataset: sweepflow.Artifact'",
        ),
        (
            _no_parameter,
            "step 'fit': declares input 'dataset' but has no parameter 'dataset': add "
            "'dataset: sweepflow.Artifact' to its parameters",
        ),
        (
            _extra_parameter,
            "step 'fit': parameter 'epochs' is not a declared input: add it to "
            "inputs={'epochs': 'TYPE'} or remove the parameter",
        ),
        (_config_not_first, "step 'fit': parameter 'cfg' is a config model but not the first"),
        (_bad_type, "step 'fit': output 'model' has type 'my model'"),
        (_untyped_config, "step 'fit': parameter 'cfg' must be annotated with a pydantic model"),
    ],
    ids=[
        "undeclared",
        "not-artifact",
        "no-parameter",
        "extra-parameter",
        "cfg-not-first",
        "type",
        "untyped-cfg",
    ],
)
def test_bad_step_signature_is_one_line(declare: object, expected: str) -> None:
    with pytest.raises(WorkflowError) as error:
        declare()  # type: ignore[operator]
    assert _one_line(error).startswith(expected)
    assert isinstance(error.value, SweepflowError) and isinstance(error.value, ValueError)


# --- wiring and validation -------------------------------------------------------------


def test_example_pipeline_validates_and_wires_by_name() -> None:
    assert pipeline.validate() == {}
    assert [tuple(e) for e in pipeline.wiring()] == [
        ("prepare", "dataset", "train", "dataset", "dataset"),
        ("prepare", "dataset", "evaluate", "dataset", "dataset"),
        ("train", "model", "evaluate", "model", "model"),
    ]


def test_input_takes_the_latest_earlier_output() -> None:
    @sweepflow.step(inputs={"dataset": "dataset"}, outputs={"dataset": "dataset"})
    def clean(cfg: PrepareConfig, dataset: sweepflow.Artifact, workspace: Path) -> None: ...

    flow = sweepflow.Workflow("cleaned", [prepare, clean, train])
    assert [str(e) for e in flow.wiring()] == [
        "prepare.dataset -> clean.dataset (dataset)",
        "clean.dataset -> train.dataset (dataset)",
    ]


def _retyped() -> sweepflow.Workflow:
    @sweepflow.step(outputs={"dataset": "table"})
    def prepare(cfg: PrepareConfig, workspace: Path) -> None: ...

    return sweepflow.Workflow("w", [prepare, train])


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda: sweepflow.Workflow("w", [train]),
            "step 'train': input 'dataset' (dataset) is not an output of any earlier step: "
            "add a step with outputs={'dataset': 'dataset'} before it, or rename the input",
        ),
        (
            lambda: sweepflow.Workflow("w", [prepare, evaluate, train]),
            "step 'evaluate': input 'model' (model) is not an output of any earlier step: "
            "move step 'train' (which outputs it) before 'evaluate', or rename the input",
        ),
        (
            _retyped,
            "step 'train': input 'dataset' expects type 'dataset' but step 'prepare' outputs "
            "'dataset' as type 'table': declare the same type on both",
        ),
        (
            lambda: sweepflow.Workflow("w", [prepare, prepare, train]),
            "workflow 'w': two steps are named 'prepare': rename one function",
        ),
    ],
    ids=["missing-input", "wrong-order", "type-mismatch", "duplicate-step"],
)
def test_wiring_error_is_one_line_with_step_and_fix(build: object, expected: str) -> None:
    flow = build()  # type: ignore[operator]
    with pytest.raises(WorkflowError) as error:
        flow.validate()
    assert _one_line(error).startswith(expected)


def test_validate_reports_every_problem_at_once() -> None:
    flow = sweepflow.Workflow("w", [evaluate, evaluate])
    with pytest.raises(WorkflowError) as error:
        flow.validate({"evaluate": {"split": 3}})
    assert len(error.value.problems) == 4, error.value.problems
    assert str(error.value).startswith("4 problems:\n  workflow 'w': two steps")


def test_a_plain_function_is_not_a_step() -> None:
    def loose(cfg: PrepareConfig) -> None: ...

    with pytest.raises(WorkflowError, match=r"item 2 \(loose\) is not a step: decorate it"):
        sweepflow.Workflow("w", [prepare, loose])  # type: ignore[list-item]


def test_validate_returns_typed_configs_with_defaults() -> None:
    configs = pipeline.validate({"train": {"lr": 0.1, "optimizer": {"name": "sgd"}}})
    assert configs["prepare"] == PrepareConfig()
    assert configs["train"] == TrainConfig(lr=0.1, optimizer=Optimizer(name="sgd"))
    assert configs["evaluate"] == EvaluateConfig()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"train": {"lr": "fast"}},
            "config: train.lr: expected a number, got 'fast' — fix it in the config or pass "
            "train.lr=...",
        ),
        (
            {"train": {"optimizer": {"momentum": "x"}}},
            "config: train.optimizer.momentum: expected a number, got 'x'",
        ),
        ({"train": {"lrr": 0.1}}, "config: train.lrr: step 'train' has no config key 'lrr'"),
        ({"trian": {}}, "config: 'trian' is not a step of workflow 'train_and_evaluate' — did"),
        ({"train": 3}, "config: train: expected a mapping of step 'train''s config keys"),
    ],
    ids=["value", "nested-value", "unknown-key", "unknown-step", "not-mapping"],
)
def test_config_error_names_the_key_path(config: dict[str, object], expected: str) -> None:
    with pytest.raises(WorkflowError) as error:
        pipeline.validate(config)
    assert _one_line(error).startswith(expected)


def test_required_config_key_says_how_to_set_it() -> None:
    class Needs(BaseModel):
        model_uri: str

    @sweepflow.step(inputs={"model": "model"}, outputs={"served": "endpoint"})
    def serve(cfg: Needs, model: sweepflow.Artifact) -> None: ...

    flow = sweepflow.Workflow("serving", [prepare, train, serve])
    flow.validate()  # the wiring alone is fine
    with pytest.raises(WorkflowError) as error:
        flow.validate({})
    assert _one_line(error) == (
        "config: serve.model_uri: step 'serve' needs a value: set it in the config or pass "
        "serve.model_uri=..."
    )


# --- the YAML config and overrides -----------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_config_with_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, "prepare:\n  n: 50\ntrain:\n  lr: 0.5\n  steps: 10\nevaluate:\n")
    configs = load_config(pipeline, path, ["train.lr=0.1", "train.optimizer.name=sgd"])
    assert configs["prepare"] == PrepareConfig(n=50)
    assert configs["train"] == TrainConfig(lr=0.1, steps=10, optimizer=Optimizer(name="sgd"))
    assert configs["evaluate"] == EvaluateConfig()
    assert load_config(pipeline, None, ["prepare.seed=3"])["prepare"] == PrepareConfig(seed=3)


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("prepare:\n  n: 5\ntrain:\n  lr: [\n", [], "YAML syntax error at cfg.yaml:5:1"),
        ("prepare:\n  n: 5\ntrian:\n  lr: 1\n", [], "cfg.yaml:3: 'trian' is not a step of"),
        (
            "prepare:\n  n: 5\ntrain:\n  lr: fast\n",
            [],
            "cfg.yaml:4: train.lr: expected a number, got 'fast'",
        ),
        ("train:\n  lr: 0.1\n  stepz: 3\n", [], "cfg.yaml:3: train.stepz: step 'train' has no"),
        (
            "train:\n  lr: 1\ntrain:\n  lr: 2\n",
            [],
            "Duplicate key 'train' in the top level at cfg.yaml:3",
        ),
        ("- 1\n", [], "cfg.yaml:1: the config of workflow 'train_and_evaluate' must be a mapping"),
        (
            "train:\n  lr: 0.1\n",
            ["train.lr=fast"],
            "override 'train.lr=fast': train.lr: expected a number, got 'fast'",
        ),
        (
            "",
            ["train.lrr=0.1"],
            "override 'train.lrr=0.1': step 'train' has no config key 'lrr' — did you mean "
            "'train.lr'?",
        ),
        (
            "",
            ["train.zzz=0.1"],
            "override 'train.zzz=0.1': step 'train' has no config key 'zzz' (valid keys: "
            "train.lr, train.optimizer, train.optimizer.momentum, train.optimizer.name, "
            "train.seed, train.steps)",
        ),
        ("", ["trian.lr=0.1"], "override 'trian.lr=0.1': 'trian' is not a step of workflow"),
        ("", ["train.lr"], "override: expected key=value, got 'train.lr'"),
    ],
    ids=[
        "yaml-syntax",
        "unknown-step",
        "bad-value",
        "unknown-key",
        "duplicate-step-key",
        "not-mapping",
        "override-value",
        "override-near-miss",
        "override-valid-keys",
        "override-step",
        "override-no-equals",
    ],
)
def test_config_file_errors_are_one_line_with_a_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, overrides: list[str], expected: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkflowError) as error:
        load_config(pipeline, _write(tmp_path, text), overrides)
    assert _one_line(error).startswith(expected)


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError) as error:
        load_config(pipeline, tmp_path / "nope.yaml")
    assert _one_line(error).startswith("cannot read the config of workflow 'train_and_evaluate'")


# --- schema, stages, describe ----------------------------------------------------------


def test_json_schema_has_one_property_per_step_with_defaults() -> None:
    schema = json_schema(pipeline)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert list(schema["properties"]) == ["prepare", "train", "evaluate"]
    prepare_schema = schema["properties"]["prepare"]
    assert prepare_schema["properties"]["n"] == {"default": 1000, "title": "N", "type": "integer"}
    assert prepare_schema["description"] == "Make a synthetic regression data set."
    assert prepare_schema["additionalProperties"] is False
    train_schema = schema["properties"]["train"]
    assert train_schema["properties"]["lr"]["default"] == 0.01
    ref = train_schema["properties"]["optimizer"]["$ref"]
    assert ref == "#/$defs/Optimizer" and "momentum" in schema["$defs"]["Optimizer"]["properties"]
    assert "required" not in schema
    json.dumps(schema)  # plain JSON


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        (None, ["prepare", "train", "evaluate"]),
        ("train,evaluate", ["train", "evaluate"]),
        ("evaluate,prepare", ["prepare", "evaluate"]),
        ("prepare:train", ["prepare", "train"]),
        ("train:evaluate", ["train", "evaluate"]),
        ("train:", ["train", "evaluate"]),
        (":train", ["prepare", "train"]),
        ("train", ["train"]),
    ],
)
def test_stages_selection(select: str | None, expected: list[str]) -> None:
    assert [s.name for s in pipeline.stages(select)] == expected


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ("trian", "--stages 'trian': workflow 'train_and_evaluate' has no step 'trian' — did"),
        ("evaluate:prepare", "--stages 'evaluate:prepare' runs backward"),
        ("train,,evaluate", "--stages 'train,,evaluate' has an empty item"),
    ],
    ids=["unknown", "backward", "empty"],
)
def test_bad_stages_selection(select: str, expected: str) -> None:
    with pytest.raises(WorkflowError) as error:
        pipeline.stages(select)
    assert _one_line(error).startswith(expected)


def test_unselected_upstream_inputs_must_come_from_the_store() -> None:
    edges = pipeline.from_store(pipeline.stages("evaluate"))
    assert [str(e) for e in edges] == [
        "prepare.dataset -> evaluate.dataset (dataset)",
        "train.model -> evaluate.model (model)",
    ]
    assert pipeline.from_store(pipeline.stages("prepare:evaluate")) == []
    assert pipeline.missing_from_store(edges[1]).endswith(
        "run --stages train first (or without --stages)"
    )


def test_describe_shows_steps_types_config_and_wiring() -> None:
    assert describe(pipeline) == [
        "workflow train_and_evaluate (3 steps)",
        "1. prepare  [PrepareConfig]",
        "     out  dataset: dataset",
        "     cfg  prepare.n=1000",
        "     cfg  prepare.seed=0",
        "2. train  [TrainConfig]",
        "     in   dataset: dataset  <- prepare.dataset",
        "     out  model: model",
        "     cfg  train.lr=0.01",
        "     cfg  train.steps=100",
        "     cfg  train.seed=0",
        "     cfg  train.optimizer.name=adam",
        "     cfg  train.optimizer.momentum=0.9",
        "3. evaluate  [EvaluateConfig]",
        "     in   dataset: dataset  <- prepare.dataset",
        "     in   model: model  <- train.model",
        "     out  evaluation: evaluation",
        "     cfg  evaluate.split=test",
        "wiring:",
        "  prepare.dataset -> train.dataset (dataset)",
        "  prepare.dataset -> evaluate.dataset (dataset)",
        "  train.model -> evaluate.model (model)",
    ]


def test_import_sweepflow_does_not_load_the_workflow_layer() -> None:
    code = (
        "import sys, sweepflow\n"
        "assert 'sweepflow.workflow' not in sys.modules and 'pydantic' not in sys.modules\n"
        "assert sweepflow.step.__module__ == 'sweepflow.workflow.steps'\n"
        "print(sorted(n for n in ('Artifact', 'Workflow', 'step') if n in sweepflow.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['Artifact', 'Workflow', 'step']"
