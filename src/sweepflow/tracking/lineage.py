"""A workflow run's lineage on its MLflow run: what each step took and made.

Each artifact a step consumed becomes an MLflow dataset input of the run (shown in the
UI's runs view): named by its readable id ``<type>:<first 12 hex>``, with the first 36
hex digits as its digest (MLflow's limit), its store path and producing step as the
source, and the consuming ``<step>.<input>`` as its context. MLflow keeps one input per
dataset and run, so an artifact two steps took is one input whose context lists both
(``train.dataset,evaluate.dataset``). MLflow 3 logs outputs only for logged models, so
outputs are tags; full digests of inputs and outputs are tags too
(:func:`lineage_tags`), and the whole record is the artifact ``lineage.json``.

MLflow errors propagate, as the writer's do (:mod:`sweepflow.tracking.writer`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepflow.store.layout import object_dir
from sweepflow.store.objects import AtomMeta
from sweepflow.tracking import rules

if TYPE_CHECKING:
    import mlflow
    from mlflow.entities import DatasetInput

    from sweepflow.workflow.run import StepOutcome

__all__ = [
    "LINEAGE_FILE",
    "SOURCE_TYPE",
    "dataset_digest",
    "dataset_inputs",
    "final_outputs",
    "lineage_record",
    "lineage_tags",
    "log_lineage",
    "readable_id",
]

LINEAGE_FILE = "lineage.json"
SOURCE_TYPE = "sweepflow"
SHORT = 12  # hex digits in a readable id
# MLflow's limits (mlflow/utils/validation.py of MLflow 3): a dataset's name and digest,
# an input tag's value, datasets per log_inputs request.
_MAX_DATASET_NAME = 500
_MAX_DATASET_DIGEST = 36
_MAX_INPUT_TAG_VALUE = 500
_MAX_DATASETS_PER_BATCH = 1000
_CONTEXT_TAG = "mlflow.data.context"  # what MLflow's UI shows beside a dataset


def readable_id(type_: str, digest: str) -> str:
    """``<type>:<first 12 hex>``, the id shown to people.

    >>> readable_id("model", "ab" * 32)
    'model:abababababab'
    """
    return f"{type_}:{digest[:SHORT]}"


def dataset_digest(digest: str) -> str:
    """The digest an MLflow dataset carries: the first 36 hex digits (MLflow's limit;
    the full digest is in the run's tags).

    >>> len(dataset_digest("0" * 64))
    36
    """
    return digest[:_MAX_DATASET_DIGEST]


def _joined(items: Iterable[str], limit: int) -> str:
    """``items`` comma-separated, cut after the last whole item that fits in ``limit``.

    >>> _joined(["aaaa", "bbbb", "cccc"], 10)
    'aaaa,bbbb'
    """
    text = ""
    for item in items:
        longer = f"{text},{item}" if text else item
        if len(longer) > limit:
            break
        text = longer
    return text


def final_outputs(steps: Sequence[StepOutcome]) -> list[str]:
    """The readable ids of the outputs no later step of the run took, in step order.

    >>> from sweepflow.workflow.run import StepOutcome
    >>> a, b = "a" * 64, "b" * 64
    >>> first = StepOutcome(step="prepare", status="ran", seconds=0.1, key="k1",
    ...                     outputs={"dataset": a}, types={"dataset": "dataset"})
    >>> second = StepOutcome(step="train", status="hit", seconds=0.1, key="k2",
    ...                      outputs={"model": b}, types={"model": "model"},
    ...                      inputs={"dataset": a}, input_types={"dataset": "dataset"})
    >>> final_outputs([first, second])
    ['model:bbbbbbbbbbbb']
    """
    ids: list[str] = []
    for index, outcome in enumerate(steps):
        later = {d for o in steps[index + 1 :] for d in o.inputs.values()}
        for name, digest in outcome.outputs.items():
            found = readable_id(outcome.types.get(name, name), digest)
            if digest not in later and found not in ids:
                ids.append(found)
    return ids


def lineage_tags(steps: Sequence[StepOutcome]) -> dict[str, str]:
    """The tags of a workflow run's MLflow run that record its lineage.

    Per step: ``sweepflow.step.<step>.status`` (``ran``/``hit``),
    ``sweepflow.step.<step>.cache_key``, ``sweepflow.step.<step>.input.<name>`` and
    ``sweepflow.step.<step>.output.<name>`` (full digests); and ``sweepflow.artifacts``,
    the readable ids of the run's final outputs (those no later step took),
    comma-separated. Keys and values are within MLflow's limits
    (:func:`sweepflow.tracking.rules.clean_tags`; the id list is cut after a whole id).

    >>> from sweepflow.workflow.run import StepOutcome
    >>> step = StepOutcome(step="train", status="ran", seconds=1.0, key="k" * 64,
    ...                    outputs={"model": "b" * 64}, types={"model": "model"},
    ...                    inputs={"data": "a" * 64}, input_types={"data": "dataset"})
    >>> tags = lineage_tags([step])
    >>> tags["sweepflow.step.train.status"], tags["sweepflow.artifacts"]
    ('ran', 'model:bbbbbbbbbbbb')
    >>> tags["sweepflow.step.train.input.data"] == "a" * 64
    True
    """
    tags: dict[str, str] = {}
    for outcome in steps:
        prefix = f"sweepflow.step.{outcome.step}"
        tags[f"{prefix}.status"] = outcome.status
        tags[f"{prefix}.cache_key"] = outcome.key
        tags.update({f"{prefix}.input.{n}": d for n, d in outcome.inputs.items()})
        tags.update({f"{prefix}.output.{n}": d for n, d in outcome.outputs.items()})
    tags["sweepflow.artifacts"] = _joined(final_outputs(steps), rules.MAX_TAG_LENGTH)
    return rules.clean_tags(tags)


def _maker(digest: str, made: dict[str, str], store_root: Path | None) -> str | None:
    """The step that made ``digest``: one of this run's, else the store's record."""
    if digest in made or store_root is None:
        return made.get(digest)
    try:
        meta = AtomMeta.model_validate_json(
            (object_dir(store_root, digest) / "meta.json").read_text()
        )
    except (OSError, ValueError):  # not in the store (any more): unknown, not an error
        return None
    return meta.provenance.step


def _source(digest: str, made: dict[str, str], store_root: Path | None) -> str:
    """A dataset's source: where the store keeps it, and the step that made it."""
    if store_root is None:  # relative to the state folder, whose store is ``store/``
        path = object_dir(Path("store"), digest).as_posix()
    else:
        path = object_dir(Path(store_root).resolve(), digest).as_posix()
    record = {"path": path, "digest": digest, "made_by": _maker(digest, made, store_root)}
    return json.dumps(record, sort_keys=True)


def dataset_inputs(
    steps: Sequence[StepOutcome], store_root: Path | None = None
) -> list[DatasetInput]:
    """One MLflow dataset input per artifact the run's steps took (once each), its
    context the ``<step>.<input>`` names that took it, comma-separated."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    made = {d: o.step for o in steps for d in o.outputs.values()}
    contexts: dict[str, list[str]] = {}
    types: dict[str, str] = {}
    for outcome in steps:
        for name, digest in outcome.inputs.items():
            taken = contexts.setdefault(digest, [])
            if f"{outcome.step}.{name}" not in taken:
                taken.append(f"{outcome.step}.{name}")
            types.setdefault(digest, outcome.input_types.get(name, name))
    found = []
    for digest, taken in contexts.items():
        dataset = Dataset(
            name=readable_id(types[digest], digest)[:_MAX_DATASET_NAME],
            digest=dataset_digest(digest),
            source_type=SOURCE_TYPE,
            source=_source(digest, made, store_root),
        )
        tags = [
            InputTag(key=_CONTEXT_TAG, value=_joined(taken, _MAX_INPUT_TAG_VALUE)),
            InputTag(key="sweepflow.digest", value=digest),
        ]
        found.append(DatasetInput(dataset=dataset, tags=tags))
    return found


def _plain(value: float) -> float | str:
    """A metric as JSON can carry it (``nan``/``inf`` as text)."""
    return value if math.isfinite(value) else repr(value)


def lineage_record(steps: Sequence[StepOutcome]) -> dict[str, Any]:
    """What ``lineage.json`` holds: the steps in order (status, key, seconds, inputs,
    outputs, their types, metrics) and the final outputs' readable ids."""
    return {
        "steps": [
            {
                **outcome.model_dump(mode="json", exclude={"metrics"}),
                "metrics": {k: _plain(v) for k, v in outcome.metrics.items()},
            }
            for outcome in steps
        ],
        "artifacts": final_outputs(steps),
    }


def log_lineage(
    client: mlflow.MlflowClient,
    run_id: str,
    steps: Sequence[StepOutcome],
    store_root: Path | None = None,
) -> None:
    """Record a workflow run's lineage on its MLflow run ``run_id``.

    Logs the artifacts its steps took as dataset inputs (:func:`dataset_inputs`), the
    tags of :func:`lineage_tags` (one batch) and the artifact
    ``lineage.json`` (:func:`lineage_record`). Logging it again is harmless: MLflow
    keeps one input per dataset, and tags and the file are overwritten.

    Args:
        client: MLflow's client for the run's store.
        run_id: The run (a workflow run's run in a sweep).
        steps: The outcomes of its steps, in order (``WorkflowResult.steps``).
        store_root: The artifact store (``<state>/store``): the datasets' sources give
            absolute paths, and the maker of an input no step of this run made is read
            from its ``meta.json``. Default: paths relative to the state folder.

    Raises:
        mlflow.exceptions.MlflowException: MLflow refused a write (as the writer's
            errors, it propagates).
    """
    from mlflow.entities import RunTag

    inputs = dataset_inputs(steps, store_root)
    for start in range(0, len(inputs), _MAX_DATASETS_PER_BATCH):
        _log_inputs(client, run_id, inputs[start : start + _MAX_DATASETS_PER_BATCH])
    # One call: MLflow's client splits it into requests of 100 tags (its limit).
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in lineage_tags(steps).items()])
    text = json.dumps(lineage_record(steps), indent=2) + "\n"
    client.log_text(run_id, text, LINEAGE_FILE)


def _log_inputs(client: Any, run_id: str, inputs: list[Any]) -> None:
    """``log_inputs``, once more if another process inserted the same dataset between
    MLflow's check and its insert (its UNIQUE constraint fails the first try)."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as exc:
        if "UNIQUE constraint" not in str(exc):
            raise
        client.log_inputs(run_id, datasets=inputs)
