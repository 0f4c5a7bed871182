"""Asset events of workflow steps: what the Prefect server records for a step that ran
(referenced inputs, a materialized output related to them) and for a cache hit (reused).

The unit tests build the events without Prefect running; the flow tests emit them from a
real flow run and read them back from the server's events API.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

import httpx
import pytest

from sweepflow.workflow.events import asset_key, emit_step_events, step_events
from sweepflow.workflow.run import StepOutcome


def _digest() -> str:
    """A fresh full SHA-256 digest, so each test's assets are its own on the shared API."""
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def _outcomes(
    dataset: str, model: str, metrics: dict[str, float] | None = None
) -> tuple[StepOutcome, StepOutcome]:
    """``train`` taking ``dataset`` and making ``model``: as run, and as a cache hit."""
    ran = StepOutcome(
        step="train",
        status="ran",
        seconds=1.5,
        key="k" * 64,
        outputs={"model": model},
        types={"model": "model"},
        inputs={"dataset": dataset},
        input_types={"dataset": "dataset"},
        metrics=metrics if metrics is not None else {"loss": 0.25},
    )
    return ran, ran.model_copy(update={"status": "hit", "seconds": 0.01})


@pytest.mark.parametrize(
    "type_", ["dataset", "model", "llc-target", "Model_2"], ids=lambda t: f"type={t}"
)
def test_asset_key_is_a_valid_prefect_asset_key(type_: str) -> None:
    from prefect.assets import Asset

    digest = _digest()
    key = asset_key(type_, digest)
    assert key == f"sweepflow://{type_}/sha256/{digest}"
    assert Asset(key=key).key == key


def test_ran_step_events_mirror_materialize() -> None:
    dataset, model = _digest(), _digest()
    ran, _ = _outcomes(dataset, model)
    events = step_events(ran, task_run_id="tr-1", workflow="pipe:wf")
    assert [e["event"] for e in events] == [
        "prefect.asset.referenced",
        "prefect.asset.materialization.succeeded",
    ]
    made = events[1]
    assert made["resource"] == {
        "prefect.resource.id": f"sweepflow://model/sha256/{model}",
        "prefect.resource.name": f"model:{model[:12]}",
    }
    roles = {(r["prefect.resource.id"], r["prefect.resource.role"]) for r in made["related"]}
    assert {
        (f"sweepflow://dataset/sha256/{dataset}", "asset"),
        ("prefect.task-run.tr-1", "task-run"),
        ("sweepflow", "asset-materialized-by"),
        ("sweepflow.step.train", "step"),
    } == roles
    assert made["payload"] == {
        "step": "train",
        "key": "k" * 64,
        "output": "model",
        "id": f"model:{model[:12]}",
        "metrics": {"loss": 0.25},
        "workflow": "pipe:wf",
    }


def test_hit_emits_only_reuse_events() -> None:
    _, hit = _outcomes(_digest(), _digest())
    assert [e["event"] for e in step_events(hit)] == ["sweepflow.asset.reused"]


# --- against the Prefect API ---------------------------------------------------------


def _events(api: str, keys: list[str], expected: int, timeout: float = 30.0) -> list[Any]:
    """The asset events about ``keys`` the server has stored, polled until there are
    ``expected`` of them (the server persists events in batches, seconds apart)."""
    body = {
        "filter": {
            "resource": {"id": keys},
            "event": {"prefix": ["prefect.asset.", "sweepflow.asset."]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.post(f"{api.rstrip('/')}/events/filter", json=body, timeout=30)
        response.raise_for_status()
        found: list[Any] = response.json()["events"]
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _related(event: dict[str, Any]) -> set[tuple[str, str]]:
    return {(r["prefect.resource.id"], r["prefect.resource.role"]) for r in event["related"]}


def test_flow_records_lineage_of_ran_and_reused_steps(prefect_api: str) -> None:
    from prefect import flow, runtime, task

    dataset, model = _digest(), _digest()
    ran, hit = _outcomes(dataset, model)

    @task
    def train() -> str:
        return str(runtime.task_run.id)

    @flow(name="asset-events")
    def lineage() -> tuple[str, str]:
        task_run_id = train()
        emit_step_events(ran, task_run_id=task_run_id, workflow="pipe:wf")
        emit_step_events(hit, workflow="pipe:wf")
        return str(runtime.flow_run.id), task_run_id

    flow_run_id, task_run_id = lineage()
    dataset_key = f"sweepflow://dataset/sha256/{dataset}"
    model_key = f"sweepflow://model/sha256/{model}"
    found = _events(prefect_api, [dataset_key, model_key], expected=3)
    by_name = {e["event"]: e for e in found}
    assert sorted(by_name) == [
        "prefect.asset.materialization.succeeded",
        "prefect.asset.referenced",
        "sweepflow.asset.reused",
    ], found
    assert len(found) == 3, found

    made = by_name["prefect.asset.materialization.succeeded"]
    assert made["resource"]["prefect.resource.id"] == model_key
    assert made["resource"]["prefect.resource.name"] == f"model:{model[:12]}"
    assert {
        (dataset_key, "asset"),
        (f"prefect.task-run.{task_run_id}", "task-run"),
        ("sweepflow", "asset-materialized-by"),
        # attached by Prefect from the flow run the events were emitted in
        (f"prefect.flow-run.{flow_run_id}", "flow-run"),
    } <= _related(made)
    assert made["payload"]["id"] == f"model:{model[:12]}"
    assert made["payload"]["metrics"] == {"loss": 0.25}

    referenced = by_name["prefect.asset.referenced"]
    assert referenced["resource"]["prefect.resource.id"] == dataset_key

    reused = by_name["sweepflow.asset.reused"]
    assert reused["resource"]["prefect.resource.id"] == model_key
    assert {(dataset_key, "asset"), ("sweepflow.step.train", "step")} <= _related(reused)
    assert reused["payload"]["step"] == "train"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_an_event_prefect_refuses_is_a_warning_not_a_failure(prefect_api: str) -> None:
    from prefect import flow
    from prefect.settings import temporary_settings

    # Metrics too many for one event (Prefect's limit, made small here): emit_event raises.
    ran, _ = _outcomes(_digest(), _digest(), metrics={f"m{i}": float(i) for i in range(1000)})

    @flow(name="asset-events-too-large")
    def too_large() -> str:
        with temporary_settings(updates={"server.events.maximum_size_bytes": 4000}):
            emit_step_events(ran)
        return "finished"

    records = _Records()
    flow_logger = logging.getLogger("prefect.flow_runs")
    flow_logger.addHandler(records)
    try:
        assert too_large() == "finished"
    finally:
        flow_logger.removeHandler(records)
    assert any(
        m.startswith("train: could not emit its asset events (EventTooLarge")
        for m in records.messages
    ), records.messages
