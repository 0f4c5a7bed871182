"""What a job runs, read without running it: Python command lines (``python [flags]
script.py`` or ``-m module``, which a warm interpreter can run) and ``call:`` targets.

Pure and standard-library only: the job-file schema checks ``preload:`` with it, and
:mod:`sweepflow.execution.warm` uses it to build the zygote's request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PythonCommand", "call_target", "python_command"]

_INTERPRETER = re.compile(r"python[0-9.]*")
# Interpreter options without an argument; the zygote runs with them, so they hold.
_FLAGS = "bBEIOPqsu"


@dataclass(frozen=True)
class PythonCommand:
    """A command ``python [flags] script args`` or ``python [flags] -m module args``."""

    interpreter: str
    flags: tuple[str, ...]
    target: str
    module: bool
    args: tuple[str, ...]


def python_command(argv: Sequence[str]) -> PythonCommand:
    """Split a python command line; raise ValueError saying why ``argv`` is not one.

    >>> command = python_command(["python", "-u", "train.py", "lr=0.1"])
    >>> command.flags, command.target, command.module, command.args
    (('-u',), 'train.py', False, ('lr=0.1',))
    >>> python_command(["python3", "-m", "pkg.train"]).module
    True
    >>> python_command(["python", "-c", "print(1)"])
    Traceback (most recent call last):
    ...
    ValueError: python option '-c' cannot be used with preload (allowed: -b -B -E -I -O -P -q -s -u)
    """
    if not argv or not _INTERPRETER.fullmatch(os.path.basename(argv[0])):
        raise ValueError(f"{argv[0] if argv else ''!r} is not a python interpreter")
    words = list(argv[1:])
    flags = []
    while words and words[0].startswith("-") and words[0] != "-m":
        word = words.pop(0)
        if len(word) < 2 or not set(word[1:]) <= set(_FLAGS):
            allowed = " ".join(f"-{flag}" for flag in _FLAGS)
            raise ValueError(
                f"python option {word!r} cannot be used with preload (allowed: {allowed})"
            )
        flags.append(word)
    module = bool(words) and words[0] == "-m"
    words = words[1:] if module else words
    if not words:
        raise ValueError("the command names no script or module to run")
    return PythonCommand(argv[0], tuple(flags), words[0], module, tuple(words[1:]))


def call_target(name: str) -> tuple[str, str]:
    """The module and function a ``call:`` names: ``module:function`` (or the last dot).

    >>> call_target("pkg.train:main")
    ('pkg.train', 'main')
    >>> call_target("train.main")
    ('train', 'main')
    >>> call_target("os")
    Traceback (most recent call last):
    ...
    ValueError: 'os' is not module:function (e.g. call: train:main)
    """
    module, sep, function = name.strip().partition(":")
    if not sep:
        module, _, function = name.strip().rpartition(".")
    names = [*module.split("."), function]
    if not module or not all(part.isidentifier() for part in names):
        raise ValueError(f"{name!r} is not module:function (e.g. call: train:main)")
    return module, function
