"""``--set`` items of ``sweepflow llc``: edit the entries of an experiments file in place.

``experiment=NAME``, ``targets.KEY.PATH=V`` (every target that has that key),
``targets.I.KEY.PATH=V`` (the I-th entry as written); the same with ``samplers.``
(``samplers.I.sweep=...`` too). Each item is checked against the config schema before
it is applied; a problem is one :class:`LLCError` line. Used by
:func:`~sweepflow.workloads.llc.experiment.load_experiment`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from sweepflow.errors import SweepSyntaxError
from sweepflow.spec.source import Source, format_path, suggest
from sweepflow.syntax import Param, parse

from ._config import TargetConfig
from ._errors import LLCError
from ._files import _classes, _pick
from ._sampler_config import SamplerConfig

if TYPE_CHECKING:
    from .experiment import _Entry

__all__ = ["apply_set", "scalar"]

_REMOVE = object()  # an empty --set value: back to the default
_SET_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*")


def scalar(text: str) -> Any:
    """A swept or ``--set`` value: a number, else a YAML scalar or flow list/mapping."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("[", "{")):
        return text
    return value


def apply_set(
    item: str,
    lists: dict[str, list[_Entry]],
    source: Source,
    name: Any,
) -> Any:
    """Apply one ``--set`` item to the entries; return the (maybe new) experiment name."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not _SET_KEY.fullmatch(key):
        raise LLCError(
            f"Bad --set item {item!r}: write KEY=VALUE with a dotted key, e.g. "
            "--set samplers.draws=200 or --set targets.1.data.n=500"
        )
    parts = key.split(".")
    if parts == ["experiment"]:
        return text
    if parts[0] not in lists or len(parts) < 2:
        raise LLCError(
            f"Unknown --set path {key!r} in {item!r}: start with targets. or samplers. (or set "
            "experiment=NAME), e.g. --set samplers.draws=200 or --set targets.0.data.n=500"
        )
    what, entries = parts[0], lists[parts[0]]
    chosen = list(range(len(entries)))
    if parts[1].isdigit():
        index = int(parts[1])
        if index >= len(entries):
            raise LLCError(
                f"--set {item!r}: there are {len(entries)} {what} in {source.display} "
                f"(indexes 0 to {len(entries) - 1})"
            )
        chosen, parts = [index], [what, *parts[2:]]
        if len(parts) < 2:
            raise LLCError(f"--set {item!r}: name a key after the index, e.g. {key}.seed=1")
    path = tuple(parts[1:])
    root = TargetConfig if what == "targets" else SamplerConfig
    fits, valid = [], set()
    for i in chosen:
        problem = _check_path(root, entries[i].data, path, what == "samplers")
        if isinstance(problem, set):
            valid |= problem
        elif problem:
            raise LLCError(f"--set {item!r} for {entries[i].label}: {problem}")
        else:
            fits.append(i)
    if not fits:
        bad = path[len(path) - 1] if len(path) == 1 else format_path(path)
        listed = ", ".join(sorted(valid))
        hint = suggest(path[-1], sorted(valid))
        hint = hint if hint.startswith(" —") else ""
        raise LLCError(
            f"Unknown key '{bad}' in --set {item!r}: no entry of {what} has it{hint} "
            f"(valid keys: {listed})"
        )
    value = scalar(text) if text.strip() else _REMOVE
    for i in fits:
        entry = entries[i]
        if what == "samplers" and path[0] in _swept_keys(entry.data):
            raise LLCError(
                f"--set {item!r} would override the sweep of {entry.label} at "
                f"{entry.where(('sweep',))}: change the sweep, or set other samplers by index "
                f"(e.g. --set samplers.0.{format_path(path)}=...)"
            )
        _put(entry.data, path, value)
        entry.notes[path] = f"--set {item!r}"
    return name


def _check_path(root: Any, data: Any, path: tuple[str, ...], sampler: bool) -> set[str] | str:
    """The valid keys where ``path`` leaves the schema, a problem text, or "" if it fits."""
    classes, node = _classes(root), data
    for depth, part in enumerate(path):
        cls = _pick(classes, node)
        fields = (
            set(cls.model_fields) if cls else {f for c in classes for f in c.model_fields}
        ) | ({"sweep"} if sampler and depth == 0 else set())
        if part not in fields:
            return fields
        if depth == len(path) - 1:
            return ""
        if part == "sweep" or cls is None:
            return f"{format_path(path[: depth + 1])} is a value: set it whole"
        classes = _classes(cls.model_fields[part].annotation)
        if not classes:
            return f"{format_path(path[: depth + 1])} is a value, not a mapping: set it whole"
        node = node.get(part) if isinstance(node, Mapping) else None
    return ""


def _swept_keys(data: Mapping) -> set[str]:
    text = data.get("sweep")
    try:
        params = parse(text, pipes=False) if isinstance(text, str) else []
    except SweepSyntaxError:
        return set()  # reported with its column when the entry is expanded
    return {p.key for p in params if isinstance(p, Param)}


def _put(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is _REMOVE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
