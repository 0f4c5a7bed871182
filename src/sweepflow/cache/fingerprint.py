"""Code fingerprints: which source files a trial runs, and a digest of their content.

Editing ``train.py`` changes the fingerprint of ``python train.py`` trials (their cache
keys change); editing an unrelated file does not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shlex
from collections.abc import Iterable
from pathlib import Path

from sweepflow.hashing import digest

__all__ = ["call_files", "code_files", "fingerprint"]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def code_files(command: str, project_dir: Path, watch: Iterable[str] = ()) -> list[Path]:
    """Files of the project that a command names (``python train.py`` -> ``train.py``),
    plus the files matched by the job's ``watch`` globs; sorted, absolute, unique."""
    root = project_dir.resolve()
    found: set[Path] = set()
    for word in shlex.split(command):
        candidate = (root / word).resolve()
        if candidate.is_file() and _inside(candidate, root):
            found.add(candidate)
    for pattern in watch:
        found.update(p.resolve() for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def call_files(function: str, project_dir: Path) -> list[Path]:
    """The source file of a ``call:`` function's module (found without importing it)."""
    module = function.split(":", 1)[0] if ":" in function else function.rpartition(".")[0]
    import sys

    added = str(project_dir.resolve())
    sys.path.insert(0, added)
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path.remove(added)
    origin = getattr(spec, "origin", None)
    return [Path(origin).resolve()] if origin and Path(origin).is_file() else []


def fingerprint(files: Iterable[Path], project_dir: Path) -> str:
    """Digest of the files' contents, keyed by their path relative to the project."""
    root = project_dir.resolve()
    contents = {}
    for path in files:
        name = path.relative_to(root).as_posix() if _inside(path, root) else str(path)
        contents[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest(contents)
