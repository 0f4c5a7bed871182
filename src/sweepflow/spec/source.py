"""Read a YAML file into plain data while remembering the line of every key.

Error messages name ``file:line`` and a key path such as ``jobs.train.sets[0].each``;
this module supplies both.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweepflow.errors import JobFileError

__all__ = ["Source", "expected", "format_path", "suggest"]

Path_ = tuple[str | int, ...]


def format_path(path: Path_) -> str:
    """Render a key path: ``('jobs', 'train', 'sets', 0)`` -> ``jobs.train.sets[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def suggest(word: str, choices: list[str]) -> str:
    """Return `` — did you mean 'x'?`` for a near miss, else a list of valid choices."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f" — did you mean '{close[0]}'?"
    return f" (valid keys: {', '.join(sorted(choices))})" if choices else ""


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
}


def expected(error: Any) -> str:
    """What a pydantic error says was expected, and the value given (not a mapping or
    list: those show in the file), in the words of the job and profile files."""
    kind, got = error["type"], error.get("input")
    got_text = f", got {got!r}" if not isinstance(got, (dict, list)) else ""
    if kind == "literal_error":
        return "expected " + error["msg"].removeprefix("Input should be ") + got_text
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}{got_text}"
    what = error["msg"].removeprefix("Value error, ")
    return what + (got_text if kind.startswith(("greater", "less")) else "")


@dataclass
class Source:
    """A parsed YAML file: its data and the line of each key path.

    Attributes:
        path: The file as given.
        data: The loaded data (``yaml.safe_load`` semantics).
        lines: 1-based line of each key path (the key's line for mapping entries).
    """

    path: Path
    data: Any = None
    lines: dict[Path_, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> Source:
        """Load ``path``; YAML syntax errors and duplicate keys raise JobFileError."""
        source = cls(Path(path))
        try:
            data = source.path.read_bytes()
        except OSError as exc:
            raise JobFileError([f"cannot read job file {source.path}: {exc.strerror}"]) from exc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise JobFileError(
                [
                    f"job file {source.display}:{line}:{column} is not UTF-8 text (byte "
                    f"0x{data[exc.start]:02x}): save it as UTF-8"
                ]
            ) from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            source.data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = (
                f"{source.display}:{mark.line + 1}:{mark.column + 1}" if mark else source.display
            )
            raise JobFileError(
                [f"YAML syntax error at {where}: {exc.problem or exc.context}"]
            ) from exc
        problems: list[str] = []
        if node is not None:
            source._walk(node, (), problems)
        if problems:
            raise JobFileError(problems)
        return source

    @property
    def display(self) -> str:
        """The file name as users should see it: relative to the cwd when inside it."""
        try:
            return str(self.path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(self.path)

    def where(self, path: Path_) -> str:
        """``file:line`` of the closest known ancestor of ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return f"{self.display}:{line}"
        return self.display

    def _walk(self, node: yaml.Node, path: Path_, problems: list[str]) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                if key in seen:
                    problems.append(
                        f"Duplicate key '{key}' in {format_path(path) or 'the top level'} at "
                        f"{self.display}:{key_node.start_mark.line + 1}: keep only one"
                    )
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self._walk(value_node, child, problems)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index), problems)
