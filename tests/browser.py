"""A small headless-Chromium driver for UI tests, over the Chrome DevTools Protocol.

Only the standard library and ``websockets`` (a Prefect dependency) are used: the browser
is Debian's ``chromium`` (installed by ``.ci/install-chromium``), started without a shell,
and driven through one page target's websocket. Typical use::

    with Browser() as browser:
        browser.open("http://127.0.0.1:4200/runs")
        browser.wait_for_text("my-flow", "Completed")
        browser.screenshot(screenshot_dir() / "runs.png")
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

__all__ = ["Browser", "BrowserError", "find_chromium", "screenshot_dir"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
REPO = Path(__file__).resolve().parent.parent
# Page text shown in a failed wait: enough to see what rendered instead.
_TAIL_CHARS = 2000
# Cap on a full-page screenshot's height, in CSS pixels, so a runaway page stays a sane PNG.
_MAX_SHOT_HEIGHT = 16384


class BrowserError(RuntimeError):
    """Chromium could not be started, or a DevTools call failed."""


def find_chromium() -> str | None:
    """The path of the first of ``chromium``, ``chromium-browser``, ``google-chrome`` on PATH.

    Returns:
        The executable's path, or None when none is installed
        (``.ci/install-chromium`` installs Debian's).
    """
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot_dir() -> Path:
    """The folder for test screenshots, created if missing.

    ``$SWEEPFLOW_SCREENSHOTS`` when set, else ``<repo>/test-artifacts/screenshots``.
    """
    folder = Path(os.environ.get("SWEEPFLOW_SCREENSHOTS") or REPO / "test-artifacts/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Browser:
    """One headless Chromium with one page, driven over the DevTools protocol.

    The browser starts in the constructor and stops in :meth:`close` (or on leaving a
    ``with`` block); its profile lives in a temporary folder removed on close.

    Args:
        binary: Chromium executable; default :func:`find_chromium`.
        width: Viewport width in CSS pixels.
        height: Viewport height in CSS pixels.
        startup_timeout: Seconds to wait for Chromium to open its DevTools port.

    Raises:
        BrowserError: No Chromium was found, or it did not start.
    """

    def __init__(
        self,
        binary: str | None = None,
        *,
        width: int = 1400,
        height: int = 900,
        startup_timeout: float = 30,
    ) -> None:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError(
                f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)}); "
                "install it with .ci/install-chromium"
            )
        self.binary = binary
        self._ids = itertools.count(1)
        self._ws: ClientConnection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._profile = Path(tempfile.mkdtemp(prefix="sweepflow-chromium-"))
        try:
            self._launch(width, height, startup_timeout)
        except BaseException:
            self.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------

    def _launch(self, width: int, height: int, startup_timeout: float) -> None:
        args = [
            self.binary,
            "--headless=new",
            "--disable-gpu",
            # Containers often have a small /dev/shm, which crashes renderers.
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        args.append("about:blank")
        self._log = self._profile / "chromium.log"
        with self._log.open("wb") as log:
            # Own session, so close() can end the renderers and helpers too.
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        port = self._wait_for_port(self._process, startup_timeout)
        self._ws = connect(
            self._page_websocket(port, startup_timeout),
            max_size=None,  # screenshots arrive as one large message
            open_timeout=startup_timeout,
        )
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def _wait_for_port(self, process: subprocess.Popen[bytes], timeout: float) -> int:
        """Chromium writes its port (first line) to DevToolsActivePort once listening."""
        marker = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrowserError(
                    f"{self.binary} exited with code {process.returncode} "
                    f"before opening its DevTools port; its output:\n{self._log_tail()}"
                )
            with contextlib.suppress(FileNotFoundError):
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.05)
        raise BrowserError(
            f"{self.binary} did not write {marker} within {timeout:g} s; "
            f"its output:\n{self._log_tail()}"
        )

    def _page_websocket(self, port: int, timeout: float) -> str:
        """The websocket URL of the page target (about:blank) that Chromium opened."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = json.load(r)
            for target in targets:
                if target.get("type") == "page" and target.get("webSocketDebuggerUrl"):
                    return target["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise BrowserError(f"Chromium on port {port} showed no page target; targets: {targets}")

    def _log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-_TAIL_CHARS:]
        except OSError:
            return "(no output)"

    def close(self) -> None:
        """Stop Chromium and remove its profile folder; safe to call twice."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # The whole session: the browser plus its zygote, renderer and GPU processes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- protocol ----------------------------------------------------------------------

    def _call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float = 60
    ) -> dict[str, Any]:
        """Send one DevTools command; return its ``result``, skipping events meanwhile."""
        if self._ws is None:
            raise BrowserError(f"{method}: the browser is closed")
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"{method}: no answer from Chromium within {timeout:g} s")
            try:
                message = json.loads(self._ws.recv(timeout=remaining))
            except TimeoutError:
                continue  # the deadline check above reports it
            if message.get("id") != call_id:
                continue  # an event (or a late answer to an abandoned call)
            if "error" in message:
                error = message["error"]
                raise BrowserError(
                    f"{method}({json.dumps(params or {})[:200]}) failed: "
                    f"{error.get('message')} (code {error.get('code')})"
                )
            return message.get("result", {})

    # -- page --------------------------------------------------------------------------

    def open(self, url: str, *, timeout: float = 60) -> None:
        """Navigate to ``url`` and wait until its document has loaded.

        Raises:
            BrowserError: The navigation failed (for example, connection refused), or the
                document did not finish loading within ``timeout`` seconds.
        """
        result = self._call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise BrowserError(f"could not open {url}: {result['errorText']}")
        deadline = time.monotonic() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not finish loading within {timeout:g} s")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited).

        Raises:
            BrowserError: The expression threw; the message carries the JS exception.
        """
        result = self._call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expression!r} threw: {thrown}")
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The page's rendered text (``document.body.innerText``)."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *texts: str, timeout: float = 60, interval: float = 0.25) -> str:
        """Poll the rendered text until every one of ``texts`` appears in it.

        Returns:
            The page text that contained them all.

        Raises:
            AssertionError: Some text was still missing after ``timeout`` seconds; the
                message names it, the page's URL and title, and ends with the page text.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [t for t in texts if t not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                break
            time.sleep(interval)
        where = self.evaluate("JSON.stringify([location.href, document.title])")
        url, title = json.loads(where)
        shown = text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]
        raise AssertionError(
            f"after {timeout:g} s the page {url} (title {title!r}) still lacks "
            f"{missing!r}; its text is:\n{shown}"
        )

    def wait_for(self, expression: str, *, timeout: float = 60, interval: float = 0.25) -> Any:
        """Poll a JavaScript expression until its value is truthy; return that value.

        Raises:
            AssertionError: It was still falsy after ``timeout`` seconds; the message
                names the expression and ends with the page text.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                break
            time.sleep(interval)
        text = self.text()
        shown = text if len(text) <= _TAIL_CHARS else "..." + text[-_TAIL_CHARS:]
        raise AssertionError(
            f"after {timeout:g} s {expression!r} is still {value!r} on "
            f"{self.evaluate('location.href')}; the page text is:\n{shown}"
        )

    def resize(self, width: int, height: int) -> tuple[int, int]:
        """Set the viewport to ``width`` x ``height`` CSS pixels (wide tables render
        more columns); return the size it had, to restore it."""
        before = self.evaluate("[window.innerWidth, window.innerHeight]")
        self._call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return int(before[0]), int(before[1])

    def click(self, selector: str, text: str | None = None, *, timeout: float = 60) -> None:
        """Click the first element matching the CSS ``selector`` (and whose trimmed text
        is ``text``, when given), waiting up to ``timeout`` seconds for it to render.

        Raises:
            AssertionError: No such element rendered in time (see :meth:`wait_for`).
        """
        wanted = json.dumps(text)
        find = (
            f"[...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => {wanted} === null || e.textContent.trim() === {wanted})"
        )
        self.wait_for(f"!!{find}", timeout=timeout)
        self.evaluate(f"{find}.click()")

    def screenshot(self, path: Path | str) -> Path:
        """Save a PNG of the whole page (beyond the viewport when the document scrolls).

        Returns:
            ``path``, whose folder is created if missing.
        """
        metrics = self._call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        viewport = metrics.get("cssLayoutViewport") or {}
        width = max(size.get("width", 0), viewport.get("clientWidth", 0), 1)
        height = min(
            max(size.get("height", 0), viewport.get("clientHeight", 0), 1), _MAX_SHOT_HEIGHT
        )
        shot = self._call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
        )
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(base64.b64decode(shot["data"]))
        partial.replace(path)
        return path
