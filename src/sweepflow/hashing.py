"""The one hashing function of sweepflow: SHA-256 over canonical JSON."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

__all__ = ["canonical_json", "digest"]


def _canonical(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        # Floats by their exact repr; JSON cannot carry nan/inf, so tag them.
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(v) for v in obj), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, PurePath):
        return obj.as_posix()
    dump = getattr(obj, "model_dump", None)  # pydantic models
    if callable(dump):
        return _canonical(dump(mode="json"))
    if hasattr(obj, "dtype") and hasattr(obj, "shape") and hasattr(obj, "tobytes"):
        data = obj.tobytes()
        return {
            "__array__": str(obj.dtype),
            "shape": list(obj.shape),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    raise TypeError(f"cannot hash a {type(obj).__name__}: pass plain data, paths or arrays")


def canonical_json(obj: Any) -> str:
    """Return the canonical JSON text of ``obj``: sorted keys, no whitespace.

    >>> canonical_json({"b": 1, "a": [1.5, "x"]})
    '{"a":[1.5,"x"],"b":1}'
    """
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    """Return the SHA-256 hex digest of the canonical JSON of ``obj``.

    >>> digest({"a": 1}) == digest({"a": 1})
    True
    >>> digest({"a": 1}) == digest({"a": 1.0})
    False
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()
