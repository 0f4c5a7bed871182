"""Whether the Prefect API a command will talk to answers: a stale ``PREFECT_API_URL``
fails in one line that names the URL and the fix, before anything starts."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from sweepflow.errors import SweepflowError

__all__ = ["PrefectApiDown", "check_api"]


class PrefectApiDown(SweepflowError, ConnectionError):
    """The Prefect API that a command is configured to use does not answer."""


def check_api(url: str | None = None, timeout: float = 3.0) -> None:
    """Raise :class:`PrefectApiDown` unless something answers at ``<url>/health``.

    Args:
        url: The API URL to check (default: ``$PREFECT_API_URL``; nothing to check when
            that is unset, since the command then picks or starts a server itself).
        timeout: Seconds to wait for an answer.

    Any HTTP answer counts, an error status included: something listens there, and
    Prefect's own error says more than this check could. Proxies from the environment
    are honoured, as Prefect's client honours them.
    """
    from_env = url is None or url == os.environ.get("PREFECT_API_URL")
    url = os.environ.get("PREFECT_API_URL") if url is None else url
    if not url:
        return
    reason = _unanswered(url.rstrip("/") + "/health", timeout)
    if reason is None:
        return
    fix = "start it (sweepflow up)" + (" or unset PREFECT_API_URL" if from_env else "")
    raise PrefectApiDown(f"nothing answers at {url} ({reason}): {fix}")


def _unanswered(url: str, timeout: float) -> str | None:
    """Why nothing answers at ``url`` (a short reason), or None when something does."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # an answer, if not a happy one
    except urllib.error.URLError as exc:
        return str(getattr(exc.reason, "strerror", None) or exc.reason).lower()
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
