"""The examples in the core's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import sweepflow

_FINDER = doctest.DocTestFinder()
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(sweepflow.__path__, "sweepflow.")
    if not m.name.endswith("__main__")
    and any(t.examples for t in _FINDER.find(importlib.import_module(m.name)))
)


def test_core_has_docstring_examples() -> None:
    assert {"sweepflow.syntax", "sweepflow.hashing"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
