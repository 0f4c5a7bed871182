"""Where things live in a store folder (``<state>/store``): the one owner of its layout.

::

    objects/sha256/ab/cd/<digest>/payload        the file or folder, read-only
    objects/sha256/ab/cd/<digest>/meta.json      type, digest, size, created, provenance
    objects/sha256/ab/cd/<digest>/extras/<run>/  diagnostics (plots, logs), not hashed
    tmp/            objects being written (same file system, renamed into place)
    leases/         live runs' claims (see ``leases``)
    quarantine/     objects ``verify`` found corrupt
    catalog.db      the SQLite index (see ``catalog``)
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DIGEST", "check_name", "object_dir", "objects_dir", "quarantine_dir", "tmp_dir"]

DIGEST = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:=+-]{0,199}")


def check_name(name: str, what: str) -> str:
    """``name`` if it can be a file name in the store (no folders, no leading dot).

    >>> check_name("run-1", "run")
    'run-1'
    >>> check_name("../x", "run")
    Traceback (most recent call last):
    ...
    ValueError: run '../x': use letters, digits and _.:=+- only (no '/', no leading dot)
    """
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r}: use letters, digits and _.:=+- only (no '/', no leading dot)"
        )
    return name


def objects_dir(root: Path) -> Path:
    """The folder holding the sharded objects."""
    return root / "objects" / "sha256"


def object_dir(root: Path, digest: str) -> Path:
    """The folder of the object ``digest`` (which may not exist).

    >>> object_dir(Path("/s"), "abcd" + "0" * 60).as_posix()[:38]
    '/s/objects/sha256/ab/cd/abcd0000000000'
    """
    return objects_dir(root) / digest[:2] / digest[2:4] / digest


def tmp_dir(root: Path) -> Path:
    """Objects being written; on the store's file system so a rename is atomic."""
    return root / "tmp"


def quarantine_dir(root: Path) -> Path:
    """Where ``verify --quarantine`` moves corrupt objects."""
    return root / "quarantine"
