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
``--set`` items are applied by the private ``_experiment_sets`` module; :func:`describe`
and :func:`num_params` live in ``_experiment_view`` and are imported from here.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sweepflow.errors import JobFileError, SweepSyntaxError
from sweepflow.hashing import digest
from sweepflow.spec.source import Source, suggest
from sweepflow.syntax import Param, parse

from ._config import TargetConfig
from ._errors import LLCError
from ._experiment_sets import apply_set, scalar
from ._experiment_view import describe, num_params
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
        name = apply_set(item, lists, source, name)
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
        values = {key: scalar(value) for key, value in combo.items()}
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
