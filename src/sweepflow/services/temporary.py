"""The temporary Prefect API of one ``sweepflow run`` when no server is configured.

Without ``$PREFECT_API_URL`` Prefect starts an ephemeral API server itself
(``SubprocessASGIServer``): from whichever thread first needs a client, holding the
terminal's stdout and stderr, stopped by an ``atexit`` handler. A SIGKILLed driver left
it running forever (~230 MB each, holding the pipe of ``sweepflow run ... | cat``), and a
driver that exits stopped it before Prefect's log worker had sent its last batch.

:class:`TemporaryAPI` is the same server (uvicorn with Prefect's app factory, UI off,
the ephemeral flags), started by the driver itself before the flow and given to Prefect
as ``PREFECT_API_URL``, so Prefect never starts its own. It

- dies with the driver however the driver ends: ``setpriv --pdeathsig KILL``, forked on
  a thread that lasts as long as the process (:func:`~sweepflow.execution.lifetime.
  popen_for_life`);
- runs in a session of its own with its output in an unnamed temporary file: a Ctrl-C
  reaches only the driver, and no terminal pipe is held;
- is stopped by the driver once the run's logs and events are sent (``cli.console``).

Standard library only: Prefect runs in the child.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path
from typing import IO

from sweepflow.execution.lifetime import popen_for_life
from sweepflow.services.files import HOST, ServerStartError, _answers, free_port

__all__ = ["TemporaryAPI"]

# What Prefect's SubprocessASGIServer sets for its server: no UI, the ephemeral set of
# background services, and "the last app this process makes".
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1"}
_SERVER_ENV["PREFECT__SERVER_FINAL"] = "1"
_TRIES = 3  # ports taken between choosing and binding (another program was faster)


class TemporaryAPI:
    """A Prefect API server that lives as long as this process at most.

    :meth:`start` returns at once (the server imports and migrates its database for a
    few seconds meanwhile); :meth:`wait` returns its URL once it answers.
    """

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.port = 0
        self.output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, cwd: str | Path | None = None) -> TemporaryAPI:
        """Start the server (in ``cwd``, where Prefect reads ``.env`` and ``prefect.toml``;
        default: the working directory)."""
        server = cls(Path(cwd or os.getcwd()))
        server._launch()
        return server

    @property
    def url(self) -> str:
        """The API URL, ``http://127.0.0.1:<port>/api``."""
        return f"http://{HOST}:{self.port}/api"

    def _launch(self) -> None:
        self.port = free_port()
        package = find_spec("prefect")  # its folder, without importing it
        site = Path(next(iter(package.submodule_search_locations or []))).parent if package else ""
        argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(site)]
        argv += ["--factory", "prefect.server.api.server:create_app", "--host", HOST]
        argv += ["--port", str(self.port), "--log-level", "error", "--lifespan", "on"]
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | _SERVER_ENV
        self.output.seek(0)
        self.output.truncate()
        self.process = popen_for_life(
            argv,
            self.cwd,
            env,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the driver only
        )

    def _last_line(self) -> str:
        self.output.seek(0)
        lines = [x.strip() for x in self.output.read().decode(errors="replace").splitlines()]
        lines = [x for x in lines if x]
        return lines[-1][:300] if lines else "no output"

    def wait(self, timeout: float) -> str:
        """Wait until the server answers; return its URL.

        Raises:
            ServerStartError: It exited, or did not answer within ``timeout`` seconds
                (the message quotes the last line of its output).
        """
        deadline = time.monotonic() + timeout
        tries = 1
        while time.monotonic() < deadline:
            assert self.process is not None, "wait() before start()"
            if _answers(f"{self.url}/health") is not None:
                return self.url
            code = self.process.poll()
            if code is not None:
                last = self._last_line()
                if "address already in use" in last.lower() and tries < _TRIES:
                    tries += 1
                    self._launch()
                    continue
                self.stop()
                raise ServerStartError(
                    f"the temporary Prefect server exited with code {code} ({last}); run "
                    "`sweepflow up` for a lasting one, or set PREFECT_API_URL"
                )
            time.sleep(0.1)
        last = self._last_line()
        self.stop()
        raise ServerStartError(
            f"the temporary Prefect server did not answer within {timeout:g} s ({last}); "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run `sweepflow up`"
        )

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server: SIGTERM, SIGKILL after ``grace`` seconds. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.output.close()
