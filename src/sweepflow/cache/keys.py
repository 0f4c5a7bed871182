"""Cache keys of trials: what a cached result was made from.

The key is the digest of the job's name and command (or function), the trial's
parameters, the code fingerprint and sweepflow's cache-format version — never a run id, so a new
process or a re-run after a crash finds the result of an unchanged trial.
"""

from __future__ import annotations

from typing import Any

from sweepflow.hashing import digest

__all__ = ["CACHE_FORMAT", "cache_inputs", "cache_key"]

#: Bump when the meaning of a cached result changes; every old entry then misses.
CACHE_FORMAT = 1


def cache_inputs(
    job: str, kind: str, command: str, params: Any, fingerprint: str
) -> dict[str, Any]:
    """The record a cache key is the digest of (kept with the result, readable).

    The job's name is part of it: two jobs that run the same command keep their own
    results (and MLflow runs) rather than one job's trials all showing as cached.
    """
    return {
        "format": CACHE_FORMAT,
        "job": job,
        "kind": kind,
        "command": command,
        "params": params,
        "fingerprint": fingerprint,
    }


def cache_key(job: str, kind: str, command: str, params: Any, fingerprint: str) -> str:
    """Digest of :func:`cache_inputs`.

    >>> key = cache_key("train", "run", "python t.py", {"a": "1"}, "f")
    >>> key == cache_key("train", "run", "python t.py", {"a": "1"}, "f")
    True
    >>> key == cache_key("train", "run", "python t.py", {"a": "2"}, "f")
    False
    >>> key == cache_key("other", "run", "python t.py", {"a": "1"}, "f")
    False
    """
    return digest(cache_inputs(job, kind, command, params, fingerprint))
