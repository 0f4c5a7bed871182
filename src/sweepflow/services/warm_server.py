"""The project's warm Prefect server: started by the first ``sweepflow run`` that needs
one, kept for the next runs, stopped after an idle time.

A run without ``$PREFECT_API_URL``, a Prefect profile's URL or ``sweepflow up``'s server
used to start a Prefect API of its own and wait 8-15 s for it, every time. Now the first
such run starts this server in the background (detached, its own session) and later runs
find it answering at once. Layout, in ``<state>/servers`` beside ``sweepflow up``'s files:

- ``warm.pid`` / ``warm.log``: the supervisor (this module run as a program), with the
  ownership marker of :mod:`sweepflow.services.files` (``down`` stops only a process it
  can prove it started);
- ``warm.json``: the API URL and the idle time, written once the server answers;
- ``warm.lease``: every run that uses the server holds a shared ``flock`` on it for its
  whole life and touches it on the way in and out. The kernel drops the lock when a run
  dies (SIGKILL included), so a lease never outlives its run.

The supervisor starts the server (uvicorn with Prefect's app, the UI on, its database
``prefect.db`` in the same folder, which ``sweepflow up``'s server also uses: the runs
stay visible after either) as a child that gets SIGKILL if the supervisor dies. Once a
second it checks: has the server exited, was it asked to stop (SIGTERM from ``sweepflow
down``), or has nobody held the lease for the idle time since its last touch? Then it
stops the server, removes ``warm.json`` and exits; the idle check holds the lease
exclusively until the server is gone, so no run can pick up a server being stopped.

Idle time: ``$SWEEPFLOW_SERVER_IDLE`` (``20m`` by default; ``90s``, ``1h`` ...; ``0``:
no warm server, each run starts a temporary one of its own that dies with it, see
:mod:`sweepflow.services.temporary`). Standard library only in the supervisor.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sweepflow.errors import SweepflowError
from sweepflow.services.files import (
    HOST,
    ServerStartError,
    _answers,
    _last_line,
    _launch,
    _Layout,
    _locked,
    _process,
    _terminate,
    _write_json,
    free_port,
)

__all__ = [
    "DEFAULT_IDLE",
    "IDLE_ENV",
    "WarmLease",
    "idle_seconds",
    "stop",
    "stop_if_unused",
    "use",
    "warm_status",
]

IDLE_ENV = "SWEEPFLOW_SERVER_IDLE"
DEFAULT_IDLE = 20 * 60.0
NAME = "warm"  # warm.pid, warm.log, warm.json, warm.lease
_UNITS = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600}
_TRIES = 3  # ports taken between choosing and binding


class IdleSettingError(SweepflowError, ValueError):
    """``$SWEEPFLOW_SERVER_IDLE`` is not a duration."""


def idle_seconds(text: str | None = None) -> float:
    """The idle time after which the warm server stops (0: no warm server).

    >>> idle_seconds("90s"), idle_seconds("20m"), idle_seconds("1.5h"), idle_seconds("0")
    (90.0, 1200.0, 5400.0, 0.0)

    Raises:
        IdleSettingError: Not a number with an optional unit s, m or h.
    """
    if text is None:
        text = os.environ.get(IDLE_ENV, "")
        if not text.strip():
            return DEFAULT_IDLE
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(s|m|min|h)?\s*", text)
    if found is None:
        raise IdleSettingError(
            f"{IDLE_ENV}={text!r} is not a duration: write e.g. 20m, 90s or 1h, or 0 for a "
            "Prefect server of each run's own"
        )
    return float(found[1]) * _UNITS[found[2] or ""]


def _record_path(layout: _Layout) -> Path:
    return layout.folder / f"{NAME}.json"


def _lease_path(layout: _Layout) -> Path:
    return layout.folder / f"{NAME}.lease"


def _read(layout: _Layout) -> dict[str, Any]:
    try:
        data = json.loads(_record_path(layout).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------
# The driver's side: use the server (start it if needed)
# ---------------------------------------------------------------------------


class WarmLease:
    """A run's hold on the warm server: :meth:`wait` gives its URL once it answers."""

    lasting = True  # the server outlives the run: its links stay valid

    def __init__(self, layout: _Layout, project: Path) -> None:
        self.layout = layout
        self.project = project

    def wait(self, timeout: float) -> str:
        """Wait until the server answers; return its API URL.

        Raises:
            ServerStartError: No answer within ``timeout`` seconds, or its supervisor
                exited (the message quotes the last line of its log).
        """
        layout = self.layout
        deadline = time.monotonic() + timeout
        gone = 0
        relaunched = seen = False
        while time.monotonic() < deadline:
            url = _read(layout).get("api_url")
            if url and _answers(f"{url}/health") is not None:
                return str(url)
            seen = seen or bool(url)
            gone = gone + 1 if _process(layout, NAME) is None else 0
            if gone >= 4 and not relaunched and seen:
                # It answered once: a server stopping (its supervisor found it dead)
                # as this run came; start a fresh one, once.
                _start_if_missing(layout, self.project)
                relaunched, gone = True, 0
            elif gone >= 4:  # four checks in a row: not a failed read of /proc under load
                raise ServerStartError(
                    f"the warm Prefect server exited while starting; read {layout.log(NAME)}"
                    f"{_last_line(layout.log(NAME))} (or set {IDLE_ENV}=0 for a server per run)"
                )
            time.sleep(0.1)
        raise ServerStartError(
            f"the warm Prefect server did not answer within {timeout:g} s; read "
            f"{layout.log(NAME)}{_last_line(layout.log(NAME))}"
        )

    def stop(self) -> None:
        """Nothing: the server stays warm for the next run (the lease ends with ``use``)."""


@contextlib.contextmanager
def use(project: Path) -> Iterator[WarmLease]:
    """Hold a lease on the project's warm server for the block, starting the server in
    the background if none runs; :meth:`WarmLease.wait` gives its URL. The block's end
    is the server's last use (its idle time counts from there)."""
    layout = _Layout.of(project)
    layout.folder.mkdir(parents=True, exist_ok=True)
    with open(_lease_path(layout), "a") as lease:
        fcntl.flock(lease, fcntl.LOCK_SH)  # waits while a stopping server finishes
        os.utime(lease.fileno())
        try:
            _start_if_missing(layout, project)
            yield WarmLease(layout, project)
        finally:
            with contextlib.suppress(OSError):
                os.utime(lease.fileno())  # idle from the end of this run


def _start_if_missing(layout: _Layout, project: Path) -> None:
    """Start the supervisor (detached, see :func:`~sweepflow.services.files._launch`)
    unless one of ours runs; under the servers' lock, so two runs start one."""
    with _locked(layout):
        if _process(layout, NAME) is None:
            _record_path(layout).unlink(missing_ok=True)
            argv = [sys.executable, "-m", "sweepflow.services.warm_server"]
            argv += [str(layout.folder), "--idle", repr(idle_seconds())]
            env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
            _launch(layout, NAME, argv, env, project)


def warm_status(project: Path | str | None) -> dict[str, Any] | None:
    """The warm server's row for ``sweepflow status`` (None: none was started): state,
    pid, URL, database, and how long until it stops if unused."""
    layout = _Layout.of(project)
    if not layout.pid(NAME).exists():
        return None
    proc = _process(layout, NAME)
    record = _read(layout)
    url = record.get("api_url")
    answers = bool(proc and url and _answers(f"{url}/health") is not None)
    state = "stopped" if proc is None else ("running" if answers else "not answering")
    row: dict[str, Any] = {"state": state, "pid": proc.pid if proc else None}
    row["url"] = record.get("url") if proc else None
    row["database"] = str(layout.prefect_db) if proc else None
    row["idle"] = record.get("idle")
    row["in_use"] = _in_use(layout) if proc else False
    try:
        row["last_used"] = _lease_path(layout).stat().st_mtime
    except OSError:
        row["last_used"] = None
    return row


def _in_use(layout: _Layout) -> bool:
    """Whether a run holds the lease now."""
    try:
        with open(_lease_path(layout), "a") as lease:
            fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def stop(project: Path | str | None, grace: float = 10.0) -> str | None:
    """Stop the warm server (``sweepflow down``): ``stopped``, ``not running``, or None
    when none was ever started here. A run using it loses its API: ``down`` means it."""
    layout = _Layout.of(project)
    if not layout.pid(NAME).exists():
        return None
    with _locked(layout):
        proc = _process(layout, NAME)
        if proc is not None:
            _terminate(proc, grace)
        layout.pid(NAME).unlink(missing_ok=True)
        _record_path(layout).unlink(missing_ok=True)
    return "stopped" if proc is not None else "not running"


def stop_if_unused(project: Path | str | None) -> bool:
    """Stop the warm server unless a run uses it (``sweepflow up`` starts a lasting
    server on the same database). Returns whether it was stopped."""
    layout = _Layout.of(project)
    if not layout.pid(NAME).exists() or _in_use(layout):
        return False
    return stop(project) == "stopped"


# ---------------------------------------------------------------------------
# The supervisor: ``python -m sweepflow.services.warm_server <folder> --idle S``
# ---------------------------------------------------------------------------


class _Supervisor:
    def __init__(self, folder: Path, idle: float) -> None:
        self.layout = _Layout(folder)
        self.idle = idle
        self.stopping = False
        self.server: subprocess.Popen[bytes] | None = None
        self.started = time.time()

    def _launch(self, port: int) -> subprocess.Popen[bytes]:
        from sweepflow.execution.lifetime import popen_for_life

        package = find_spec("prefect")  # its folder, without importing it
        site = Path(next(iter(package.submodule_search_locations or []))).parent if package else ""
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(site)]
        argv += ["--factory", "prefect.server.api.server:create_app", "--host", HOST]
        argv += ["--port", str(port), "--log-level", "error", "--lifespan", "on"]
        database = f"sqlite+aiosqlite:///{self.layout.prefect_db}"
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env |= {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": f"http://{HOST}:{port}/api",
            "PREFECT_API_DATABASE_CONNECTION_URL": database,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
            "PREFECT__SERVER_FINAL": "1",  # the last app this process makes
        }
        # Output goes to the supervisor's own log (inherited); the server gets SIGKILL
        # if the supervisor dies, however it dies.
        return popen_for_life(argv, os.getcwd(), env, stdin=subprocess.DEVNULL)

    def start(self) -> bool:
        """Start the server on a free port; True once it answers (``warm.json`` written)."""
        for _ in range(_TRIES):
            port = free_port()
            self.server = self._launch(port)
            url = f"http://{HOST}:{port}"
            while self.server.poll() is None and not self.stopping:
                if _answers(f"{url}/api/health") is not None:
                    record: dict[str, Any] = {"pid": os.getpid(), "port": port}
                    record["server_pid"] = self.server.pid
                    record |= {"url": url, "api_url": f"{url}/api", "idle": self.idle}
                    record |= {"started": self.started}
                    _write_json(_record_path(self.layout), record)
                    return True
                time.sleep(0.1)
            if self.stopping:
                return False
        return False

    def idle_for(self) -> float:
        """Seconds since the last use (the lease file's time, or the server's start)."""
        try:
            last = _lease_path(self.layout).stat().st_mtime
        except OSError:
            last = self.started
        return time.time() - max(last, self.started)

    def watch(self) -> None:
        assert self.server is not None
        while not self.stopping and self.server.poll() is None:
            time.sleep(1.0)
            with open(_lease_path(self.layout), "a") as lease:
                try:
                    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a run uses the server
                if self.idle_for() >= self.idle:
                    self.shutdown()  # still holding the lease: no run picks it up
                    return
        self.shutdown()

    def shutdown(self) -> None:
        server, self.server = self.server, None
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        record = _read(self.layout)
        if record.get("pid") == os.getpid():
            _record_path(self.layout).unlink(missing_ok=True)
        pid_file = self.layout.pid(NAME)
        with contextlib.suppress(OSError, ValueError):
            if int(pid_file.read_text().split()[0]) == os.getpid():
                pid_file.unlink()


def _serve(argv: list[str]) -> int:
    folder = Path(argv[0])
    idle = float(argv[argv.index("--idle") + 1]) if "--idle" in argv else DEFAULT_IDLE
    supervisor = _Supervisor(folder, idle)

    def ask_stop(signum: int, frame: Any) -> None:
        supervisor.stopping = True

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if not supervisor.start():
        code = supervisor.server.poll() if supervisor.server else None
        print(f"the Prefect server did not start (exit code {code})", flush=True)  # to warm.log
        supervisor.shutdown()
        return 1
    supervisor.watch()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1:]))
