"""A step's code fingerprint and cache key: what a cached step result was made from.

The fingerprint covers the step's module and every module of the project it imports,
transitively, found by reading the source (never by importing it), plus the job's
``watch`` globs. Each Python file is hashed by its tokens without comments, blank lines
and docstrings, so re-wording a comment re-runs nothing, while an edit to a helper that
the step imports through two other modules re-runs the step (ZenML and Prefect's
``TASK_SOURCE`` hash the step's own source only).

Why tokens and not ``ast.dump``: the dump's text changes with Python's minor version
(3.12 added ``type_params``, 3.13 dropped empty fields), so every key would change with
the interpreter; the token texts of ``NAME``, ``OP``, ``NUMBER`` and ``STRING`` have
not changed since Python 3.8. The one change, f-strings split into parts in 3.12, is
undone by taking an f-string's exact source text. The AST is used only to find
docstrings and imports, never hashed.
"""

from __future__ import annotations

import ast
import hashlib
import io
import time
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sweepflow.cache.fingerprint import code_files
from sweepflow.hashing import digest
from sweepflow.workflow.errors import WorkflowError

__all__ = [
    "CODE_FORMAT",
    "STEP_KEY_FORMAT",
    "CodeFingerprint",
    "code_fingerprint",
    "explain_miss",
    "source_digest",
    "step_key",
    "step_key_inputs",
]

#: Bump when the meaning of a step key changes; every old step entry then misses.
STEP_KEY_FORMAT = "step-key/1"
#: Bump when the way source files are normalised or hashed changes.
CODE_FORMAT = "code/1"


class CodeFingerprint(BaseModel):
    """The code a step runs: a digest per file and one digest over them all.

    ``files`` maps each file's path relative to the project folder (POSIX, so the same
    on every machine) to its digest; ``digest`` covers ``files`` and ``format``.
    """

    model_config = ConfigDict(frozen=True)

    format: str = CODE_FORMAT
    files: dict[str, str]
    digest: str


# ---- one file: normalised tokens and the imports it names ----------------------------

_Import = tuple[int, str, tuple[str, ...]]  # (level, module, imported names)


@dataclass(frozen=True)
class _Parsed:
    digest: str
    imports: tuple[_Import, ...]


_DROPPED = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_MARKS = {tokenize.NEWLINE: "<newline>", tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>"}
# 3.12 splits f-strings (3.14 also t-strings) into parts; they are put back together.
_STARTS = {getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n)}
_ENDS = {getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n)}

_Position = tuple[int, int]


def _docstrings(tree: ast.AST) -> list[tuple[_Position, _Position]]:
    """(start, end) of every docstring: line and UTF-8 byte column, as ``ast`` gives."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                end = (first.end_lineno or first.lineno, first.end_col_offset or 0)
                spans.append(((first.lineno, first.col_offset), end))
    return spans


def _tokens(source: bytes, tree: ast.AST) -> Iterator[str]:
    """The texts of the tokens that carry meaning, docstrings left out."""
    encoding = tokenize.detect_encoding(io.BytesIO(source).readline)[0]
    # Lines as tokenize reads them (str.splitlines would also split at form feeds).
    lines = [line.decode(encoding) for line in io.BytesIO(source).readlines()]

    def byte_position(position: _Position) -> _Position:
        row, col = position
        line = lines[row - 1] if 0 < row <= len(lines) else ""
        return row, len(line[:col].encode())

    def text(start: _Position, end: _Position) -> str:
        if start[0] == end[0]:
            return lines[start[0] - 1][start[1] : end[1]]
        middle = "".join(lines[start[0] : end[0] - 1])
        return lines[start[0] - 1][start[1] :] + middle + lines[end[0] - 1][: end[1]]

    spans = _docstrings(tree)
    depth, opened = 0, (0, 0)
    after_docstring = False
    for token in tokenize.tokenize(io.BytesIO(source).readline):
        if token.type in _STARTS:
            depth, opened = depth + 1, opened if depth else token.start
            continue
        if depth:
            if token.type in _ENDS:
                depth -= 1
                if not depth:
                    yield text(opened, token.end)
            continue
        if token.type in _DROPPED:
            continue
        if token.type == tokenize.STRING and any(
            a <= byte_position(token.start) < b for a, b in spans
        ):
            after_docstring = True
            continue
        if after_docstring:
            after_docstring = False
            if token.type == tokenize.NEWLINE or token.string == ";":
                continue  # a removed docstring leaves no trace
        yield _MARKS.get(token.type, token.string)


def _imports(tree: ast.AST) -> tuple[_Import, ...]:
    found: list[_Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names if a.name != "*")
            found.append((node.level, node.module or "", names))
        elif (
            isinstance(node, ast.Call)
            and _called(node.func) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            found.append((0, node.args[0].value, ()))  # a module loaded by a literal name
    return tuple(found)


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def source_digest(source: bytes) -> str:
    """Digest of Python source without its comments, blank lines and docstrings.

    Source that does not parse is hashed as it is (the step fails on it anyway).

    >>> source_digest(b"x = 1  # one\\n") == source_digest(b"\\n# note\\nx=1\\n")
    True
    >>> source_digest(b'def f():\\n    "Add."\\n    return 1\\n') == source_digest(
    ...     b"def f():\\n    return 1\\n")
    True
    >>> source_digest(b"x = 1\\n") == source_digest(b"x = 2\\n")
    False
    """
    return _parse(source).digest


def _parse(source: bytes) -> _Parsed:
    try:
        tree = ast.parse(source)
        tokens = list(_tokens(source, tree))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return _Parsed("raw:" + hashlib.sha256(source).hexdigest(), ())
    return _Parsed(digest(tokens), _imports(tree))


# Parsed files by (path, mtime, size): a sweep fingerprints the same modules many times.
_CACHE: dict[tuple[str, int, int, bool], _Parsed] = {}
# File times tick coarsely (milliseconds): a file changed this recently could change
# again with the same time and size, so it is read again rather than trusted (as git does).
_RACY_NS = 2_000_000_000


def _read(path: Path, python: bool) -> _Parsed:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, python)
    parsed = _CACHE.get(key)
    if parsed is None:
        data = path.read_bytes()
        # Files that are not Python are hashed as bytes, as for trials.
        parsed = _parse(data) if python else _Parsed(hashlib.sha256(data).hexdigest(), ())
        if time.time_ns() - stat.st_mtime_ns > _RACY_NS:
            _CACHE[key] = parsed
    return parsed


# ---- which files an import runs ------------------------------------------------------


def _import_root(path: Path) -> Path:
    """The folder a module is imported from: above its last package ``__init__.py``."""
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        folder = folder.parent
    return folder


def _descend(folder: Path, parts: list[str]) -> tuple[list[Path], Path | None]:
    """Files run by importing ``parts`` below ``folder`` (package first, as Python does),
    and the folder of the last part if it is a package (``None`` where it is not)."""
    files: list[Path] = []
    for part in parts:
        package, module = folder / part, folder / f"{part}.py"
        if (package / "__init__.py").is_file():
            files.append(package / "__init__.py")
            folder = package
        elif module.is_file():
            files.append(module)
            return files, None  # a module: nothing below it is a submodule
        elif package.is_dir():
            folder = package  # a namespace package: no code of its own
        else:
            return files, None
    return files, folder


def _targets(path: Path, imports: Iterable[_Import], roots: list[Path]) -> Iterator[Path]:
    """The files of the project that ``path``'s imports can run."""
    for level, module, names in imports:
        parts = module.split(".") if module else []
        if level:
            base = path.parent
            for _ in range(level - 1):
                base = base.parent
        else:
            top = parts[0]
            matches = [
                r
                for r in roots
                if (r / top / "__init__.py").is_file() or (r / f"{top}.py").is_file()
            ] or [r for r in roots if (r / top).is_dir()]
            if not matches:
                continue  # the standard library or an installed package
            base = matches[0]
        files, folder = _descend(base, parts)
        yield from files
        if folder is not None:
            for name in names:  # ``from package import submodule``
                yield from _descend(folder, [name])[0]


def _packages(path: Path) -> Iterator[Path]:
    """The ``__init__.py`` of each package that contains ``path`` (run before it)."""
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        yield folder / "__init__.py"
        folder = folder.parent


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def code_fingerprint(
    module_file: Path, project_root: Path, watch: Iterable[str] = ()
) -> CodeFingerprint:
    """The fingerprint of a step defined in ``module_file``.

    The module and the project's modules it imports, transitively: ``import a.b``,
    ``from a import b``, relative imports and the ``__init__.py`` of every package on
    the way, resolved against the module's own import folder, the project folder and
    its ``src/``. Imports anywhere in a file count (inside functions, ``try``, or
    ``if TYPE_CHECKING``): a file too many costs a re-run, a file too few a stale hit.
    ``importlib.import_module("a.b")`` with a literal name counts too. Names found in
    none of those folders (the standard library, installed packages) and files outside
    the project are not followed; a module whose name is computed at run time
    (``import_module(name)``) is not seen: add it to the job's ``watch`` globs.

    Raises:
        WorkflowError: The module file does not exist.
        JobError: A ``watch`` glob that cannot be used (see ``watch_glob``).
    """
    root = project_root.resolve()
    start = module_file.resolve()
    if not start.is_file():
        raise WorkflowError(
            f"the step's module {module_file} does not exist: define steps in a .py file "
            f"of the project ({root})"
        )
    roots = list(dict.fromkeys([_import_root(start), root, root / "src"]))
    files: dict[str, str] = {}
    seen: set[Path] = set()
    queued = {start}  # as written, to skip resolving the same path again
    todo = [start]
    while todo:
        path = todo.pop().resolve()
        if path in seen or not path.is_file() or not (path == start or _inside(path, root)):
            continue
        seen.add(path)
        parsed = _read(path, python=True)
        base = root if _inside(path, root) else _import_root(path)
        files[path.relative_to(base).as_posix()] = parsed.digest
        for target in [*_packages(path), *_targets(path, parsed.imports, roots)]:
            if target not in queued:
                queued.add(target)
                todo.append(target)
    for path in code_files("", root, watch):
        if path not in seen:
            files[path.relative_to(root).as_posix()] = _read(path, path.suffix == ".py").digest
    files = dict(sorted(files.items()))
    return CodeFingerprint(files=files, digest=digest({"format": CODE_FORMAT, "files": files}))


# ---- the step key --------------------------------------------------------------------


def step_key_inputs(
    step: str,
    config: Any,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    code: CodeFingerprint | str,
) -> dict[str, Any]:
    """The record a step key is the digest of (kept in ``meta.json``, readable).

    ``code`` is the step's fingerprint, or its ``code_version`` string, which replaces
    the fingerprint. No workflow name, run id or time: the same step with the same
    config, inputs and code is a hit from any workflow or sweep.

    Raises:
        WorkflowError: An empty ``code_version``.
    """
    if isinstance(code, str):
        if not code.strip():
            raise WorkflowError(
                f"step {step!r} has an empty code_version: give a label you change when the "
                "code changes (e.g. code_version='2'), or leave it out to fingerprint the code"
            )
        source: dict[str, str] = {"version": code}
    else:
        source = {"fingerprint": code.digest}
    return {
        "format": STEP_KEY_FORMAT,
        "step": step,
        "config": config,
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "code": source,
    }


def step_key(
    step: str,
    config: Any,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    code: CodeFingerprint | str,
) -> str:
    """Digest of :func:`step_key_inputs`: the cache key of one step.

    >>> key = step_key("train", {"lr": 0.1, "seed": 0}, {"dataset": "ab12"},
    ...                {"model": "model"}, code="1")
    >>> key == step_key("train", {"seed": 0, "lr": 0.1}, {"dataset": "ab12"},
    ...                 {"model": "model"}, code="1")
    True
    >>> key == step_key("train", {"lr": 0.1, "seed": 0}, {"dataset": "cd34"},
    ...                 {"model": "model"}, code="1")
    False
    """
    return digest(step_key_inputs(step, config, inputs, outputs, code))


def explain_miss(
    old: CodeFingerprint | Mapping[str, str], new: CodeFingerprint | Mapping[str, str]
) -> list[str]:
    """Why the code a result was made with differs from the code now, one line a file.

    ``old`` and ``new`` are fingerprints or their per-file maps (as in ``meta.json``).

    >>> explain_miss({"a.py": "1", "b.py": "2"}, {"a.py": "9", "c.py": "3"})
    ['a.py changed', 'b.py is gone', 'c.py is new']
    >>> explain_miss({"a.py": "1"}, {"a.py": "1"})
    []
    """
    lines = []
    formats = [f.format if isinstance(f, CodeFingerprint) else None for f in (old, new)]
    if None not in formats and formats[0] != formats[1]:
        lines.append(f"the fingerprint format changed ({formats[0]} -> {formats[1]})")
    before = old.files if isinstance(old, CodeFingerprint) else old
    after = new.files if isinstance(new, CodeFingerprint) else new
    for name in sorted(set(before) | set(after)):
        if name not in after:
            lines.append(f"{name} is gone")
        elif name not in before:
            lines.append(f"{name} is new")
        elif before[name] != after[name]:
            lines.append(f"{name} changed")
    return lines
