"""Read target and sampler YAML files; turn validation errors into one-line LLCErrors.

A problem names the key path and its ``file:line`` and says how to fix it, e.g.
``Unknown key 'step_sise' in the sampler at sgld.yaml:3 — did you mean 'step_size'?``.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from sweepflow.errors import JobFileError
from sweepflow.spec.source import Source, format_path, suggest

from ._config import TargetConfig
from ._errors import LLCError
from ._sampler_config import SamplerConfig

__all__ = ["load_sampler_config", "load_target_config", "validate"]


def load_target_config(path: str | Path) -> TargetConfig:
    """Read and validate a target YAML file.

    Raises:
        LLCError: One line: the file:line, the key path, what is wrong, how to fix it.
    """
    return validate(TargetConfig, None, "target", _read(path, "target"))


def load_sampler_config(path: str | Path) -> SamplerConfig:
    """Read and validate a sampler YAML file (``kind: sgld | hmc | nuts | mclmc``).

    Raises:
        LLCError: One line: the file:line, the key path, what is wrong, how to fix it.
    """
    return validate(SamplerConfig, None, "sampler", _read(path, "sampler"))


def validate(kind: Any, value: Any, what: str, source: Source | None = None) -> Any:
    """Validate ``value`` (or ``source.data``) as ``kind``; a model instance passes through."""
    if source is None and isinstance(value, BaseModel) and _is_instance(value, kind):
        return value
    data = source.data if source is not None else value
    if not isinstance(data, Mapping):
        where = f" in {source.display}" if source is not None else ""
        raise LLCError(
            f"The {what} configuration{where} must be a mapping of keys to values, "
            f"got {type(data).__name__}: write it as YAML keys, e.g. kind: ..."
        )
    try:
        return TypeAdapter(kind).validate_python(dict(data))
    except ValidationError as exc:
        errors = exc.errors()
        line = _describe(errors[0], kind, data, what, source)
        more = len(errors) - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise LLCError(line + suffix) from None


def _read(path: str | Path, what: str) -> Source:
    try:
        return Source.read(path)
    except JobFileError as exc:
        text = "; ".join(exc.problems).replace("job file", f"{what} file")
        raise LLCError(text) from None


def _describe(error: Any, kind: Any, data: Any, what: str, source: Source | None) -> str:
    loc = _clean(error["loc"], data)
    place = f" at {source.where(loc)}" if source is not None else ""
    head = f"in the {what}{place}"
    kind_name, ctx = error["type"], error.get("ctx") or {}
    if kind_name == "extra_forbidden":
        owner = _model_at(kind, data, loc[:-1])
        choices = list(owner.model_fields) if owner else []
        where = f" in {format_path(loc[:-1])}" if loc[:-1] else ""
        return f"Unknown key '{loc[-1]}'{where} {head}{suggest(str(loc[-1]), choices)}"
    if kind_name == "missing":
        return (
            f"Missing key '{format_path(loc)}' {head}: add it (see the examples in examples/llc/)"
        )
    if kind_name in ("union_tag_not_found", "union_tag_invalid"):
        tags = _tags(kind, data, loc)
        listed = ", ".join(tags)
        if kind_name == "union_tag_not_found":
            return f"Missing key '{format_path((*loc, 'kind'))}' {head}: add kind: one of {listed}"
        got = str(ctx.get("tag", ""))
        return (
            f"Invalid value for {format_path((*loc, 'kind'))} {head}: expected one of "
            f"{listed}, got {got!r}{suggest(got, tags)}"
        )
    what_text = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    got_text = f", got {got!r}" if not isinstance(got, (dict, list, Mapping)) else ""
    if not loc:
        return f"Invalid {what}{place}: {what_text}"
    return f"Invalid value for {format_path(loc)} {head}: {what_text}{got_text}"


def _clean(loc: tuple, data: Any) -> tuple:
    """Drop the union tags pydantic puts in locations (``model.mlp.widths``)."""
    out: list[Any] = []
    node = data
    for part in loc:
        found = (isinstance(node, Mapping) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        tag = isinstance(node, Mapping) and node.get("kind") == part
        if found:
            out.append(part)
            node = node[part]
        elif tag or (isinstance(part, str) and part.startswith(("function-", "nullable"))):
            continue
        else:
            out.append(part)
            node = None
    return tuple(out)


def _classes(annotation: Any) -> list[type[BaseModel]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _classes(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [cls for arg in get_args(annotation) for cls in _classes(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _tags(root: Any, data: Any, path: tuple) -> list[str]:
    """The ``kind`` values of the union at ``path`` (e.g. sgld, hmc, nuts, mclmc)."""
    classes = _classes(root)
    for part in path:
        cls = _pick(classes, data)
        if cls is None or part not in cls.model_fields:
            return []
        data = data.get(part) if isinstance(data, Mapping) else None
        classes = _classes(cls.model_fields[part].annotation)
    return [str(cls.model_fields["kind"].default) for cls in classes if "kind" in cls.model_fields]


def _pick(classes: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(classes) == 1:
        return classes[0]
    tag = data.get("kind") if isinstance(data, Mapping) else None
    for cls in classes:
        field = cls.model_fields.get("kind")
        if field is not None and field.default == tag:
            return cls
    return None


def _model_at(root: Any, data: Any, path: tuple) -> type[BaseModel] | None:
    classes = _classes(root)
    for part in path:
        cls = _pick(classes, data)
        if cls is None or part not in cls.model_fields:
            return None
        data = data.get(part) if isinstance(data, Mapping) else None
        classes = _classes(cls.model_fields[part].annotation)
    return _pick(classes, data)


def _is_instance(value: BaseModel, kind: Any) -> bool:
    return any(isinstance(value, cls) for cls in _classes(kind))
