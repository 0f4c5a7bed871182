"""The trials inside a unit that runs several: a ``per: batch`` command or a ``submit:``
handler, read back from the unit's own command or parameter file.

A batch is Hydra's ``--multirun`` with ``key=v1,v2`` items; its trials are their
product, the last key varying fastest (Hydra's order, and the plan's). A ``submit:``
parameter file has one line per trial (its ``params``), or per batch with ``per:
batch``. The trials' params are what :mod:`sweepflow.reporting.members` matches a
program's report against, and what their MLflow runs record.
"""

from __future__ import annotations

import itertools
import json
import shlex
from collections.abc import Sequence
from typing import Any

from sweepflow.errors import SweepSyntaxError
from sweepflow.syntax import parse
from sweepflow.syntax.nodes import Param

__all__ = ["batch_trials", "unit_members"]


def batch_trials(items: Sequence[str]) -> list[dict[str, str]]:
    """The trials of one ``--multirun`` batch, from its items (``[]`` if it is none).

    The swept items sit between ``--multirun`` and Hydra's own settings.

    >>> batch_trials(["--multirun", "w=2,5", "h='p q'", "hydra.job.name=j", "x=1"])
    [{'w': '2', 'h': "'p q'"}, {'w': '5', 'h': "'p q'"}]
    """
    if "--multirun" not in items:
        return []
    keys, pools = [], []
    for item in items[items.index("--multirun") + 1 :]:
        if item.startswith("hydra."):
            break
        try:
            (param,) = parse(item, pipes=False)
        except (SweepSyntaxError, ValueError):
            return []  # not a batch sweepflow wrote: one unit, one row
        if not isinstance(param, Param):
            return []
        keys.append(param.key)
        pools.append(list(param))
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*pools)]


def _line_trials(line: str) -> list[dict[str, str]]:
    """The trials of one parameter-file line: its params, or its batch's trials."""
    try:
        record: Any = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict):
        params, args = record.get("params") or {}, record.get("args") or []
        if params:
            return [{str(k): str(v) for k, v in params.items()}]
        return batch_trials([str(a) for a in args]) or [{}]
    items = shlex.split(line)  # HydraFlow's args lines
    if "--multirun" in items:
        return batch_trials(items) or [{}]
    pairs = (item.partition("=") for item in items)
    return [{k: v for k, sep, v in pairs if sep and not k.startswith("hydra.")}]


def unit_members(spec: Any) -> list[dict[str, str]]:
    """The params of each trial of a batch or ``submit:`` unit (a ``TrialSpec``), in
    order; ``[]`` for a unit that is one trial."""
    if spec.kind == "submit":
        return [trial for line in spec.lines for trial in _line_trials(line)]
    if spec.kind == "run" and not spec.params:
        return batch_trials(spec.items)
    return []
