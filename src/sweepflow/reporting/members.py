"""Which trial of a batch or ``submit:`` unit a program is reporting for.

A ``per: batch`` job runs several trials in one command (Hydra's ``--multirun``) and a
``submit:`` job hands all its trials to one handler, but every trial gets its own
MLflow run and its own row. The flow writes the unit's trials (their params, in the
order of the batch or of the parameter file's lines) to ``trials.json`` in the unit's
folder and names it in ``$SWEEPFLOW_TRIALS``; every report line a program appends is
then tagged ``"trial": <position>``, the trial it is reporting for:

1. ``$SWEEPFLOW_TRIAL_INDEX`` when set: the position itself (a handler sets it per
   program it starts, e.g. the line number of the parameter file, from 0);
2. else the first trial whose params the program was given: the ``key=value`` items
   of ``@sweepflow.main`` (per call), else the overrides of the current Hydra job
   (each job of a ``--multirun``), else the process's own ``key=value`` arguments.

A report that matches no trial is not tagged; the flow notes it and counts it for no
trial. This module runs in every trial process: it imports the standard library only.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "INDEX_ENV",
    "TRIALS_ENV",
    "TRIALS_FILE",
    "current",
    "given",
    "load_members",
    "match",
    "split_report",
    "write_members",
]

TRIALS_ENV = "SWEEPFLOW_TRIALS"
INDEX_ENV = "SWEEPFLOW_TRIAL_INDEX"
TRIALS_FILE = "trials.json"

# The key=value items of the @sweepflow.main call in progress (several per process:
# a program may call its app once per trial).
_GIVEN: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "sweepflow_given", default=None
)
_LOADED: dict[str, tuple[float, list[dict[str, str]]]] = {}
_MATCHED: dict[tuple[str, frozenset[tuple[str, str]]], int | None] = {}


def write_members(folder: Path, members: Sequence[Mapping[str, str]]) -> Path:
    """Write ``trials.json`` (the unit's trials' params, in order) atomically; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TRIALS_FILE
    temporary = folder / f".{TRIALS_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps([dict(m) for m in members]), encoding="utf-8")
    temporary.replace(path)
    return path


def load_members(path: str) -> list[dict[str, str]]:
    """The trials listed in ``path`` (read once per change of the file)."""
    stamp = os.stat(path).st_mtime
    seen = _LOADED.get(path)
    if seen is None or seen[0] != stamp:
        with open(path, encoding="utf-8") as file:
            seen = _LOADED[path] = (stamp, [dict(m) for m in json.load(file)])
    return seen[1]


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        return text[1:-1]
    return text


def _items(words: Iterable[str]) -> dict[str, str]:
    """``key=value`` words by key (Hydra's ``+``/``++``/``~`` prefixes dropped)."""
    found = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.lstrip("+~"):
            found[key.lstrip("+~")] = value
    return found


def match(members: Sequence[Mapping[str, str]], given: Mapping[str, str]) -> int | None:
    """The position of the first trial whose every param ``given`` holds, else None.

    A value matches as written or without the quotes around it.

    >>> trials = [{"a": "1", "b": "x"}, {"a": "1", "b": "'p q'"}]
    >>> match(trials, {"a": "1", "b": "p q", "seed": "0"}), match(trials, {"a": "2"})
    (1, None)
    """
    for position, params in enumerate(members):
        if all(
            key in given and (given[key] == value or _unquoted(given[key]) == _unquoted(value))
            for key, value in params.items()
        ):
            return position
    return None


@contextlib.contextmanager
def given(items: Mapping[str, str]) -> Iterator[None]:
    """Report for the trial whose params are among ``items`` inside the block."""
    token = _GIVEN.set(dict(items))
    try:
        yield
    finally:
        _GIVEN.reset(token)


def _hydra_overrides() -> dict[str, str] | None:
    """The overrides of the Hydra job running now, if Hydra runs one (not imported here)."""
    if "hydra" not in sys.modules:
        return None
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        return _items(HydraConfig.get().overrides.task)
    except Exception:  # another Hydra: fall back to the arguments
        return None


def current(setting: Callable[[str], str | None]) -> int | None:
    """The position of the trial the caller reports for, or None (a unit of one
    trial, or no trial matched). ``setting`` reads the trial's environment.

    Raises:
        ValueError: ``$SWEEPFLOW_TRIAL_INDEX`` is not a position in the unit.
    """
    path = setting(TRIALS_ENV)
    if not path:
        return None
    explicit = setting(INDEX_ENV)
    try:
        members = load_members(path)
    except (OSError, ValueError):  # not readable here: the flow notes the untagged lines
        members = None
    if explicit:
        count = len(members) if members is not None else None
        if not explicit.strip().isdigit() or (count is not None and int(explicit) >= count):
            raise ValueError(
                f"{INDEX_ENV}={explicit!r} is not a trial of this unit: set it to the "
                f"trial's position from 0 (the line of the parameter file)"
                + (f", 0 to {count - 1}" if count else "")
            )
        return int(explicit)
    if members is None:
        return None
    items = _GIVEN.get()
    if items is None:
        items = _hydra_overrides()
    if items is None:
        items = _items(sys.argv[1:])
    key = (path, frozenset(items.items()))
    if key not in _MATCHED:
        _MATCHED[key] = match(members, items)
    return _MATCHED[key]


def split_report(data: bytes, count: int) -> tuple[list[list[bytes]], list[bytes]]:
    """A unit's report lines, by trial (``count`` of them), and the lines of none.

    Lines that do not parse stay with no trial (the reader lists them as problems).

    >>> lines = b'{"kind": "params", "values": {}, "trial": 1}\\n{"kind": "x"}\\n'
    >>> split_report(lines, 2)
    ([[], [b'{"kind": "params", "values": {}, "trial": 1}']], [b'{"kind": "x"}'])
    """
    trials: list[list[bytes]] = [[] for _ in range(count)]
    other: list[bytes] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            position = json.loads(raw).get("trial")
        except (ValueError, AttributeError):
            position = None
        if isinstance(position, int) and not isinstance(position, bool) and 0 <= position < count:
            trials[position].append(raw)
        else:
            other.append(raw)
    return trials, other
