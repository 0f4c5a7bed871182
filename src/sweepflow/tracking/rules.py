"""MLflow's rules for what a run may hold, applied once before either route writes.

sweepflow writes runs by two routes (:mod:`sweepflow.tracking._bulk`, SQL rows without
MLflow; :mod:`sweepflow.tracking._client`, MLflow's client). Both write what this
module makes of a record, so the stored data is the same whatever the route:

- keys (params, metrics, tags) satisfy MLflow's name check: Hydra's override prefixes
  (``+key``, ``++key``, ``~key``) are dropped, any other character MLflow rejects
  becomes ``_``, path-like oddities (``a//b``, ``./a``, ``..``) are normalised, and
  keys are cut to 250 characters; two keys that would collide get ``_2``, ``_3``…
  A renamed param keeps its original spelling in the tag ``sweepflow.param_key.<key>``.
- param values are cut to 6,000 characters and tag values to 8,000 (what MLflow's
  client does); a cut param keeps its full length in ``sweepflow.param_len.<key>``.
- a metric point logged twice (same key, step, timestamp and value) is kept once.
- a new run gets the tags MLflow's fluent API sets: ``mlflow.runName``,
  ``mlflow.user``, ``mlflow.source.name``, ``mlflow.source.type`` (and
  ``mlflow.parentRunId`` for a trial's run).

The limits are those of MLflow 3 (``mlflow/utils/validation.py``); nothing here
imports MLflow.
"""

from __future__ import annotations

import getpass
import math
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "EXPERIMENT_TAGS",
    "MAX_KEY_LENGTH",
    "MAX_METRICS_PER_BATCH",
    "MAX_PARAMS_TAGS_PER_BATCH",
    "MAX_PARAM_LENGTH",
    "MAX_RUN_NAME_LENGTH",
    "MAX_TAG_LENGTH",
    "clean_metrics",
    "clean_params",
    "clean_tags",
    "latest_metrics",
    "run_tags",
    "valid_key",
]

MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_RUN_NAME_LENGTH = 250  # the runs.name column
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_FLOAT = 1.7976931348623157e308  # what MLflow stores for +/- infinity
# MLflow 3's UI opens an experiment with this tag in the model-training view, not GenAI.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}

_BAD_CHARS = re.compile(r"[^/\w.\- :]")
_HYDRA_PREFIX = re.compile(r"^(\+\+|\+|~)")


def valid_key(key: str) -> str:
    """``key`` as a name MLflow accepts (without collision handling).

    >>> valid_key("+trainer.epochs"), valid_key("~model.dropout"), valid_key("a@b")
    ('trainer.epochs', 'model.dropout', 'a_b')
    >>> valid_key("val/acc"), valid_key("a//b/"), valid_key("../x"), valid_key("")
    ('val/acc', 'a/b', '__/x', '_')
    """
    key = _BAD_CHARS.sub("_", _HYDRA_PREFIX.sub("", str(key)))
    parts = [p if p != ".." else "__" for p in key.split("/") if p not in ("", ".")]
    return "/".join(parts)[:MAX_KEY_LENGTH] or "_"


def _unique(key: str, taken: set[str]) -> str:
    if key not in taken:
        return key
    n = 2
    while f"{key[: MAX_KEY_LENGTH - 1 - len(str(n))]}_{n}" in taken:
        n += 1
    return f"{key[: MAX_KEY_LENGTH - 1 - len(str(n))]}_{n}"


def clean_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Params as MLflow stores them, and the tags that record what was changed.

    Returns:
        ``(params, notes)``: valid keys to string values of at most 6,000 characters;
        ``notes`` maps ``sweepflow.param_key.<key>`` to a renamed key's original
        spelling and ``sweepflow.param_len.<key>`` to a cut value's full length.

    >>> params, notes = clean_params({"+trainer.epochs": 3, "lr": 0.1})
    >>> params
    {'trainer.epochs': '3', 'lr': '0.1'}
    >>> notes
    {'sweepflow.param_key.trainer.epochs': '+trainer.epochs'}
    >>> clean_params({"a": "x" * 7000})[1]
    {'sweepflow.param_len.a': '7000'}
    """
    cleaned: dict[str, str] = {}
    notes: dict[str, str] = {}
    for original, value in params.items():
        key = _unique(valid_key(original), set(cleaned))
        text = str(value)
        cleaned[key] = text[:MAX_PARAM_LENGTH]
        if key != original:
            notes[f"sweepflow.param_key.{key}"[:MAX_KEY_LENGTH]] = str(original)[:MAX_TAG_LENGTH]
        if len(text) > MAX_PARAM_LENGTH:
            notes[f"sweepflow.param_len.{key}"[:MAX_KEY_LENGTH]] = str(len(text))
    return cleaned, notes


def clean_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags with valid keys and string values of at most 8,000 characters.

    >>> clean_tags({"note": 1, "a b@c": "x"})
    {'note': '1', 'a b_c': 'x'}
    """
    cleaned: dict[str, str] = {}
    for key, value in tags.items():
        cleaned[_unique(valid_key(key), set(cleaned))] = str(value)[:MAX_TAG_LENGTH]
    return cleaned


def _stored(value: float) -> tuple[float, bool]:
    """The value and NaN flag MLflow's SQL store keeps for ``value``."""
    if math.isnan(value):
        return 0.0, True
    return max(-MAX_FLOAT, min(MAX_FLOAT, value)), False


def clean_metrics(
    rows: Iterable[tuple[str, float, int | None, int]],
) -> list[tuple[str, float, int, int]]:
    """Metric points ``(key, value, step, timestamp_ms)`` with valid keys, each kept
    once (MLflow's client drops a repeated point; its SQL table rejects one).

    >>> clean_metrics([("loss", 1.0, None, 5), ("loss", 1.0, 0, 5), ("a@1", 2, 1, 6)])
    [('loss', 1.0, 0, 5), ('a_1', 2.0, 1, 6)]
    """
    seen: set[tuple[str, float, bool, int, int]] = set()
    cleaned = []
    for key, value, step, timestamp in rows:
        point = (valid_key(key), float(value), int(step or 0), int(timestamp))
        identity = (point[0], *_stored(point[1]), point[2], point[3])
        if identity not in seen:
            seen.add(identity)
            cleaned.append(point)
    return cleaned


def latest_metrics(
    rows: Iterable[tuple[str, float, int, int]],
) -> dict[str, tuple[str, float, int, int]]:
    """The latest point of each metric as MLflow picks it: the greatest
    ``(step, timestamp, stored value)``; on a tie, the first logged.

    >>> latest_metrics([("x", 1.0, 2, 9), ("x", 5.0, 1, 99), ("x", 0.5, 2, 9)])["x"]
    ('x', 1.0, 2, 9)
    """
    latest: dict[str, tuple[str, float, int, int]] = {}
    for row in rows:
        old = latest.get(row[0])
        if old is None or (row[2], row[3], _stored(row[1])[0]) > (
            old[2],
            old[3],
            _stored(old[1])[0],
        ):
            latest[row[0]] = row
    return latest


def run_tags(name: str, tags: Mapping[str, Any], parent_id: str | None = None) -> dict[str, str]:
    """The tags a new run gets: MLflow's defaults (the fluent API's), then ``tags``.

    Args:
        name: The run name (``mlflow.runName``, cut to 250 characters).
        tags: The caller's tags (they win over the defaults, except the run name).
        parent_id: The parent run's id (``mlflow.parentRunId``), if any.
    """
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment (MLflow says "unknown")
        user = "unknown"
    defaults = {
        "mlflow.user": user,
        "mlflow.source.name": sys.argv[0] if sys.argv and sys.argv[0] else "<console>",
        "mlflow.source.type": "LOCAL",
    }
    merged = clean_tags({**defaults, **tags})
    if parent_id:
        merged["mlflow.parentRunId"] = parent_id
    merged["mlflow.runName"] = name[:MAX_RUN_NAME_LENGTH]
    return merged
