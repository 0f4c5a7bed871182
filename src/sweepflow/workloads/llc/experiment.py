"""Read an experiments file (targets x samplers) into a resolved, validated :class:`Matrix`.

The file (``experiments.yaml``)::

    experiment: demo              # default: the file's stem
    targets:                      # each a target config, or {file: PATH}
      - file: target.yaml
      - {model: {kind: quadratic, eigenvalues: [0.1, 1.0, 10.0]}, data: {n: 1000}}
    samplers:                     # each a sampler config, or {file: PATH}; sweep: expands one
      - file: sgld.yaml
      - {kind: hmc, chains: 4, draws: 1000, burn_in: 500}
      - {kind: sgld, sweep: "step_size=log(1e-5:1e-3:3)"}

``file:`` paths are relative to the experiments file. Every problem is one
:class:`LLCError` line with its ``file:line``, key path and fix; nothing here imports JAX.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

from sweepflow.errors import JobFileError, SweepSyntaxError
from sweepflow.hashing import digest
from sweepflow.spec.source import Source, format_path, suggest
from sweepflow.syntax import Param, parse

from ._config import DLNModel, MLPModel, QuadraticModel, TargetConfig, ToyModel
from ._errors import LLCError
from ._files import _classes, _pick, validate
from ._sampler_config import SamplerConfig

__all__ = [
    "Matrix",
    "SamplerEntry",
    "TargetEntry",
    "describe",
    "load_experiment",
    "num_params",
    "sampler_id",
]

_TOP_KEYS = ("experiment", "targets", "samplers")
_REMOVE = object()  # an empty --set value: back to the default
_SET_KEY = re.compile(r"[A-Za-z_][\w-]*(\.[\w-]+)*")


class TargetEntry(BaseModel):
    """One target of the matrix.

    Attributes:
        name: The file's stem, or ``<model.kind>-<id[:6]>`` when written inline; a
            repeated name gets ``-2``, ``-3``, ...
        config: The validated target configuration (``--set`` items applied).
        id: :attr:`TargetConfig.target_id`, the digest of the resolved configuration.
        file: The target file (absolute), or None when written inline.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    config: TargetConfig
    id: str
    file: Path | None = None


class SamplerEntry(BaseModel):
    """One sampler of the matrix (one value combination of a ``sweep:``).

    Attributes:
        name: The file's stem or the kind, plus the swept values: ``sgld[step_size=1e-05]``.
        config: The validated sampler configuration.
        id: :func:`sampler_id` of ``config``, 12 hex digits.
        sweep: The swept keys and their values as written by the sweep (empty if none).
        file: The sampler file (absolute), or None when written inline.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    config: SamplerConfig
    id: str
    sweep: dict[str, str] = Field(default_factory=dict)
    file: Path | None = None


class Matrix(BaseModel):
    """An experiment: its targets and samplers; every pair is one LLC run.

    Attributes:
        experiment: The experiment's name (``experiment:``, default the file's stem).
        path: The experiments file (absolute).
        targets: The targets, in file order.
        samplers: The samplers, in file order, sweeps expanded in place.
        sets: The ``--set`` items applied.
    """

    model_config = ConfigDict(frozen=True)

    experiment: str
    path: Path
    targets: list[TargetEntry]
    samplers: list[SamplerEntry]
    sets: tuple[str, ...] = ()

    def pairs(self) -> list[tuple[TargetEntry, SamplerEntry]]:
        """Every (target, sampler) pair, target by target."""
        return list(itertools.product(self.targets, self.samplers))


_E = TypeVar("_E", TargetEntry, SamplerEntry)


def sampler_id(config: BaseModel) -> str:
    """The id of a sampler configuration: 12 hex digits of its canonical-JSON digest.

    >>> from sweepflow.workloads.llc._sampler_config import SGLDConfig
    >>> sampler_id(SGLDConfig()) == sampler_id(SGLDConfig(step_size=1e-4))
    True
    """
    return digest({"llc_sampler": config})[:12]


def load_experiment(path: str | Path, sets: Sequence[str] = ()) -> Matrix:
    """Read, resolve and validate an experiments file.

    Args:
        path: The experiments YAML file.
        sets: ``--set`` items: ``experiment=NAME``; ``targets.KEY.PATH=V`` (every target
            that has that key) or ``targets.I.KEY.PATH=V`` (the I-th entry as written,
            from 0); the same with ``samplers.`` (``samplers.I.sweep=...`` too). Values
            are YAML scalars or flow lists (``[8, 8]``); an empty value removes the key.

    Raises:
        LLCError: One line: what is wrong, the file:line (or ``--set`` item), the key
            path, and how to fix it.
    """
    source = _read(Path(path), "experiments")
    data = source.data if source.data is not None else {}
    if not isinstance(data, Mapping):
        raise LLCError(
            f"The experiments file {source.display} must be a mapping with the keys "
            "experiment, targets and samplers"
        )
    for key in data:
        if str(key) not in _TOP_KEYS:
            raise LLCError(
                f"Unknown key '{key}' at {source.where((str(key),))} in the experiments "
                f"file{suggest(str(key), list(_TOP_KEYS))}"
            )
    lists = {what: _entries(source, data, what) for what in ("targets", "samplers")}
    name = data.get("experiment", source.path.stem)
    for item in sets:
        name = _apply_set(item, lists, source, name)
    if not isinstance(name, str) or not name.strip():
        raise LLCError(
            f"Invalid value for experiment at {source.where(('experiment',))}: expected a "
            f"non-empty name, got {name!r}; e.g. experiment: demo"
        )
    targets = [(entry.label, _target(entry)) for entry in lists["targets"]]
    samplers = [(entry.label, s) for entry in lists["samplers"] for s in _samplers(entry)]
    return Matrix(
        experiment=name.strip(),
        path=source.path.resolve(),
        targets=_unique(_no_repeats("targets", targets)),
        samplers=_unique(_no_repeats("samplers", samplers)),
        sets=tuple(sets),
    )


@dataclass
class _Entry(Source):
    """One target or sampler: its data, the lines of its keys, where it came from.

    Attributes:
        label: ``targets[0]``, ``samplers[2]``: the entry in the experiments file.
        file: The target or sampler file it was read from, or None (inline).
        places: ``file:line`` of keys written elsewhere (a sweep next to ``file:``).
        notes: What gave a key its value (a ``--set`` item, a sweep value).
    """

    label: str = ""
    file: Path | None = None
    places: dict[tuple, str] = field(default_factory=dict)
    notes: dict[tuple, str] = field(default_factory=dict)

    def where(self, path: tuple[str | int, ...]) -> str:
        """``file:line``, plus the ``--set`` item or sweep value that gave the key."""
        prefixes = [tuple(path[:end]) for end in range(len(path), 0, -1)]
        base = next((self.places[p] for p in prefixes if p in self.places), None)
        base = base or super().where(path)
        note = next((self.notes[p] for p in prefixes if p in self.notes), None)
        return f"{base} ({note})" if note else base


def _read(path: Path, what: str) -> Source:
    try:
        return Source.read(path)
    except JobFileError as exc:
        raise LLCError("; ".join(exc.problems).replace("job file", f"{what} file")) from None


def _entries(source: Source, data: Mapping, what: str) -> list[_Entry]:
    example = "{file: target.yaml}" if what == "targets" else "{kind: sgld}"
    items = data.get(what)
    if not isinstance(items, list) or not items:
        got = "is missing" if what not in data else f"is {items!r}, not a non-empty list"
        raise LLCError(
            f"'{what}' {got} at {source.where((what,))}: list at least one, e.g. "
            f"{what}: [{example}]"
        )
    return [_entry(source, item, what, i) for i, item in enumerate(items)]


def _entry(source: Source, item: Any, what: str, i: int) -> _Entry:
    label, here = f"{what}[{i}]", (what, i)
    kind = "target config" if what == "targets" else "sampler config"
    if not isinstance(item, Mapping):
        hint = f"; to read a file write: - file: {item}" if isinstance(item, str) else ""
        raise LLCError(
            f"{label} at {source.where(here)} must be a {kind} or {{file: PATH}}, got "
            f"{type(item).__name__} {item!r}{hint}"
        )
    lines = {k[2:]: v for k, v in source.lines.items() if k[:2] == here}
    if "file" not in item:
        return _Entry(source.path, copy.deepcopy(dict(item)), lines, label)
    allowed = ("file", "sweep") if what == "samplers" else ("file",)
    extra = [str(k) for k in item if k not in allowed]
    if extra:
        raise LLCError(
            f"Unknown key '{extra[0]}' next to file: in {label} at "
            f"{source.where((*here, extra[0]))}: an entry with file: takes only "
            f"{' and '.join(allowed)}; put the other keys in the file, or use --set"
        )
    given = item["file"]
    file = source.path.parent / str(given)
    if not isinstance(given, str) or not file.is_file():
        raise LLCError(
            f"No {what[:-1]} file {given!r} for {label}.file at {source.where((*here, 'file'))} "
            f"(looked for {file.resolve()}): check the path; it is relative to the "
            "experiments file"
        )
    inner = _read(file, what[:-1])
    data = inner.data if inner.data is not None else {}
    if not isinstance(data, Mapping):
        raise LLCError(
            f"The {what[:-1]} file {inner.display} (from {label}) must be a mapping of keys, "
            f"got {type(data).__name__}"
        )
    data = copy.deepcopy(dict(data))
    entry = _Entry(file, data, dict(inner.lines), label, file.resolve())
    if "sweep" in item:
        data["sweep"] = item["sweep"]
        entry.places[("sweep",)] = source.where((*here, "sweep"))
    return entry


def _target(entry: _Entry) -> TargetEntry:
    config = validate(TargetConfig, None, f"target {entry.label}", entry)
    id_ = config.target_id
    name = entry.file.stem if entry.file else f"{config.model.kind}-{id_[:6]}"
    return TargetEntry(name=name, config=config, id=id_, file=entry.file)


def _samplers(entry: _Entry) -> list[SamplerEntry]:
    data = dict(entry.data)
    text = data.pop("sweep", None)
    base = entry.file.stem if entry.file else str(data.get("kind", "sampler"))
    combos = _sweep(entry, text, data) if text is not None else [{}]
    out = []
    for combo in combos:
        values = {key: _scalar(value) for key, value in combo.items()}
        view = _Entry(entry.path, {**data, **values}, entry.lines, entry.label, entry.file)
        swept = entry.where(("sweep",))
        view.places = {**entry.places, **{(k,): swept for k in combo}}
        view.notes = {**entry.notes, **{(k,): f"sweep value {k}={v}" for k, v in combo.items()}}
        config = validate(SamplerConfig, None, f"sampler {entry.label}", view)
        suffix = "[" + ",".join(f"{k}={v}" for k, v in combo.items()) + "]" if combo else ""
        out.append(
            SamplerEntry(
                name=base + suffix,
                config=config,
                id=sampler_id(config),
                sweep=combo,
                file=entry.file,
            )
        )
    return out


def _sweep(entry: _Entry, text: Any, data: Mapping) -> list[dict[str, str]]:
    where = entry.where(("sweep",))
    if not isinstance(text, str):
        raise LLCError(
            f"Invalid value for {entry.label}.sweep at {where}: expected a sweep string, got "
            f'{text!r}; e.g. sweep: "step_size=log(1e-5:1e-3:3) batch_size=32,64"'
        )
    try:
        params = [p for p in parse(text, pipes=False) if isinstance(p, Param)]
    except SweepSyntaxError as exc:
        raise LLCError(f"Bad sweep in {entry.label}.sweep at {where}: {exc.one_line()}") from None
    cls = _pick(_classes(SamplerConfig), data)
    keys = [name for name in cls.model_fields if name != "kind"] if cls else []
    for param in params:
        column = text.find(param.key) + 1
        if param.key not in keys:
            owner = f"{cls.model_fields['kind'].default} samplers" if cls else "samplers"
            raise LLCError(
                f"Unknown key '{param.key}' in {entry.label}.sweep at {where} (column {column}): "
                f"{owner} have no such setting{suggest(param.key, keys)}"
            )
        if param.key in data and entry.file is None:  # a file's value is a base: swept over
            raise LLCError(
                f"{entry.label} at {where} sets '{param.key}' and also sweeps it (column "
                f"{column}): remove one of the two"
            )
    return [
        dict(zip([p.key for p in params], combo, strict=True))
        for combo in itertools.product(*(list(p) for p in params))
    ]


def _scalar(text: str) -> Any:
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


def _apply_set(
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
    value = _scalar(text) if text.strip() else _REMOVE
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


def _no_repeats(what: str, resolved: list[tuple[str, _E]]) -> list[_E]:
    """The entries, refusing two that resolve to one configuration (one id)."""
    seen: dict[str, str] = {}
    for label, entry in resolved:
        if entry.id in seen:
            first = seen[entry.id]
            also = f" ({entry.name})" if label == first else ""
            raise LLCError(
                f"{label}{also} resolves to the same configuration as {first} (id "
                f"{entry.id[:12]}): remove one from {what}"
            )
        seen[entry.id] = label
    return [entry for _, entry in resolved]


def _unique(entries: list[_E]) -> list[_E]:
    """Give repeated names ``-2``, ``-3``, ... in order."""
    count: dict[str, int] = {}
    out = []
    for entry in entries:
        count[entry.name] = count.get(entry.name, 0) + 1
        n = count[entry.name]
        out.append(entry if n == 1 else entry.model_copy(update={"name": f"{entry.name}-{n}"}))
    return out


def num_params(config: TargetConfig) -> int:
    """The number of parameters ``d`` of a target, from its configuration alone."""
    model = config.model
    if isinstance(model, QuadraticModel):
        return len(model.eigenvalues)
    if isinstance(model, ToyModel):
        return len(model.powers)
    sizes = [config.data.input_dim, *model.widths, model.output_dim]
    bias = isinstance(model, MLPModel) and model.bias
    assert isinstance(model, (MLPModel, DLNModel))
    return sum(a * b + (b if bias else 0) for a, b in itertools.pairwise(sizes))


def describe(matrix: Matrix) -> list[str]:
    """Lines for a dry run: the targets, the samplers with their settings, the pair count."""
    n_t, n_s = len(matrix.targets), len(matrix.samplers)
    lines = [f"experiment {matrix.experiment} ({Source(matrix.path).display})"]
    width = max(
        len(name)
        for name in [*(t.name for t in matrix.targets), *(s.name for s in matrix.samplers)]
    )
    lines.append(f"targets ({n_t}):")
    for t in matrix.targets:
        cfg = t.config
        lines.append(
            f"  {t.name:<{width}}  {t.id[:12]}  {cfg.model.kind}, n={cfg.data.n}, "
            f"d={num_params(cfg)}, {cfg.precision}"
        )
    lines.append(f"samplers ({n_s}):")
    for s in matrix.samplers:
        lines.append(f"  {s.name:<{width}}  {s.id}  {_settings(s)}")
    lines.append(f"pairs: {n_t} targets x {n_s} samplers = {n_t * n_s}")
    return lines


def _settings(entry: SamplerEntry) -> str:
    """``sgld: 4 chains x 1000 draws, step_size=1e-05``: settings swept or off their defaults."""
    config: Any = entry.config
    defaults = type(config)()
    changed = [
        f"{key}={value}"
        for key, value in config.model_dump().items()
        if key not in ("kind", "chains", "draws")
        and (key in entry.sweep or value != getattr(defaults, key))
    ]
    head = f"{config.kind}: {config.chains} chains x {config.draws} draws"
    return ", ".join([head, *changed])
