"""Stored trial results: their one reader and writer, and fully cached sweeps.

A result is one file per cache key in ``<state>/results``, written to a temporary
name and renamed (atomic): a JSON header line, then the result as JSON, whose bytes
the header's SHA-256 covers::

    {"sweepflow": "trial-result", "version": 1, "cache_key": ..., "sha256": ...}
    {"digest": ..., "cache_key": ..., "metrics": {...}, ...}

Nothing else writes or parses these files: the trial tasks save through
:func:`save_result`, and the flows, the CLI and the tests read through
:func:`load_result`. Files that Prefect's result store wrote (before this format) are
still read, so an upgrade re-runs nothing.

A result that exists but does not read (truncated, altered) is *corrupt*; a result
whose trial folder is gone has its *outputs missing*. :func:`cached_results` reports
both, so that the run says why such a trial runs again (``--no-outputs-check`` takes a
result without its folder).

``sweepflow run`` checks the result files first: when every trial of the sweep has a
cached result and no run of the job is in progress (or was killed and left runs to
tidy up), it prints the summary from those results and exits, without Prefect, MLflow
or a flow run (like ``make`` with nothing to do). Anything else goes through the flow.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sweepflow.execution.lifetime import pid_alive
from sweepflow.execution.trial import TrialResult, TrialSpec

__all__ = [
    "CORRUPT",
    "OUTPUTS_MISSING",
    "all_cached",
    "cached_results",
    "load_result",
    "lookup",
    "read_result",
    "result_problem",
    "results_dir",
    "running",
    "save_result",
]

_KIND, _VERSION = "trial-result", 1
# Prefect's result records (JSON serializer) name the class; the module moved once.
_LEGACY_CLASSES = {
    f"{TrialResult.__module__}.{TrialResult.__qualname__}",
    "sweepflow.execute.TrialResult",
}


CORRUPT = "cached result is corrupt: re-running"
OUTPUTS_MISSING = "outputs missing (trial folder gone): re-running"


def _active(state: Path, job: str) -> Path:
    return state / "runs" / job / "active"


@contextlib.contextmanager
def running(state: Path, job: str) -> Iterator[None]:
    """Mark ``job`` as being run by this process while the block runs.

    A marker left by a killed process stays until the next run of the job, which goes
    through the flow (it reaps what the killed run left) and then clears it.
    """
    folder = _active(state, job)
    folder.mkdir(parents=True, exist_ok=True)
    for marker in folder.iterdir():
        if marker.name.isdigit() and not pid_alive(int(marker.name)):
            marker.unlink(missing_ok=True)  # this run reaps what that one left
    mine = folder / str(os.getpid())
    mine.touch()
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    """A value JSON cannot hold as is: a numpy/JAX scalar as its number, else its text."""
    item = getattr(value, "item", None)
    if callable(item):
        with contextlib.suppress(Exception):
            return item()
    return str(value)


def results_dir(state: str | Path) -> Path:
    """Where the results of a state folder are stored."""
    return Path(state, "results")


def lookup(state: Path, enabled: bool = True) -> Callable[[str], TrialResult | None]:
    """The stored result of a cache key, or None; nothing is found when not ``enabled``
    (``--refresh``, ``cache: false``)."""
    folder = results_dir(state)
    return (lambda key: load_result(folder, key)) if enabled else (lambda key: None)


def save_result(folder: Path, result: TrialResult) -> Path:
    """Store ``result`` under its cache key in ``folder`` (atomically); return the file.

    A reader never sees a half-written file: the content goes to a temporary name in
    the same folder first and is renamed over the key.
    """
    body = result.model_dump_json(fallback=_jsonable).encode()
    header = {"sweepflow": _KIND, "version": _VERSION, "cache_key": result.cache_key}
    header["sha256"] = hashlib.sha256(body).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / result.cache_key
    partial = folder / f".{result.cache_key}.{os.getpid()}.{threading.get_ident()}.tmp"
    partial.write_bytes(json.dumps(header, separators=(",", ":")).encode() + b"\n" + body)
    os.replace(partial, path)
    return path


def load_result(folder: Path, key: str) -> TrialResult | None:
    """The stored result for cache key ``key`` in ``folder``, or None (missing,
    unreadable, altered, or stored under another key)."""
    if not key:
        return None
    result = read_result(folder / key)
    return result if result is not None and result.cache_key == key else None


def read_result(path: Path) -> TrialResult | None:
    """A result file (this format, or a Prefect result record of older versions), or
    None if it is missing, unreadable, or its checksum does not match."""
    try:
        data = path.read_bytes()
        head, _, body = data.partition(b"\n")
        if head.startswith(b'{"sweepflow":'):
            header = json.loads(head)
            if header.get("sha256") != hashlib.sha256(body).hexdigest():
                return None
            return TrialResult.model_validate_json(body)
        record = json.loads(data)
        legacy = json.loads(record["result"])
        if legacy.get("__class__") not in _LEGACY_CLASSES:
            return None
        return TrialResult.model_validate(legacy["data"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def result_problem(folder: Path, key: str) -> str:
    """What is wrong with the stored result of ``key``: ``""`` (fine), ``"missing"``
    or ``"corrupt"`` (there, but unreadable or altered)."""
    path = folder / key
    if not path.exists():
        return "missing"
    result = read_result(path)
    return "" if result is not None and result.cache_key == key else "corrupt"


def cached_results(
    specs: list[TrialSpec], state: Path, *, enabled: bool = True, outputs_check: bool = True
) -> tuple[dict[int, TrialResult], dict[int, str]]:
    """The cache hits of ``specs`` by trial index, and why others with a stored result
    run again (:data:`CORRUPT`, :data:`OUTPUTS_MISSING`).

    Args:
        enabled: False (``--refresh``, ``cache: false``): no hits.
        outputs_check: A hit needs its trial folder (its outputs, logs) to exist.
    """
    hits: dict[int, TrialResult] = {}
    notes: dict[int, str] = {}
    if not enabled:
        return hits, notes
    folder = results_dir(state)
    for spec in specs:
        if not spec.cache_key:
            continue
        result = load_result(folder, spec.cache_key)
        if result is None:
            if result_problem(folder, spec.cache_key) == "corrupt":
                notes[spec.index] = CORRUPT
        elif outputs_check and not Path(spec.workdir).is_dir():
            notes[spec.index] = OUTPUTS_MISSING
        else:
            hits[spec.index] = result
    return hits, notes


def all_cached(
    specs: list[TrialSpec], state: Path, job: str, outputs_check: bool = True
) -> list[TrialResult] | None:
    """Every trial's cached result, in order; None if one is missing (or corrupt, or
    its folder is gone while ``outputs_check``) or a run of ``job`` is active (or was
    killed)."""
    active = _active(state, job)
    if active.is_dir() and any(active.iterdir()):
        return None
    hits, _ = cached_results(specs, state, outputs_check=outputs_check)
    if len(hits) < len(specs):
        return None
    return [hits[spec.index] for spec in specs]
