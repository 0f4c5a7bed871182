"""``sweepflow.Artifact``: a typed, content-addressed output of a step, as its consumer sees it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["Artifact"]

_DIGEST = re.compile(r"[0-9a-f]{12,}")


@dataclass(frozen=True)
class Artifact:
    """One stored artifact: what a step's input parameter receives.

    Attributes:
        type: The declared artifact type (``dataset``, ``model``, …).
        digest: The full hex SHA-256 of the payload (the identity everywhere but for people).
        path: The stored payload, a file or folder; read-only, never write to it.
        meta: Small JSON-able metadata recorded with it (read-only).

    >>> a = Artifact("dataset", "ab" * 32, Path("/store/data.npz"))
    >>> a.id
    'dataset:abababababab'
    """

    type: str
    digest: str
    path: Path
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not _DIGEST.fullmatch(self.digest):
            raise ValueError(
                f"artifact digest {self.digest!r} is not a lowercase hex SHA-256: "
                "pass the full digest"
            )
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def id(self) -> str:
        """The readable id ``<type>:<first 12 hex>``, for people (not unique by design)."""
        return f"{self.type}:{self.digest[:12]}"

    def __str__(self) -> str:
        return self.id
