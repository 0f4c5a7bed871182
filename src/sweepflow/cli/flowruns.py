"""The project's recent failed or crashed deployment runs, one line each with the cause,
for ``sweepflow status``.

Read from the Prefect server that ``sweepflow up`` started (its REST API through
``urllib``: no Prefect import, so ``status`` stays quick). A FAILED run's state message
is the flow's exception. A CRASHED run's is the worker's generic "Process exited with
status code: 1": the cause is then the last line of the run's own error log (Prefect
logs there why it could not load the flow), and for a flow file that is not there, the
path that was looked for and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweepflow.services.files import _answers
from sweepflow.services.servers import configured_api_url

__all__ = ["RECENT", "failure_lines", "recent_failures"]

RECENT = 5  # runs listed
_TIMEOUT = 5.0  # seconds per request: SQLite under load answers slowly
_EXCEPTION_PREFIX = "Flow run encountered an exception: "
_CHDIR_STEP = "prefect.deployments.steps.set_working_directory"
_REDEPLOY = (
    "redeploy from the repository root with `prefect --no-prompt deploy --all` (its pull "
    "step enters the folder that holds flows/), or use `sweepflow deploy`"
)


def failure_lines(project_dir: str | Path | None = None, limit: int = RECENT) -> list[str]:
    """Lines for the terminal: a heading and one line per recent failed or crashed
    deployment run; none when there are none or the project's server does not answer.

    Args:
        project_dir: Folder of the job file (default: the working directory).
        limit: How many runs, newest first.
    """
    url = configured_api_url(project_dir)
    if url is None:
        return []
    runs = recent_failures(url, limit)
    if not runs:
        return []
    lines = ["Recent failed deployment runs (newest first; details: prefect flow-run logs ID):"]
    for run in runs:
        lines.append(
            f"  {run['state']:<7} {run['deployment']}  {run['name']}  {run['ended']}  "
            f"{run['id']}: {run['cause']}"
        )
    return lines


def recent_failures(api_url: str, limit: int = RECENT) -> list[dict[str, str]]:
    """The last ``limit`` FAILED or CRASHED flow runs of deployments on ``api_url``.

    Returns:
        Newest first, each with ``id``, ``name``, ``state`` (``FAILED``/``CRASHED``),
        ``deployment`` (``flow/deployment``), ``ended`` (UTC, minutes) and ``cause``
        (one line). Empty when the server does not answer.
    """
    body = {
        "flow_runs": {
            "state": {"type": {"any_": ["FAILED", "CRASHED"]}},
            "deployment_id": {"is_null_": False},
        },
        "sort": "END_TIME_DESC",
        "limit": limit,
    }
    runs = _post(f"{api_url}/flow_runs/filter", body) or []
    ids = sorted({r["deployment_id"] for r in runs})
    deployments = {
        d["id"]: d
        for d in _post(f"{api_url}/deployments/filter", {"deployments": {"id": {"any_": ids}}})
        or []
    }
    flow_ids = sorted({r["flow_id"] for r in runs})
    flows = {
        f["id"]: f["name"]
        for f in _post(f"{api_url}/flows/filter", {"flows": {"id": {"any_": flow_ids}}}) or []
    }
    out = []
    for run in runs:
        deployment = deployments.get(run["deployment_id"], {})
        flow = flows.get(run["flow_id"], "?")
        out.append(
            {
                "id": run["id"],
                "name": run["name"],
                "state": run["state_type"],
                "deployment": f"{flow}/{deployment.get('name', '?')}",
                "ended": _minute(run.get("end_time") or run.get("updated") or ""),
                "cause": _cause(api_url, run, deployment),
            }
        )
    return out


def _cause(api_url: str, run: dict[str, Any], deployment: dict[str, Any]) -> str:
    """One line saying why ``run`` failed or crashed."""
    message = ((run.get("state") or {}).get("message") or "").strip()
    if run["state_type"] == "FAILED" and message:
        return _first_line(message.removeprefix(_EXCEPTION_PREFIX))
    logged = _last_error(api_url, run["id"])
    if logged is None:
        return _first_line(message) or "no message; read the worker's log"
    missing = _missing_entrypoint(logged, deployment)
    return f"{logged}; {missing}: {_REDEPLOY}" if missing else logged


def _last_error(api_url: str, flow_run_id: str) -> str | None:
    """The last line of the newest ERROR log of the flow run (its exception), if any."""
    body = {
        "logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": 40}},
        "sort": "TIMESTAMP_DESC",
        "limit": 1,
    }
    logs = _post(f"{api_url}/logs/filter", body) or []
    if not logs:
        return None
    lines = [line.strip() for line in str(logs[0].get("message", "")).splitlines()]
    last = next((line for line in reversed(lines) if line), "")
    # `prefect.exceptions.ScriptError: …` reads as `ScriptError: …`.
    head, sep, rest = last.partition(": ")
    if sep and " " not in head and "." in head:
        last = f"{head.rsplit('.', 1)[1]}: {rest}"
    return last or None


def _missing_entrypoint(logged: str, deployment: dict[str, Any]) -> str | None:
    """``looked for PATH`` when the run crashed because its flow file was not there."""
    entrypoint = str(deployment.get("entrypoint") or "")
    if ":" not in entrypoint or "FileNotFoundError" not in logged:
        return None
    script = entrypoint.rsplit(":", 1)[0]
    folder = ""
    for step in deployment.get("pull_steps") or []:
        if isinstance(step, dict) and _CHDIR_STEP in step:
            folder = str((step[_CHDIR_STEP] or {}).get("directory", ""))
    path = str(Path(folder) / script) if folder else script
    return f"looked for {path}"


def _post(url: str, body: dict[str, Any]) -> Any:
    """The decoded JSON answer of a POST, or None when there is none."""
    raw = _answers(url, data=json.dumps(body).encode(), timeout=_TIMEOUT)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _minute(stamp: str) -> str:
    """An API time stamp (UTC) to the minute.

    >>> _minute("2026-12-06T02:29:08.300648Z")
    '2026-12-06 02:29 UTC'
    """
    return f"{stamp[:10]} {stamp[11:16]} UTC" if len(stamp) >= 16 else stamp
