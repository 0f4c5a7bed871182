"""Execution profiles ("cards"): where tasks run — threads, a local Dask cluster, or SLURM.

A profile is a YAML file named after the profile. :func:`load_profile` looks a name up
in ``<project>/profiles/`` first, then in the shipped ``deployments/profiles/``; a value
with a ``/`` or a ``.yaml`` suffix is a path. ``--set key=value`` items (dotted keys,
YAML scalar values) override the file's values. Problems are reported on one line with
the key path and its ``file:line`` (or the ``--set`` item), and how to fix them.

Loading and resolving import no Dask or Prefect; only :meth:`Profile.task_runner` and
:meth:`Profile.job_script` do.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweepflow.errors import JobFileError, ProfileError
from sweepflow.spec.profile_models import (
    _KINDS,
    DEFAULT_PROFILE,
    SCHEDULER_PLACEHOLDER,
    WORKER_NAME_PLACEHOLDER,
    Adapt,
    DaskLocalProfile,
    LocalProfile,
    Profile,
    SlurmProfile,
)
from sweepflow.spec.source import Source, expected, format_path, suggest

__all__ = [
    "DEFAULT_PROFILE",
    "SCHEDULER_PLACEHOLDER",
    "WORKER_NAME_PLACEHOLDER",
    "Adapt",
    "DaskLocalProfile",
    "LocalProfile",
    "Profile",
    "SlurmProfile",
    "available_profiles",
    "load_profile",
    "shipped_profiles_dir",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SET_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


class _Loader(yaml.SafeLoader):
    """YAML with decimal integers only: ``walltime: 12:00:00`` (base 60 in YAML 1.1) and
    ``account: 0042`` (octal) stay strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
    list("-+0123456789"),
)


def shipped_profiles_dir() -> Path:
    """The folder of the shipped profiles (``deployments/profiles``), found without
    importing the ``deployments`` package (the core never imports the layers above it)."""
    package = Path(__file__).resolve().parents[1]  # .../sweepflow
    for root in (package.parent, package.parents[1]):  # installed wheel; source tree (src)
        folder = root / "deployments" / "profiles"
        if (folder / f"{DEFAULT_PROFILE}.yaml").is_file():
            return folder
    return package.parents[1] / "deployments" / "profiles"


def available_profiles(project_dir: str | Path | None = None) -> dict[str, Path]:
    """Profiles by name: shipped ones, then ``<project_dir>/profiles/*.yaml``, which win.

    Args:
        project_dir: The folder of the job file (default: the working directory).
    """
    found: dict[str, Path] = {}
    for folder in (shipped_profiles_dir(), Path(project_dir or ".") / "profiles"):
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            if path.is_file() and _NAME.fullmatch(path.stem):
                found[path.stem] = path
    return dict(sorted(found.items()))


def load_profile(
    name_or_path: str | Path | None,
    sets: list[str] | tuple[str, ...] = (),
    project_dir: str | Path | None = None,
) -> Profile:
    """Find, read and validate a profile, with ``--set`` overrides applied.

    Args:
        name_or_path: A profile name, or a path (relative paths are read from
            ``project_dir`` first, then the working directory); None means ``local``.
        sets: ``key=value`` items; dotted keys reach nested ones (``adapt.maximum=4``,
            ``worker_env.FOO=bar``); values are YAML scalars (``[a, b]`` for a list); an
            empty value removes the key (back to its default).
        project_dir: The folder of the job file (default: the working directory).

    Raises:
        ProfileError: One line naming the profile, key path, file:line or ``--set``
            item, the problem, and the fix.
    """
    name, path = _locate(str(name_or_path or DEFAULT_PROFILE), project_dir)
    source = _read(path)
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ProfileError(
            f"Profile '{name}' at {source.display} must be a mapping of keys, e.g. 'type: slurm'"
        )
    origins: dict[tuple[str, ...], str] = {}
    data = copy.deepcopy(data)
    for item in sets:
        _apply_set(data, item, origins)
    return _validate(data, name, source, origins)


def _is_path(spec: str) -> bool:
    return "/" in spec or os.sep in spec or spec.endswith((".yaml", ".yml"))


def _locate(spec: str, project_dir: str | Path | None) -> tuple[str, Path]:
    if _is_path(spec):
        given = Path(spec).expanduser()
        tried = [given] if given.is_absolute() or not project_dir else [Path(project_dir) / given]
        tried += [given] if given not in tried else []
        for path in tried:
            if path.is_file():
                return path.stem, path
        where = " or ".join(str(p.resolve()) for p in tried)
        raise ProfileError(f"No profile file at {where}: check the path, or give a profile name")
    found = available_profiles(project_dir)
    if spec in found:
        return spec, found[spec]
    hint = suggest(spec, list(found))
    hint = hint if hint.startswith(" —") else ""
    folder = Path(project_dir or ".") / "profiles"
    raise ProfileError(
        f"No profile '{spec}'{hint} (profiles: {', '.join(found) or 'none'}); to add one, "
        f"write {folder / spec}.yaml or pass a path"
    )


def _read(path: Path) -> Source:
    try:
        source = Source.read(path)
        source.data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except JobFileError as exc:
        text = "; ".join(exc.problems).replace("job file", "profile file")
        raise ProfileError(f"Profile '{path.stem}': {text}") from None
    return source


def _scalar(text: str) -> Any:
    """A ``--set`` value: a YAML scalar, or a flow list/mapping (``[a, b]``)."""
    try:
        value = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text
    if value is None and text.strip() not in ("", "~", "null", "Null", "NULL"):
        return text  # '#SBATCH --exclusive' is not a YAML comment here
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("[", "{")):
        return text  # 'a: b' or '- a' were meant as text
    return value


def _apply_set(data: dict[str, Any], item: str, origins: dict[tuple[str, ...], str]) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not _SET_KEY.fullmatch(key):
        raise ProfileError(
            f"Bad --set item {item!r}: write KEY=VALUE with a dotted key, "
            "e.g. --set gpus=2 or --set adapt.maximum=4"
        )
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1], 1):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[:depth])
            raise ProfileError(
                f"Bad --set item {item!r}: {prefix} is {child!r}, not a mapping; "
                f"set it whole, e.g. --set {prefix}=VALUE"
            )
        node = child
    value = _scalar(text)
    if value is None:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    origins[tuple(parts)] = item


def _validate(
    data: dict[str, Any], name: str, source: Source, origins: dict[tuple[str, ...], str]
) -> Profile:
    def place(loc: tuple) -> str:
        for end in range(len(loc), 0, -1):
            if tuple(map(str, loc[:end])) in origins:
                return f"from --set {origins[tuple(map(str, loc[:end]))]!r}"
        return f"at {source.where(loc)}"

    head = f"in profile '{name}'"
    kind = data.get("type", DEFAULT_PROFILE)
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProfileError(
            f"Invalid value for type {head} {place(('type',))}: expected one of "
            f"{', '.join(_KINDS)}, got {kind!r}{suggest(str(kind), list(_KINDS))}"
        )
    problems, misplaced = [], {}
    for key in [str(k) for k in data if str(k) not in cls.file_keys()]:
        owners = [k for k, c in _KINDS.items() if key in c.file_keys()]
        if owners:
            misplaced[key] = owners
        else:
            problems.append(
                f"Unknown key '{key}' {head} {place((key,))}{suggest(key, cls.file_keys())}"
            )
        del data[key]
    if misplaced:
        first, owners = next(iter(misplaced.items()))
        keys = ", ".join(f"'{k}'" for k in misplaced)
        problems.insert(
            0,
            (
                f"Key{'s' if len(misplaced) > 1 else ''} {keys} {head} {place((first,))} "
                f"appl{'y' if len(misplaced) > 1 else 'ies'} to {' and '.join(owners)} profiles, "
                f"not to type {kind}: remove {'them' if len(misplaced) > 1 else 'it'} "
                f"(or set type: {owners[-1]})"
            ),
        )
    try:
        profile = cls.model_validate({**data, "name": name, "source": str(source.path)})
    except ValidationError as exc:
        problems += [_describe(error, head, place) for error in exc.errors()]
    if problems:
        raise ProfileError("; ".join(problems))
    return profile


def _describe(error: Any, head: str, place: Any) -> str:
    """One line for one pydantic error: what, where, how to fix."""
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and p in {"int", "str"}))
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "profile_check":
        loc = (*loc, ctx["key"])
        return f"Invalid value for {format_path(loc)} {head} {place(loc)}: {ctx['reason']}"
    if kind == "extra_forbidden":
        choices = list(Adapt.model_fields) if loc[:1] == ("adapt",) else []
        return (
            f"Unknown key '{loc[-1]}' in {format_path(loc[:-1])} {head} {place(loc)}"
            f"{suggest(str(loc[-1]), choices)}"
        )
    what = expected(error)
    if kind == "model_type" and loc == ("adapt",):
        what = what.replace("a mapping", "a mapping such as {minimum: 0, maximum: 4}")
    return f"Invalid value for {format_path(loc)} {head} {place(loc)}: {what}"
