"""Processes a test started, found by the ``PREFECT_HOME`` it gave them.

Each test that starts servers or drivers gives them a Prefect home of its own (the
``prefect_home`` fixture of ``conftest.py``); whatever carries it in its environment is
the test's, and nobody else's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")


def ours(home: Path) -> list[psutil.Process]:
    """Live processes started with ``PREFECT_HOME=home``."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.environ().get("PREFECT_HOME") == str(home):
                found.append(process)
    return found


def named(home: Path, text: str) -> list[psutil.Process]:
    """Those of :func:`ours` whose command line holds ``text``."""
    found = []
    for process in ours(home):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(process.cmdline()):
                found.append(process)
    return found


def kill_all(home: Path) -> None:
    """SIGKILL every process of :func:`ours`."""
    for process in ours(home):
        with contextlib.suppress(psutil.Error):
            process.kill()


def wait_for(condition: Callable[[], T], timeout: float, what: str) -> T:
    """The first truthy value of ``condition()`` (polled every 0.2 s); AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:g} s: {what}")
