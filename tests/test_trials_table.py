"""The trial table on a flow run: which metric columns, in which order."""

from __future__ import annotations

from sweepflow.engine.progress import TrialOutcome, metric_columns


def _row(index: int, **metrics: float) -> TrialOutcome:
    return TrialOutcome(index=index, label=f"t{index}", status="done", metrics=metrics)


def test_the_target_metric_comes_first_then_the_others_by_name() -> None:
    rows = [_row(0, acc=0.9, zeta=1.0, loss=0.3), _row(1, loss=0.2, beta=2.0)]

    assert metric_columns(rows, "loss") == ["loss", "acc", "beta", "zeta"]


def test_without_a_target_the_first_reported_metric_leads() -> None:
    rows = [_row(0, zeta=1.0, acc=0.9), _row(1, beta=2.0)]

    assert metric_columns(rows) == ["zeta", "acc", "beta"]
    assert metric_columns(rows, "absent") == ["zeta", "acc", "beta"]
    assert metric_columns([]) == []


def test_at_most_limit_columns_the_target_always_among_them() -> None:
    rows = [_row(0, **{f"m{i}": float(i) for i in range(12)}, z=0.0)]

    columns = metric_columns(rows, "z", limit=4)

    assert columns == ["z", "m0", "m1", "m10"]
