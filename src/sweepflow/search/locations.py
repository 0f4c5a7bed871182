"""Where a study lives: its storage checked and placed, file names made from study names,
and the lock file that lets one driver at a time ask.

Pure (standard library only), so the job-file loader checks ``optimize.storage`` and
``optimize.study`` with it before anything starts. The rule: every file sweepflow
writes for a search is inside the state folder, unless an absolute path is named on
purpose. A relative journal path, or the path of a ``sqlite:///`` URL, is taken inside
the state folder; one that climbs out of it with ``..`` is refused. A study name never
names a folder: its file names keep only safe characters.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from sweepflow.hashing import digest

__all__ = [
    "ACCEPTED",
    "DATABASES",
    "file_stem",
    "lock_path",
    "place_storage",
    "shown",
    "storage_file",
    "storage_problem",
    "study_name_problem",
]

# SQLAlchemy's own dialects (Optuna's RDBStorage opens any of them); a driver may follow
# '+' (postgresql+psycopg://).
DATABASES = ("sqlite", "postgresql", "mysql", "mariadb", "oracle", "mssql")
ACCEPTED = (
    "a journal file (studies/tune.journal, inside the state folder, or an absolute path) "
    "or a database URL: sqlite:///study.db (inside the state folder; sqlite:////abs/study.db "
    "for an absolute path), postgresql://user@host/db, mysql://user@host/db (also "
    "mariadb, oracle, mssql; a driver may follow '+', as in postgresql+psycopg://)"
)
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.DOTALL)
_SAFE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")


def shown(location: str) -> str:
    """A storage as messages and records show it: a URL's password masked.

    >>> shown("postgresql://me:secret@db/optuna")
    'postgresql://me:***@db/optuna'
    """
    return _PASSWORD.sub(r"\1***@", location)


def _backend(scheme: str) -> str:
    """The database of a URL scheme: ``postgresql+psycopg`` -> ``postgresql``."""
    return scheme.partition("+")[0].lower()


def _sqlite_path(rest: str) -> str | None:
    """The file of a ``sqlite://`` URL (``rest`` follows ``://``); None in memory."""
    path = rest.partition("?")[0].removeprefix("/")
    return None if path in ("", ":memory:") else path


def _escapes(path: str) -> bool:
    """Whether a relative ``path`` climbs out of the folder it is taken in.

    >>> _escapes("studies/../x.journal"), _escapes("../x.journal"), _escapes("/abs/x")
    (False, True, False)
    """
    if os.path.isabs(os.path.expanduser(path)):
        return False
    parts = PurePosixPath(os.path.normpath(path).replace(os.sep, "/")).parts
    return bool(parts) and parts[0] == ".."


def storage_problem(text: str) -> str | None:
    """Why ``text`` cannot be a study's storage (a sentence that starts with the value
    and lists the accepted forms), or None if it can.

    >>> storage_problem("sqlite:///study.db") is None
    True
    >>> storage_problem("bogus://x")[:52]
    "'bogus://x' has the scheme 'bogus', which no Optuna "
    >>> storage_problem("../../x.journal")[:45]
    "'../../x.journal' leaves the state folder (a "
    """
    if not text.strip():
        return f"{text!r} is empty: give {ACCEPTED}"
    if "://" not in text:
        path = text
    else:
        match = _URL.fullmatch(text)
        if match is None:
            return f"{shown(text)!r} is not a storage URL (scheme://...): give {ACCEPTED}"
        scheme = match["scheme"]
        if _backend(scheme) not in DATABASES:
            return (
                f"{shown(text)!r} has the scheme '{scheme}', which no Optuna storage opens: "
                f"give {ACCEPTED}"
            )
        if _backend(scheme) != "sqlite":
            return None
        found = _sqlite_path(match["rest"])
        if found is None:
            return None
        path = found
    if path.endswith(("/", os.sep)):
        return f"{text!r} names a folder, not a file: give {ACCEPTED}"
    if _escapes(path):
        return (
            f"{text!r} leaves the state folder (a relative path is taken inside it): "
            "name a file inside it (studies/tune.journal) or give an absolute path"
        )
    return None


def study_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a study, or None if it can. Any text but a path: the
    journal and plot files named after it stay in the state folder's ``studies``.

    >>> study_name_problem("tune v2") is None
    True
    >>> study_name_problem("../x")[:40]
    "study name '../x' contains '/': a study "
    """
    for separator in ("/", "\\"):
        if separator in name:
            return (
                f"study name {name!r} contains {separator!r}: a study name is not a path "
                "(its files stay in the state folder); use e.g. tune_v2, or set "
                "optimize.storage to place the study elsewhere"
            )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return f"study name {name!r} contains a control character: use e.g. tune_v2"
    return None


def file_stem(name: str) -> str:
    """A file name for study ``name``: the name itself when it is a safe one, else its
    safe characters and a digest (two names never share a stem).

    >>> file_stem("tune"), file_stem("tune v2"), file_stem("..")
    ('tune', 'tune_v2-a9962825', 'study-a8ca4457')
    """
    if _SAFE_STEM.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")[:60] or "study"
    return f"{slug}-{digest(name)[:8]}"


def place_storage(text: str, state: Path) -> str:
    """The storage ``text`` names, placed: a journal path (absolute), or a URL whose
    SQLite file path is absolute. Relative paths are taken inside ``state``.

    >>> place_storage("studies/a.journal", Path("/s"))
    '/s/studies/a.journal'
    >>> place_storage("sqlite:///a.db?timeout=9", Path("/s"))
    'sqlite:////s/a.db?timeout=9'

    Raises:
        ValueError: ``text`` is not a storage (see :func:`storage_problem`).
    """
    problem = storage_problem(text)
    if problem is not None:
        raise ValueError(problem)
    match = _URL.fullmatch(text)
    if match is None:
        return _inside(text, state)
    path = _sqlite_path(match["rest"]) if _backend(match["scheme"]) == "sqlite" else None
    if path is None:
        return text
    query = "".join(match["rest"].partition("?")[1:])
    return f"{match['scheme']}:///{_inside(path, state)}{query}"


def _inside(path: str, state: Path) -> str:
    """``path`` made absolute: as written when absolute (or ``~``), else in ``state``."""
    expanded = os.path.expanduser(path)
    if os.path.isabs(expanded):
        return os.path.normpath(expanded)
    return os.path.normpath(os.path.join(os.path.abspath(state), expanded))


def storage_file(location: str) -> Path | None:
    """The file a placed storage lives in (a journal, a SQLite database); None for a
    database server or SQLite in memory.

    >>> storage_file("sqlite:////s/a.db?timeout=9"), storage_file("postgresql://h/db")
    (PosixPath('/s/a.db'), None)
    """
    match = _URL.fullmatch(location)
    if match is None:
        return Path(location)
    path = _sqlite_path(match["rest"]) if _backend(match["scheme"]) == "sqlite" else None
    return None if path is None else Path(path)


def lock_path(location: str, state: Path, name: str) -> Path:
    """The file whose lock a driver holds to count a study's trials and ask one: next
    to a journal or SQLite file (drivers on other hosts share it through the file
    system), else in ``state`` (one per database and study).

    >>> lock_path("/s/studies/t.journal", Path("/s"), "t").as_posix()
    '/s/studies/t.journal.ask-lock'
    >>> lock_path("postgresql://h/db", Path("/s"), "t").name[:2]
    't.'
    """
    path = storage_file(location)
    if path is not None:
        return path.with_name(path.name + ".ask-lock")
    key = digest({"storage": location, "study": name})[:12]
    return state / "studies" / f"{file_stem(name)}.{key}.ask-lock"
