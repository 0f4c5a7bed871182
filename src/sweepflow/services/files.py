"""The state files under ``sweepflow up``, and the local checks it builds on.

:class:`_Layout` owns ``<state>/servers`` (pid and log files, ``servers.json``, the
``env`` file, the lock); :func:`_launch` starts a server process and :func:`_process`
proves that a pid file names it; :func:`_terminate` stops such a process with its
children; :func:`_port_free` says whether a port can be bound on 127.0.0.1, and
:func:`_answers` whether a local server answers a URL. :mod:`sweepflow.services.servers`
builds on these.

**Ownership.** sweepflow signals a process only when it can prove that it started it.
:func:`_launch` sets ``SWEEPFLOW_SERVICE=<state folder>:<name>:<random token>`` in the
process's environment and writes the pid file as three lines: pid, the process's start
time, and that marker (``servers.json`` repeats them). :func:`_process` accepts a pid
only when the process is alive, started at that time, and carries that marker in its
environment (``/proc/<pid>/environ``); a command line proves nothing (any program can
hold ``-m prefect server start`` in its arguments). A pid file whose process is gone,
or names a process that is not the one started, is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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

from sweepflow.errors import SweepflowError
from sweepflow.settings import state_dir

HOST = "127.0.0.1"  # every server binds here
MARKER_ENV = "SWEEPFLOW_SERVICE"  # the proof that sweepflow started a process
# Popen objects of the processes this interpreter started: kept so they are reaped
# (no zombies, no ResourceWarning) when a test calls up() and down() in one process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServerStartError(SweepflowError, RuntimeError):
    """A server did not come up; the message names the log file to read."""


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


def free_ports(count: int) -> list[int]:
    """``count`` different ports on 127.0.0.1 that nobody listens on now (the kernel's
    choices for port 0, held together so that none is chosen twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def free_port() -> int:
    """A port on 127.0.0.1 that nobody listens on now (the kernel's choice)."""
    return free_ports(1)[0]


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


def recorded_tracking_uri(project_dir: str | Path | None = None) -> str | None:
    """The MLflow store of the project's servers while ``servers.json`` names one
    (from ``sweepflow up`` to ``sweepflow down``), else None. Reads one small file."""
    record = _read_record(_Layout.of(project_dir))
    if not (record.get("prefect") or record.get("mlflow")):
        return None  # what a failed `up` left: it chose no store
    uri = (record.get("mlflow") or {}).get("tracking_uri") or record.get("tracking_uri")
    return uri if isinstance(uri, str) and uri else None


def _read_record(layout: _Layout) -> dict[str, Any]:
    try:
        data = json.loads(layout.record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    _write_text(path, json.dumps(data, indent=2) + "\n")


def _write_text(path: Path, text: str) -> None:
    """Write to a temporary name, then rename: readers never see half a file.

    The file is the user's alone (mode 0600): ``servers.json`` and ``env`` may hold a
    database password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
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


# ---------------------------------------------------------------------------
# Processes sweepflow started, and the proof of it
# ---------------------------------------------------------------------------


def _launch(
    layout: _Layout, name: str, argv: list[str], env: dict[str, str], cwd: Path
) -> dict[str, Any]:
    """Start ``argv`` detached (own session, output to its log) with its ownership
    marker; write its pid file. Returns its ``servers.json`` entry."""
    import psutil

    log = layout.log(name)
    if log.exists():
        log.replace(log.with_suffix(".log.1"))  # keep the previous run's log
    marker = f"{layout.folder}:{name}:{secrets.token_hex(16)}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**env, MARKER_ENV: marker}, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )  # fmt: skip
    _CHILDREN[proc.pid] = proc
    try:
        started = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # exited at once: its pid file would prove nothing
        started = 0.0
    _write_text(layout.pid(name), f"{proc.pid}\n{started!r}\n{marker}\n")
    entry = {"pid": proc.pid, "argv": argv, "log": str(log), "started": started}
    return entry | {"marker": marker}


def _process(layout: _Layout, name: str) -> Any:
    """The ``psutil.Process`` that ``<name>.pid`` names if sweepflow started it (alive,
    the recorded start time, the recorded marker in its environment), else None.

    A pid file that names no such process (gone, a zombie, a reused pid, a foreign
    process, the old one-line format) is removed, unless it changed meanwhile. A
    process whose environment cannot be read (another user's, or one still in
    ``exec``) is left alone and its pid file kept.
    """
    import psutil

    path = layout.pid(name)
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        pid_text, started_text, marker = text.split("\n")[:3]
        pid, started = int(pid_text), float(started_text)
    except ValueError:
        return _stale(path, text)
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return _stale(path, text)
        if abs(proc.create_time() - started) >= 1:
            return _stale(path, text)
        environment = proc.environ()
    except psutil.NoSuchProcess:  # gone (a zombie too)
        return _stale(path, text)
    except (OSError, psutil.Error):  # not readable (another user's, or /proc under load)
        return None
    if not environment:
        # Mid-exec: Popen returns once the child has left the parent's memory (vfork),
        # before the kernel has set up the new program's environment. Not known yet.
        return None
    return proc if marker and environment.get(MARKER_ENV) == marker else _stale(path, text)


def _started_here(pid: int) -> Any:
    """The ``psutil.Process`` of ``pid`` if this interpreter started it and it has not
    exited (its ``Popen`` holds the pid: no reuse), else None. The proof that still
    holds when a pid file is gone (its folder deleted while ``up`` waited)."""
    import psutil

    child = _CHILDREN.get(pid)
    if child is None or child.poll() is not None:
        return None
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid)
    return None


def _stale(path: Path, text: str) -> None:
    """Remove a pid file that names no process of ours, unless it was rewritten (a
    concurrent ``up`` started a new process) since ``text`` was read."""
    with contextlib.suppress(OSError):
        if path.read_text() == text:
            path.unlink()
