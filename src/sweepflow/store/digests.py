"""Content digests of payloads: a file by its bytes, a folder by a canonical listing.

A file's digest is the SHA-256 of its bytes. A folder's digest is
:func:`sweepflow.hashing.digest` of ``{"format": "sweepflow-folder/1", "files": [...]}``
where each entry is ``[relative POSIX path, sha256 of the bytes, executable]`` sorted by
path. Only regular files count: empty folders, owners, times and other mode bits do
not, so the same outputs give the same digest on a laptop and on a cluster. Symlinks
are refused (what they point to may change after hashing).
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from sweepflow.hashing import digest
from sweepflow.store.errors import StoreError

__all__ = ["FOLDER_FORMAT", "file_digest", "folder_digest", "folder_files", "payload_digest"]

FOLDER_FORMAT = "sweepflow-folder/1"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """Every regular file under ``folder`` as (relative POSIX path, path), sorted.

    Raises:
        StoreError: on a symlink or anything that is neither a file nor a folder.
    """
    found: list[tuple[str, Path]] = []
    for base, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = Path(base, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise StoreError(
                    f"{path}: is a symlink; the store keeps only regular files and folders "
                    "(copy the target into the workspace instead)"
                )
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise StoreError(f"{path}: is not a regular file or folder; remove it")
            if stat.S_ISREG(mode):
                found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def folder_digest(folder: Path) -> str:
    """The canonical digest of a folder's regular files (see the module docstring)."""
    entries = [
        [rel, file_digest(path), bool(path.stat().st_mode & stat.S_IXUSR)]
        for rel, path in folder_files(folder)
    ]
    return digest({"format": FOLDER_FORMAT, "files": entries})


def payload_digest(path: Path) -> str:
    """The digest of a payload: :func:`file_digest` of a file, :func:`folder_digest` of
    a folder.

    Raises:
        StoreError: if ``path`` is missing, a symlink, or neither a file nor a folder.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file or folder; return a path the step wrote") from None
    if stat.S_ISLNK(mode):
        raise StoreError(f"{path}: is a symlink; store the file or folder it points to instead")
    if stat.S_ISREG(mode):
        return file_digest(path)
    if stat.S_ISDIR(mode):
        return folder_digest(path)
    raise StoreError(f"{path}: is not a regular file or folder")
