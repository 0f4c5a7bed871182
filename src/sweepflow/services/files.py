"""The state files under ``sweepflow up``, and the local checks it builds on.

:class:`_Layout` owns ``<state>/servers`` (pid and log files, ``servers.json``, the
``env`` file, the lock); :func:`_terminate` stops a started process with its children;
:func:`_port_free` says whether a port can be bound on 127.0.0.1, and :func:`_answers`
whether a local server answers a URL. :mod:`sweepflow.services.servers` builds on these.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepflow.settings import state_dir

HOST = "127.0.0.1"  # every server binds here
# Popen objects of the processes this interpreter started: kept so they are reaped
# (no zombies, no ResourceWarning) when a test calls up() and down() in one process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class _Layout:
    """The files of ``<state>/servers``: one object owns the on-disk layout."""

    folder: Path

    @classmethod
    def of(cls, project_dir: str | Path | None) -> _Layout:
        return cls(state_dir(project_dir) / "servers")

    def pid(self, name: str) -> Path:
        return self.folder / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    @property
    def record(self) -> Path:
        return self.folder / "servers.json"

    @property
    def env(self) -> Path:
        return self.folder / "env"

    @property
    def prefect_db(self) -> Path:
        return self.folder / "prefect.db"


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    """Whether ``port`` on 127.0.0.1 can be bound (a listener anywhere makes it busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is free
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------
# HTTP checks (urllib, no proxy: the servers are local)
# ---------------------------------------------------------------------------


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str, data: bytes | None = None, timeout: float = 1.0) -> bytes | None:
    """The body of a 2xx answer from ``url`` (POST JSON when ``data``), else None."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.read() or b" "  # an empty 2xx body still answers
    except (urllib.error.URLError, OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(layout: _Layout) -> Iterator[None]:
    """Hold ``<state>/servers/lock``: a second ``up`` or ``down`` waits for the first."""
    import fcntl

    layout.folder.mkdir(parents=True, exist_ok=True)
    with open(layout.folder / "lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_record(layout: _Layout) -> dict[str, Any]:
    try:
        data = json.loads(layout.record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def _write_env(layout: _Layout, record: dict[str, Any]) -> None:
    uri = (record.get("mlflow") or {}).get("tracking_uri") or record["tracking_uri"]
    lines = [
        f"# Written by `sweepflow up` for {record['project']}; load with:",
        f"#   source {shlex.quote(str(layout.env))}",
        f"export PREFECT_API_URL={shlex.quote(record['prefect']['api_url'])}",
        f"export MLFLOW_TRACKING_URI={shlex.quote(uri)}",
    ]
    _write_text(layout.env, "\n".join(lines) + "\n")


def _last_line(log: Path) -> str:
    """`` (last line: ...)`` of a log, for an error message; empty if none."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return f" (last line: {lines[-1][:200]})" if lines else ""


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this interpreter (no zombie left)."""
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _terminate(proc: Any, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (its own session), SIGKILL after ``grace``."""
    import psutil

    try:
        family = [proc, *proc.children(recursive=True)]
        group = os.getpgid(proc.pid) == proc.pid
    except (psutil.Error, ProcessLookupError):
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        # The group also reaches children orphaned on the way (uvicorn under `mlflow
        # server`); survivors of SIGTERM get SIGKILL by pid too, in case they left it.
        targets = family if sig == signal.SIGKILL else [proc]
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, sig)
        for member in [] if group and sig == signal.SIGTERM else targets:
            with contextlib.suppress(psutil.Error):
                member.send_signal(sig)
        _, family = psutil.wait_procs(family, timeout=wait)
        if not family:
            break
    _reap(proc.pid)
