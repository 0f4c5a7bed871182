"""Code fingerprints: which source files a trial runs, and a digest of their content.

Editing ``train.py`` changes the fingerprint of ``python train.py`` trials (their cache
keys change); editing an unrelated file does not. A job's ``watch`` globs add files of
the project; :func:`watch_glob` says which globs can be used (the job-file loader
refuses the others, with their place).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shlex
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from sweepflow.errors import JobError
from sweepflow.hashing import digest

__all__ = ["call_files", "code_files", "fingerprint", "watch_glob"]

_WILDCARD = re.compile(r"[*?\[]")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def watch_glob(pattern: str, project_dir: Path) -> str:
    """``pattern`` as a glob relative to the project folder, normalised; or raise.

    A ``watch`` glob names files inside the project: relative to its folder (an
    absolute path inside it is made relative), never leaving it with ``..``.

    >>> watch_glob("src/./data/../*.py", Path("/p"))
    'src/*.py'
    >>> watch_glob("/p/conf/*.yaml", Path("/p"))
    'conf/*.yaml'
    >>> watch_glob("../shared/*.py", Path("/p"))
    Traceback (most recent call last):
    ...
    sweepflow.errors.JobError: '../shared/*.py' leaves the project folder (/p) with '..': ...

    Raises:
        JobError: The reason the glob cannot be used, and how to fix it (one line).
    """
    root = project_dir.absolute()
    inside = "watch only files inside it, as a glob relative to it (e.g. 'src/**/*.py')"
    if not pattern.strip() or "\0" in pattern:
        what = "has a NUL character" if pattern.strip() else "names no file"
        raise JobError(f"{pattern!r} {what}: give a glob relative to the project folder")
    path = PurePosixPath(pattern)
    if path.is_absolute():
        for base in dict.fromkeys((root, project_dir.resolve())):
            if path.parts[: len(base.parts)] == base.parts:
                path = PurePosixPath(*path.parts[len(base.parts) :])
                break
        else:
            raise JobError(
                f"{pattern!r} is outside the project folder ({root}): {inside}; copy or link "
                "other files in"
            )
    if path.parts and path.parts[0].startswith("~"):
        raise JobError(
            f"{pattern!r} starts with '~', which is not expanded: the project folder is {root}; "
            + inside
        )
    parts: list[str] = []
    for part in path.parts:
        if "**" in part and part != "**":
            raise JobError(
                f"{pattern!r} has '**' inside a name ({part!r}): '**' must be a whole part "
                "of the path, e.g. 'src/**/*.py'"
            )
        if part != "..":
            parts.append(part)
        elif parts and _WILDCARD.search(parts[-1]):
            raise JobError(
                f"{pattern!r} has '..' after a wildcard, which can leave the project folder: "
                "write the path without '..'"
            )
        elif parts:
            parts.pop()
        else:
            raise JobError(
                f"{pattern!r} leaves the project folder ({root}) with '..': {inside}; copy or "
                "link other files in"
            )
    if not parts:
        raise JobError(f"{pattern!r} names the project folder, not files: write e.g. '*.py'")
    return "/".join(parts)


def code_files(command: str, project_dir: Path, watch: Iterable[str] = ()) -> list[Path]:
    """Files of the project that a command names (``python train.py`` -> ``train.py``),
    plus the files matched by the job's ``watch`` globs; sorted, absolute, unique.

    Raises:
        JobError: A ``watch`` glob that cannot be used (see :func:`watch_glob`).
    """
    root = project_dir.resolve()
    found: set[Path] = set()
    for word in shlex.split(command):
        try:
            candidate = (root / word).resolve()
            if candidate.is_file() and _inside(candidate, root):
                found.add(candidate)
        except (OSError, ValueError):  # a word no file can have (a NUL, too long)
            continue
    for pattern in watch:
        glob = watch_glob(pattern, root)
        found.update(p.resolve() for p in root.glob(glob) if p.is_file())
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
