"""Prefect asset events for workflow steps: every artifact an asset, every step an edge.

A step that ran emits what Prefect's own ``@materialize`` would: one
``prefect.asset.referenced`` event per input and one
``prefect.asset.materialization.succeeded`` event per output, whose related resources
are the inputs (role ``asset``), so the Prefect UI and event feed show the lineage. A
step whose result was reused from the store (a cache hit, where Prefect itself emits
nothing) emits one ``sweepflow.asset.reused`` event per output instead.

:func:`step_events` builds the events (pure: no Prefect needed); :func:`emit_step_events`
sends them from the driver, inside a flow run, and never raises: events are
best-effort. Prefect is imported only inside functions, so importing this module loads
no framework.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sweepflow.workflow.run import StepOutcome

__all__ = [
    "MATERIALIZED_BY",
    "REUSED",
    "SCHEME",
    "asset_key",
    "emit_step_events",
    "flush_events",
    "step_events",
]

SCHEME = "sweepflow"
"""The scheme of sweepflow's asset keys (Prefect wants keys that look like URIs)."""

MATERIALIZED_BY = "sweepflow"
"""The tool named as the materializer (role ``asset-materialized-by``)."""

REUSED = "sweepflow.asset.reused"
"""The event of an output reused from the store by a cache hit."""

REFERENCED = "prefect.asset.referenced"
MATERIALIZED = "prefect.asset.materialization.succeeded"

_log = logging.getLogger(__name__)


def asset_key(type: str, digest: str) -> str:
    """The Prefect asset key of the artifact ``type`` with the full SHA-256 ``digest``.

    >>> asset_key("dataset", "3f2a9c81d0e4" + "0" * 52)
    'sweepflow://dataset/sha256/3f2a9c81d0e40000000000000000000000000000000000000000000000000000'
    """
    return f"{SCHEME}://{type}/sha256/{digest}"


def _asset(type: str, digest: str) -> dict[str, str]:
    """An artifact as an event's resource, named by its readable id."""
    return {
        "prefect.resource.id": asset_key(type, digest),
        "prefect.resource.name": f"{type}:{digest[:12]}",
    }


def _related(resource_id: str, role: str, **labels: str) -> dict[str, str]:
    return {"prefect.resource.id": resource_id, "prefect.resource.role": role, **labels}


def _step(outcome: StepOutcome, workflow: str | None) -> dict[str, str]:
    """The step as a related resource (``sweepflow.step.<name>``, role ``step``)."""
    labels = {"prefect.resource.name": outcome.step}
    if workflow is not None:
        labels["sweepflow.workflow"] = workflow
    return _related(f"sweepflow.step.{outcome.step}", "step", **labels)


def step_events(
    outcome: StepOutcome, *, task_run_id: str | None = None, workflow: str | None = None
) -> list[dict[str, Any]]:
    """The asset events of one finished step, as keyword arguments of Prefect's
    ``emit_event`` (``event``, ``resource``, ``related``, ``payload``).

    Args:
        outcome: What the step did.
        task_run_id: The Prefect task run that ran it, related with role ``task-run``.
        workflow: The workflow reference, recorded in the payload and on the step.

    Returns:
        For ``ran``: a ``prefect.asset.referenced`` event per input, then a
        ``prefect.asset.materialization.succeeded`` event per output. For ``hit``: a
        ``sweepflow.asset.reused`` event per output. Each output's payload holds the
        step, its cache key, the output's readable id and the step's metrics.
    """
    # One asset per artifact, even where two inputs take the same one (as Prefect's set).
    inputs = list(
        {
            asset_key(outcome.input_types[name], digest): _asset(outcome.input_types[name], digest)
            for name, digest in outcome.inputs.items()
        }.values()
    )
    related = [_related(i["prefect.resource.id"], "asset") for i in inputs]
    run = [] if task_run_id is None else [_related(f"prefect.task-run.{task_run_id}", "task-run")]
    events: list[dict[str, Any]] = []
    if outcome.status == "ran":
        events += [{"event": REFERENCED, "resource": i, "related": list(run)} for i in inputs]
        name = MATERIALIZED
        related += [*run, _related(MATERIALIZED_BY, "asset-materialized-by")]
    else:
        name = REUSED
    related.append(_step(outcome, workflow))
    for output, digest in outcome.outputs.items():
        type_ = outcome.types[output]
        payload: dict[str, Any] = {
            "step": outcome.step,
            "key": outcome.key,
            "output": output,
            "id": f"{type_}:{digest[:12]}",
            "metrics": dict(outcome.metrics),
        }
        if workflow is not None:
            payload["workflow"] = workflow
        events.append(
            {
                "event": name,
                "resource": _asset(type_, digest),
                "related": list(related),
                "payload": payload,
            }
        )
    return events


def _warn(message: str) -> None:
    """Log ``message`` as a warning of the current run (this module's logger outside one)."""
    try:
        from prefect.logging import get_run_logger

        get_run_logger().warning(message)
    except Exception:  # no run context (MissingContextError), or no Prefect at all
        _log.warning(message)


def emit_step_events(
    outcome: StepOutcome, *, task_run_id: str | None = None, workflow: str | None = None
) -> None:
    """Send the asset events of one finished step (see :func:`step_events`) to Prefect,
    and wait (at most a few seconds) until they are on their way to the server.

    Call it on the driver, inside the flow run, after the step finished: Prefect relates
    each event to the flow run itself. Never raises: a failure is a warning in the run's
    log, and the workflow goes on.
    """
    try:
        from prefect.events import emit_event

        for event in step_events(outcome, task_run_id=task_run_id, workflow=workflow):
            emit_event(**event)
    except Exception as exc:  # best-effort: lineage must never fail a workflow
        _warn(f"{outcome.step}: could not emit its asset events ({type(exc).__name__}: {exc})")
        return
    if not flush_events(timeout=5.0):
        _warn(f"{outcome.step}: its asset events were not sent to Prefect within 5 s")


def flush_events(timeout: float = 10.0) -> bool:
    """Wait until the events this process emitted have been sent to the Prefect server.

    Prefect sends events from a background worker and drains it only at interpreter
    exit; this waits for its queue to empty without stopping it. Returns False when
    that took longer than ``timeout`` seconds (the server unreachable, say) or failed.
    """
    try:
        from prefect.events.worker import EventsWorker

        worker = EventsWorker.instance()
    except Exception as exc:
        _log.debug("no Prefect events worker to flush: %s", exc)
        return False
    sent = threading.Event()

    def wait() -> None:
        worker.wait_until_empty()
        sent.set()

    # A worker that died leaves its queue unfinished: wait in a daemon thread, bounded.
    threading.Thread(target=wait, name="sweepflow-flush-events", daemon=True).start()
    return sent.wait(timeout)
