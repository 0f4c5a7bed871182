"""Stored trial results: one format, written atomically, checked when read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweepflow.cache.results import load_result, read_result, save_result
from sweepflow.execution.trial import TrialResult


def _result(key: str = "k" * 64, **extra: object) -> TrialResult:
    fields: dict[str, object] = {
        "digest": "d" * 64,
        "cache_key": key,
        "index": 3,
        "params": {"lr": "0.1"},
        "metrics": {"loss": 0.25},
        "started": 100.0,
        "ended": 101.5,
        "workdir": "/tmp/w",
    }
    return TrialResult.model_validate(fields | extra)


def test_a_saved_result_reads_back_equal(tmp_path: Path) -> None:
    result = _result(value={"acc": 0.9, "layers": [1, 2]})
    path = save_result(tmp_path, result)
    assert path == tmp_path / result.cache_key
    assert load_result(tmp_path, result.cache_key) == result
    assert [p.name for p in tmp_path.iterdir()] == [result.cache_key]  # no temporary left


def test_numpy_scalars_in_a_value_are_stored_as_numbers(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    result = _result(value={"acc": np.float32(0.5), "n": np.int64(7)})
    save_result(tmp_path, result)
    loaded = load_result(tmp_path, result.cache_key)
    assert loaded is not None and loaded.value == {"acc": 0.5, "n": 7}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: text.replace("0.25", "0.75"), id="value-altered"),
        pytest.param(lambda text: "not json", id="garbage"),
        pytest.param(lambda text: "", id="empty"),
    ],
)
def test_a_damaged_result_is_not_a_hit(tmp_path: Path, damage: object) -> None:
    result = _result()
    path = save_result(tmp_path, result)
    path.write_text(damage(path.read_text()))  # type: ignore[operator]
    assert load_result(tmp_path, result.cache_key) is None


def test_a_result_stored_under_another_key_is_not_a_hit(tmp_path: Path) -> None:
    result = _result(key="a" * 64)
    save_result(tmp_path, result)
    (tmp_path / ("a" * 64)).rename(tmp_path / ("b" * 64))
    assert load_result(tmp_path, "b" * 64) is None
    assert load_result(tmp_path, "") is None
    assert load_result(tmp_path, "c" * 64) is None


@pytest.mark.parametrize("module", ["sweepflow.execute", "sweepflow.execution.trial"])
def test_results_prefect_stored_before_are_still_read(tmp_path: Path, module: str) -> None:
    """Older versions let Prefect's result store write the file (JSON serializer)."""
    result = _result()
    inner = {"__class__": f"{module}.TrialResult", "data": result.model_dump(mode="json")}
    record = {
        "metadata": {"storage_key": str(tmp_path / result.cache_key), "serializer": {}},
        "result": json.dumps(inner),
    }
    (tmp_path / result.cache_key).write_text(json.dumps(record))
    assert read_result(tmp_path / result.cache_key) == result
    assert load_result(tmp_path, result.cache_key) == result
