"""The workflow config: YAML with one key per step, dotted overrides, schema and summary.

::

    prepare:
      n: 1000
    train:
      lr: 0.01

A step left out takes its config model's defaults. ``train.lr=0.1`` overrides one key
(typed by the step's model, as ``@sweepflow.main`` types ``key=value`` items). Every
problem is one line with ``file:line`` (or the override) and the key path ``train.lr``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from sweepflow.errors import JobFileError
from sweepflow.reporting.channel import flatten
from sweepflow.reporting.program import (
    ConfigError,
    _assign,
    _fields,
    _model_class,
    _resolve,
    _split,
    _value,
    config_keys,
)
from sweepflow.spec.source import Source, expected, format_path, suggest
from sweepflow.workflow.errors import WorkflowError
from sweepflow.workflow.steps import Step

if TYPE_CHECKING:
    from sweepflow.workflow.workflow import Workflow

__all__ = [
    "apply_overrides",
    "check_config",
    "describe",
    "json_schema",
    "load_config",
    "read_config",
]

KeyPath = tuple[str | int, ...]
Where = Callable[[KeyPath], str]


def _plain(path: KeyPath) -> str:
    return "config"


def _unknown_keys(model: type[BaseModel], data: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """Keys in ``data`` that ``model`` (and its nested models) would silently ignore."""
    if not isinstance(data, Mapping) or model.model_config.get("extra") == "allow":
        return []
    fields = _fields(model)
    found: list[tuple[KeyPath, str]] = []
    for key, value in data.items():
        if key not in fields:
            found.append(((*path, key), suggest(str(key), list(model.model_fields))))
            continue
        sub = _model_class(fields[key][1])
        if sub is not None:
            found.extend(_unknown_keys(sub, value, (*path, key)))
    return found


def check_config(
    steps: Sequence[Step], config: Mapping[str, Any], workflow: str, where: Where = _plain
) -> tuple[dict[str, BaseModel], list[str]]:
    """Validate a workflow config (plain data) against each step's model.

    Args:
        steps: The workflow's steps.
        config: Step name -> that step's config mapping (None or absent: defaults).
        workflow: The workflow's name, for messages.
        where: Maps a key path to where it came from (``file:line``, an override).

    Returns:
        The validated config per step that has a model, and the problems, one line each.
    """
    problems: list[str] = []
    if not isinstance(config, Mapping):
        return {}, [f"{where(())}: expected a mapping with one key per step, got {config!r}"]
    names = [s.name for s in steps]
    for key in config:
        if key not in names:
            problems.append(
                f"{where((key,))}: '{key}' is not a step of workflow '{workflow}'"
                + suggest(str(key), names).replace("valid keys", "steps")
            )
    configs: dict[str, BaseModel] = {}
    for item in steps:
        data = config.get(item.name)
        data = {} if data is None else data
        if item.config_model is None:
            if data:
                problems.append(
                    f"{where((item.name,))}: step '{item.name}' takes no config: remove its keys"
                )
            continue
        if not isinstance(data, Mapping):
            problems.append(
                f"{where((item.name,))}: {item.name}: expected a mapping of step "
                f"'{item.name}''s config keys, got {data!r}"
            )
            continue
        for path, hint in _unknown_keys(item.config_model, data, (item.name,)):
            problems.append(
                f"{where(path)}: {format_path(path)}: step '{item.name}' has no config key "
                f"'{path[-1]}'{hint}"
            )
        try:
            configs[item.name] = item.config_model.model_validate(dict(data))
        except ValidationError as exc:
            for error in exc.errors():
                path = (item.name, *error["loc"])
                key = format_path(path)
                if error["type"] == "missing":
                    problems.append(
                        f"{where(path)}: {key}: step '{item.name}' needs a value: set it in "
                        f"the config or pass {key}=..."
                    )
                else:
                    problems.append(
                        f"{where(path)}: {key}: {expected(error)} — fix it in the config or "
                        f"pass {key}=..."
                    )
    return configs, problems


def read_config(workflow: Workflow, path: str | Path) -> Source:
    """Read a workflow config file (YAML syntax errors carry ``file:line:column``).

    Raises:
        WorkflowError: The file cannot be read or is not YAML.
    """
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise WorkflowError(
            f"cannot read the config of workflow '{workflow.name}' at {path}: {exc.strerror}"
        ) from None
    try:
        source = Source.read(path)
    except JobFileError as exc:  # YAML syntax, duplicate keys, encoding
        raise WorkflowError([p.replace("job file", "config file") for p in exc.problems]) from None
    if source.data is None:
        source.data = {}
    return source


def apply_overrides(
    workflow: Workflow, config: Mapping[str, Any], overrides: Sequence[str]
) -> dict[str, Any]:
    """A copy of ``config`` with ``step.key=value`` items applied (a later item wins).

    Values are typed by the step's model as ``@sweepflow.main`` types its items:
    ``train.lr=0.1``, ``train.layers=[64,64]``, ``train.name=null``.

    Raises:
        WorkflowError: An item without ``=``, an unknown step or key (one line with the
            key path and the valid keys).
    """
    tree: dict[str, Any] = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else {}
    names = [s.name for s in workflow.steps]
    for item in overrides:
        try:
            key, raw = _split(item)
        except ConfigError as exc:
            raise WorkflowError(f"override: {exc} (e.g. train.lr=0.01)") from None
        name, _, sub = key.partition(".")
        if name not in names:
            raise WorkflowError(
                f"override {item!r}: '{name}' is not a step of workflow '{workflow.name}'"
                + suggest(name, names).replace("valid keys", "steps")
            )
        model = workflow.step(name).config_model
        known = [f"{name}.{k}" for k in config_keys(model)] if model is not None else []
        if model is None or not sub:
            fix = f"valid keys: {', '.join(known)}" if known else "it takes no config"
            raise WorkflowError(f"override {item!r}: set one key of step '{name}' ({fix})")
        try:
            path, annotation = _resolve(model, sub)
        except ConfigError:
            close = difflib.get_close_matches(sub, config_keys(model), n=1, cutoff=0.6)
            hint = f" — did you mean '{name}.{close[0]}'?" if close else ""
            hint += f" (valid keys: {', '.join(sorted(known))})"
            raise WorkflowError(
                f"override {item!r}: step '{name}' has no config key '{sub}'{hint}"
            ) from None
        step_tree = tree.get(name)
        if not isinstance(step_tree, dict):
            step_tree = tree[name] = {}
        try:
            _assign(step_tree, path, _value(key, raw, annotation))
        except ConfigError as exc:
            raise WorkflowError(f"override {item!r}: {exc}") from None
    return tree


def load_config(
    workflow: Workflow,
    path: str | Path | Source | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, BaseModel]:
    """The validated config of each step: the YAML file, then the overrides.

    Args:
        workflow: The workflow.
        path: The YAML config (one key per step), or it as :func:`read_config` read it
            (the trials of a sweep read it once); None: every step's defaults.
        overrides: ``step.key=value`` items, applied after the file.

    Returns:
        Step name -> its validated config model (steps without a model left out).

    Raises:
        WorkflowError: Every problem with ``file:line`` or the override, the key path
            and the fix; the workflow's wiring problems too.
    """
    source = read_config(workflow, path) if isinstance(path, (str, Path)) else path
    data = source.data if source is not None else {}
    if not isinstance(data, Mapping):
        place = source.where(()) if source is not None else "config"
        raise WorkflowError(
            f"{place}: the config of workflow '{workflow.name}' must be a mapping with one "
            f"key per step ({', '.join(workflow.names)}), got {type(data).__name__}"
        )
    tree = apply_overrides(workflow, data, overrides)
    given = {}
    for item in overrides:
        key = item.partition("=")[0].lstrip("+")
        given[tuple(key.split("."))] = item

    def where(key_path: KeyPath) -> str:
        text = tuple(str(part) for part in key_path)
        for end in range(len(text), 0, -1):
            if text[:end] in given:
                return f"override {given[text[:end]]!r}"
        return source.where(key_path) if source is not None else "config"

    found = workflow.problems()
    configs, problems = check_config(workflow.steps, tree, workflow.name, where)
    if found or problems:
        raise WorkflowError(found + problems)
    return configs


def json_schema(workflow: Workflow) -> dict[str, Any]:
    """The JSON Schema of the workflow config: one property per step (its model's schema,
    defaults included); nested models' definitions are shared under ``$defs``."""
    models = list(dict.fromkeys(s.config_model for s in workflow.steps if s.config_model))
    keys, top = models_json_schema([(m, "validation") for m in models])
    defs: dict[str, Any] = top.get("$defs", {})
    properties: dict[str, Any] = {}
    required: list[str] = []
    for item in workflow.steps:
        if item.config_model is None:
            schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        else:
            ref = keys[(item.config_model, "validation")]["$ref"].rpartition("/")[2]
            schema = copy.deepcopy(defs[ref])
            if item.config_model.model_config.get("extra") != "allow":
                schema["additionalProperties"] = False  # unknown keys are errors
            if schema.get("required"):
                required.append(item.name)
        doc = (item.function.__doc__ or "").strip().splitlines()
        if doc:
            schema["description"] = doc[0]
        properties[item.name] = schema
    result: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"config of workflow {workflow.name}",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        result["required"] = required
    if defs:
        result["$defs"] = defs
    return result


def _defaults(model: type[BaseModel]) -> list[str]:
    """``key=default`` for each leaf key, ``key (required)`` for those without one."""
    values = {
        name: field.get_default(call_default_factory=True)
        for name, field in model.model_fields.items()
        if not field.is_required()
    }
    dump = flatten(model.model_construct(**values).model_dump(mode="json"))
    keys = config_keys(model)
    sections = {key.rpartition(".")[0] for key in keys}
    shown = []
    for key in keys:
        if key in dump:
            shown.append(f"{key}={dump[key]}")
        elif key not in sections:
            shown.append(f"{key} (required)")
    return shown


def describe(workflow: Workflow) -> list[str]:
    """The lines ``sweepflow workflow show NAME`` prints: steps in order with their
    inputs, outputs, config keys (defaults) and code version, then the wiring."""
    edges = {(e.consumer, e.input): e for e in workflow.wiring()}
    lines = [f"workflow {workflow.name} ({len(workflow.steps)} steps)"]
    for number, item in enumerate(workflow.steps, 1):
        model = item.config_model.__name__ if item.config_model else "no config"
        lines.append(f"{number}. {item.name}  [{model}]")
        for name, type_ in item.inputs.items():
            edge = edges.get((item.name, name))
            source = f"<- {edge.producer}.{edge.output}" if edge else "<- (unwired)"
            lines.append(f"     in   {name}: {type_}  {source}")
        for name, type_ in item.outputs.items():
            lines.append(f"     out  {name}: {type_}")
        if item.config_model is not None:
            for text in _defaults(item.config_model):
                lines.append(f"     cfg  {item.name}.{text}")
        if item.code_version is not None:
            lines.append(f"     code_version {item.code_version}")
    lines.append("wiring:")
    lines.extend(f"  {edge}" for edge in workflow.wiring())
    if not edges:
        lines.append("  (none)")
    return lines
