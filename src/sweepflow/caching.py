"""Cache keys of trials: what a cached result was made from.

The key is the digest of the job's command (or function), the trial's parameters, the
code fingerprint and sweepflow's cache-format version — never a run id, so a new
process or a re-run after a crash finds the result of an unchanged trial.
"""

from __future__ import annotations

from typing import Any

from .hashing import digest

__all__ = ["CACHE_FORMAT", "cache_inputs", "cache_key"]

#: Bump when the meaning of a cached result changes; every old entry then misses.
CACHE_FORMAT = 1


def cache_inputs(kind: str, command: str, params: Any, fingerprint: str) -> dict[str, Any]:
    """The record a cache key is the digest of (kept with the result, readable)."""
    return {
        "format": CACHE_FORMAT,
        "kind": kind,
        "command": command,
        "params": params,
        "fingerprint": fingerprint,
    }


def cache_key(kind: str, command: str, params: Any, fingerprint: str) -> str:
    """Digest of :func:`cache_inputs`.

    >>> cache_key("run", "python t.py", {"a": "1"}, "f") == cache_key(
    ...     "run", "python t.py", {"a": "1"}, "f")
    True
    >>> cache_key("run", "python t.py", {"a": "1"}, "f") == cache_key(
    ...     "run", "python t.py", {"a": "2"}, "f")
    False
    """
    return digest(cache_inputs(kind, command, params, fingerprint))
