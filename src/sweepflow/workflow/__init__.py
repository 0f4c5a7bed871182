"""Workflows: steps with typed, content-addressed artifacts, wired by name.

This package owns the declaration layer: ``@sweepflow.step``, ``sweepflow.Artifact``,
``sweepflow.Workflow`` (wiring, validation, ``--stages``) and the workflow config (YAML
with one key per step, overrides, JSON Schema, ``workflow show``).
"""

from __future__ import annotations

from sweepflow.workflow.artifact import Artifact
from sweepflow.workflow.config import (
    apply_overrides,
    describe,
    json_schema,
    load_config,
    read_config,
)
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.steps import Step, step
from sweepflow.workflow.workflow import Edge, Workflow

__all__ = [
    "Artifact",
    "Edge",
    "Step",
    "Workflow",
    "WorkflowError",
    "apply_overrides",
    "describe",
    "json_schema",
    "load_config",
    "read_config",
    "step",
]
