"""The analysis API: the trial runs of a job, read back from MLflow, for notebooks::

    best = sweepflow.runs("train").filter(model="cnn").best("val_loss")
    frame = sweepflow.runs("train").to_frame()

A trial run is an MLflow run tagged ``sweepflow.role=trial`` (one per trial, written
by the flow), the child of its sweep's parent run (``sweepflow.role=parent``, one per
``sweepflow run``). ``runs(job)`` gives the finished trials of the job's latest sweep;
``all_runs=True`` those of every sweep, ``status=None`` any status; :func:`sweeps`
gives the sweeps themselves. MLflow and pandas are imported only inside the functions
that need them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweepflow.collection import RunCollection, RunLookupError, RunQueryError
from sweepflow.tracking.snapshot import Run, unflatten
from sweepflow.tracking.uri import default_tracking_uri

__all__ = [
    "Run",
    "RunCollection",
    "RunLookupError",
    "RunQueryError",
    "Sweep",
    "runs",
    "sweeps",
    "unflatten",
]

_PAGE = 10_000


def _client(tracking_uri: str | None) -> tuple[Any, str]:
    uri = tracking_uri or default_tracking_uri()
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///").partition("?")[0])
        if not database.is_file():
            raise RunLookupError(
                f"no MLflow store at {database} (nothing has run here yet?); run a job, or "
                "point MLFLOW_TRACKING_URI / SWEEPFLOW_HOME (or tracking_uri=) at the store"
            )
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def _search(client: Any, experiment_ids: list[str], filter_string: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string,
            max_results=_PAGE,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            page_token=token,
        )
        found.extend(page)
        token = page.token
        if not token:
            return found


@dataclass(frozen=True)
class Sweep:
    """One ``sweepflow run`` (or search) of a job: its parent run and its trial runs.

    Attributes:
        parent: The parent run (tag ``sweepflow.role=parent``); its metrics hold the
            trial counts ``trials_done``, ``trials_cached``, ``trials_failed``, ...
            once it has finished.
        runs: Its trial runs, oldest first, any status. A cache hit creates no run: for
            those, the runs that made the results are taken from earlier sweeps of the
            job asked the same way (the same overrides and extra arguments), the newest
            FINISHED run of each trial first, as many as the sweep counted cache hits.
    """

    parent: Run
    runs: RunCollection

    @property
    def id(self) -> str:
        """The parent run's id."""
        return self.parent.id

    @property
    def counts(self) -> dict[str, int]:
        """The trial counts the sweep logged (``done``, ``cached``, ``failed``, ...),
        empty while it runs."""
        return _counts(self.parent)


def _counts(parent: Run) -> dict[str, int]:
    """The ``trials_*`` counts a parent run logged when its sweep ended."""
    return {
        name.removeprefix("trials_"): int(value)
        for name, value in parent.metrics.items()
        if name.startswith("trials_") and not math.isnan(value)
    }


def _experiments(client: Any) -> list[str]:
    found: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        found.extend(experiment.experiment_id for experiment in page)
        token = page.token
        if not token:
            return found


def _of_role(client: Any, experiments: list[str], role: str, job: str | None) -> list[Any]:
    """Runs tagged ``sweepflow.role=<role>`` (of ``job`` unless None), oldest first."""
    where = f"tags.`sweepflow.role` = '{role}'"
    if job is not None and "'" not in job:
        return _search(client, experiments, f"{where} AND tags.`sweepflow.job` = '{job}'")
    found = _search(client, experiments, where)
    return [run for run in found if job is None or run.data.tags.get("sweepflow.job") == job]


def _no_job(client: Any, experiments: list[str], job: str, uri: str, what: str) -> RunLookupError:
    sample = client.search_runs(experiments, "tags.`sweepflow.role` = 'parent'", max_results=1000)
    jobs = sorted({run.data.tags.get("sweepflow.job", "?") for run in sample})
    close = difflib.get_close_matches(job, jobs, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return RunLookupError(
        f"no {what} of job {job!r} in {uri}; {hint}jobs with runs: "
        f"{', '.join(jobs) or '(none)'} (run `sweepflow run {job}` first)"
    )


def _members(parents: list[Run], trials: list[Run]) -> dict[str, list[Run]]:
    """The trial runs of each sweep (parent id to runs, oldest first), cache hits
    resolved to the earlier runs that made them (see :class:`Sweep`)."""
    children: dict[str, list[Run]] = {parent.id: [] for parent in parents}
    for run in trials:
        children.setdefault(run.parent_id or "", []).append(run)
    order = {run.id: position for position, run in enumerate(trials)}
    members: dict[str, list[Run]] = {}
    for index, parent in enumerate(parents):
        own = children[parent.id]
        counts = _counts(parent)
        seen = {run.trial for run in own if run.status == "FINISHED"}
        missing = counts.get("done", 0) + counts.get("cached", 0) - len(seen)
        picked: list[Run] = []
        asked = (parent.params.get("overrides"), parent.params.get("extra"))
        for earlier in reversed(parents[:index]):
            if missing <= 0:
                break
            if (earlier.params.get("overrides"), earlier.params.get("extra")) != asked:
                continue
            for run in reversed(children[earlier.id]):
                if missing > 0 and run.status == "FINISHED" and run.trial not in seen:
                    seen.add(run.trial)
                    picked.append(run)
                    missing -= 1
        members[parent.id] = sorted(own + picked, key=lambda run: order[run.id])
    return members


def sweeps(job: str | None = None, *, tracking_uri: str | None = None) -> list[Sweep]:
    """The sweeps (and searches) of a job, of every job when None; oldest first.

    Args:
        job: The job's name (tag ``sweepflow.job``), or None for all jobs.
        tracking_uri: The MLflow store; default ``$MLFLOW_TRACKING_URI`` or the state
            folder's SQLite database.

    Raises:
        RunLookupError: The store does not exist, or the job has no sweep in it (the
            message lists the jobs that do).
    """
    client, uri = _client(tracking_uri)
    experiments = _experiments(client)
    if not experiments:
        return []
    parents = [Run.from_mlflow(run, uri) for run in _of_role(client, experiments, "parent", job)]
    if job is not None and not parents:
        raise _no_job(client, experiments, job, uri, "sweep")
    trials = [Run.from_mlflow(run, uri) for run in _of_role(client, experiments, "trial", job)]
    return _sweeps(parents, trials)


def _sweeps(parents: list[Run], trials: list[Run]) -> list[Sweep]:
    by_job: dict[str | None, list[Run]] = {}
    for parent in parents:
        by_job.setdefault(parent.job, []).append(parent)
    members: dict[str, list[Run]] = {}
    for job_parents in by_job.values():
        members.update(
            _members(job_parents, [run for run in trials if run.job == job_parents[0].job])
        )
    return [Sweep(parent, RunCollection(members[parent.id])) for parent in parents]


def runs(
    job: str | None = None,
    *,
    all_runs: bool = False,
    sweep: str | None = None,
    status: str | Sequence[str] | None = "FINISHED",
    tracking_uri: str | None = None,
) -> RunCollection:
    """The trial runs of a job's latest sweep (of every job's when None), oldest first.

    The latest sweep is the job's newest parent run (one per ``sweepflow run``); its
    trials include those it served from the cache (see :class:`Sweep`).

    Args:
        job: The job's name (tag ``sweepflow.job``), or None for all jobs.
        all_runs: Every trial run of the job, of every sweep, instead.
        sweep: The id of the parent run whose trials to give, instead of the latest.
        status: Keep runs with this status (or any of these); None keeps every status
            (``FAILED``, ``KILLED``, ``RUNNING``, ...).
        tracking_uri: The MLflow store; default ``$MLFLOW_TRACKING_URI`` or the state
            folder's SQLite database.

    Raises:
        RunLookupError: The store does not exist, the job has no runs in it (the
            message lists the jobs that do), or ``sweep`` is not a sweep of the job.
    """
    client, uri = _client(tracking_uri)
    experiments = _experiments(client)
    if not experiments:
        return RunCollection()
    found = [Run.from_mlflow(run, uri) for run in _of_role(client, experiments, "trial", job)]
    parents: list[Run] = []
    if not all_runs:
        parents = [
            Run.from_mlflow(run, uri) for run in _of_role(client, experiments, "parent", job)
        ]
    if job is not None and not found and not parents:
        raise _no_job(client, experiments, job, uri, "trial runs")
    if not all_runs:
        every = _sweeps(parents, found)
        if sweep is not None:
            chosen = [one for one in every if one.id == sweep]
            if not chosen:
                ids = ", ".join(one.id for one in every[-5:]) or "(none)"
                raise RunLookupError(
                    f"no sweep {sweep!r} of job {job!r} in {uri}; latest sweeps: {ids}"
                    " (see `sweepflow ls`)"
                )
        else:
            latest: dict[str | None, Sweep] = {}
            for one in every:
                latest[one.parent.job] = one
            chosen = list(latest.values())
        picked = {run.id for one in chosen for run in one.runs}
        found = [run for run in found if run.id in picked]
    collection = RunCollection(found)
    return collection if status is None else collection.filter(status=status)
