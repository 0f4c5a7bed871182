"""The JAX example pipeline (``examples/pipeline``) runs, caches and trains for real.

The example folder is copied to a fresh project and run in-process: three steps run,
then all three are hits, then a new learning rate re-runs ``train`` and ``evaluate``
only, and the model it trains predicts the held-out data about as well as the noise
allows.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sweepflow.workflow import load_config
from sweepflow.workflow.run import WorkflowResult, import_workflow, run_workflow

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline"


@pytest.fixture
def example(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the example folder as the project; ``pipeline`` imported from it."""
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(project))
    sys.modules.pop("pipeline", None)
    yield project
    sys.modules.pop("pipeline", None)


def _run(project: Path, overrides: Sequence[str] = ()) -> WorkflowResult:
    workflow = import_workflow("pipeline:train_and_evaluate", project)
    configs = load_config(workflow, project / "config.yaml", overrides)
    return run_workflow(workflow, configs, project, project / ".sweepflow")


def _status(result: WorkflowResult) -> dict[str, str]:
    return {o.step: o.status for o in result.steps}


def test_the_example_pipeline_trains_and_caches(example: Path) -> None:
    first = _run(example)
    assert _status(first) == {"prepare_dataset": "ran", "train": "ran", "evaluate": "ran"}
    mse = first.by_step()["evaluate"].metrics["test_mse"]
    assert math.isfinite(mse) and mse < 0.05  # the label noise (0.1) squared is 0.01
    assert first.by_step()["train"].metrics["loss"] < 0.05

    second = _run(example)
    assert _status(second) == {"prepare_dataset": "hit", "train": "hit", "evaluate": "hit"}
    assert [o.outputs for o in second.steps] == [o.outputs for o in first.steps]

    slower = _run(example, ["train.lr=0.05"])
    assert _status(slower) == {"prepare_dataset": "hit", "train": "ran", "evaluate": "ran"}
    assert slower.by_step()["train"].outputs != first.by_step()["train"].outputs
    assert math.isfinite(slower.by_step()["evaluate"].metrics["test_mse"])
