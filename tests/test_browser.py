"""Self-test of the headless-Chromium helper against a local page rendered by JavaScript."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser import Browser, BrowserError, screenshot_dir

pytestmark = pytest.mark.browser

# The heading and the run list appear only after a delay, and the heading's words are
# joined in JavaScript, so the served HTML never contains the text the tests wait for.
PAGE = b"""<!doctype html>
<html><head><title>sweepflow browser self-test</title></head>
<body><p id="status">loading</p>
<script>
setTimeout(() => {
  const h1 = document.createElement("h1");
  h1.textContent = ["Rendered", "by", "script"].join(" ");
  const list = document.createElement("ul");
  for (const name of ["trial-0", "trial-1", "trial-2"]) {
    const item = document.createElement("li");
    item.className = "run";
    item.textContent = name;
    list.append(item);
  }
  document.body.append(h1, list);
  document.getElementById("status").textContent = "ready";
}, 700);
</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The self-test page's URL, served from a thread on a free local port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser, site: str) -> Browser:
    """The browser, freshly on the self-test page (before its script has rendered)."""
    browser.open(site)
    return browser


def test_wait_for_text_sees_javascript_rendered_text(page: Browser) -> None:
    text = page.wait_for_text("Rendered by script", "trial-2", timeout=30)
    assert "ready" in text
    assert page.text() == text


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("'sweep' + 'flow'", "sweepflow"),
        ("({name: 'x', values: [1, 2.5, null]})", {"name": "x", "values": [1, 2.5, None]}),
        ("undefined", None),
        ("Promise.resolve(42)", 42),
        ("document.title", "sweepflow browser self-test"),
    ],
    ids=["number", "string", "object", "undefined", "promise", "dom"],
)
def test_evaluate_returns_json_values(page: Browser, expression: str, expected: object) -> None:
    assert page.evaluate(expression) == expected


def test_evaluate_counts_rendered_elements(page: Browser) -> None:
    page.wait_for_text("trial-2", timeout=30)
    assert page.evaluate("document.querySelectorAll('li.run').length") == 3


def test_evaluate_reports_a_javascript_exception(page: Browser) -> None:
    with pytest.raises(BrowserError, match="threw: Error: broken on purpose"):
        page.evaluate("(() => { throw new Error('broken on purpose') })()")


def test_screenshot_writes_a_png(page: Browser) -> None:
    page.wait_for_text("Rendered by script", timeout=30)
    path = page.screenshot(screenshot_dir() / "browser-self-test.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 1000
    assert not path.with_name(path.name + ".partial").exists()


def test_wait_for_text_times_out_with_the_page_text(page: Browser, site: str) -> None:
    with pytest.raises(AssertionError) as caught:
        page.wait_for_text("trial-0", "no such text", timeout=2)
    message = str(caught.value)
    assert "['no such text']" in message  # only what is missing
    assert site in message
    assert "sweepflow browser self-test" in message
    assert "Rendered by script" in message  # the page text, to see what did render


def test_open_reports_a_refused_connection(browser: Browser) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(BrowserError, match="ERR_CONNECTION_REFUSED"):
            browser.open(f"http://127.0.0.1:{port}/")
