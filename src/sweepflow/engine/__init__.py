"""Scheduling units onto a runner, without Prefect.

- ``scheduler``: the loop that keeps N units in flight on a runner, with its
  interfaces (``Runner``, ``Source``, ``Callbacks``) and per-item ``Outcome``.
- ``feed``: a sweep's trials as units, short ones chunked.
- ``progress``: progress events from a running job to whoever shows them.
"""

from sweepflow.engine.feed import Feed
from sweepflow.engine.scheduler import (
    Callbacks,
    Outcome,
    Pending,
    Report,
    Runner,
    Source,
    Unit,
    schedule,
)

__all__ = [
    "Callbacks",
    "Feed",
    "Outcome",
    "Pending",
    "Report",
    "Runner",
    "Source",
    "Unit",
    "schedule",
]
