"""``sweepflow run`` in a terminal: the run-job flow with a live bar and a summary table."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
)

from sweepflow.cli.summary import (
    Elapsed,
    Remaining,
    Tally,
    TrialLines,
    View,
    counts_line,
    duration,
    print_summary,
)
from sweepflow.engine.progress import TrialOutcome, sink

if TYPE_CHECKING:
    from sweepflow.services.temporary import TemporaryAPI
    from sweepflow.services.warm_server import WarmLease
    from sweepflow.spec.profiles import Profile

__all__ = ["prefect_defaults", "run_in_terminal"]

# Defaults for a local run; an explicit environment variable always wins.
_PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # Trial output and failures go to files, the Prefect API and the summary table;
    # the terminal shows the bar, not log records or tracebacks (--debug shows them).
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_FLOW_RUNS_LEVEL": "CRITICAL",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_TASK_RUNS_LEVEL": "CRITICAL",
    # MLflow logs a store error with its traceback (a full disk, a locked database)
    # before raising it; sweepflow reports it in one line.
    "MLFLOW_LOGGING_LEVEL": "CRITICAL",
}


def prefect_defaults(*, quiet: bool = True) -> None:
    """Set sweepflow's Prefect defaults for this process (before Prefect is imported).

    Args:
        quiet: Keep Prefect's and MLflow's log records off the terminal.
    """
    for key, value in _PREFECT_DEFAULTS.items():
        if quiet or "LOGGING" not in key:
            os.environ.setdefault(key, value)


class _Bar(Tally):
    """A rich progress sink: done / cached / failed / running, elapsed and remaining."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            Elapsed(),
            Remaining(),
            console=console,
            transient=False,
        )
        self.task: Any = None

    def _fields(self) -> str:
        c = self.counts
        text = f"done {c['done']}  cached {c['cached']}  failed {c['failed']}"
        if c["pruned"]:
            text += f"  pruned {c['pruned']}"
        return text + f"  running {c['running']}"

    def start(self, job: str, total: int, cached: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task(job, total=total, counts=self._fields())

    def running(self, count: int) -> None:
        self.counts["running"] = count
        self.progress.update(self.task, counts=self._fields())

    def finished(self, outcome: TrialOutcome) -> None:
        self.count(outcome)
        self.progress.update(self.task, advance=1, counts=self._fields())

    def note(self, text: str) -> None:
        self.progress.console.print(text, style="yellow", markup=False, soft_wrap=True)

    def stop(self) -> None:
        self.progress.stop()


def _summary(console: Console, outcomes: list[TrialOutcome], view: View) -> None:
    """The summary table (see :mod:`sweepflow.cli.summary`), why each failed trial
    failed, and the notes."""
    outcomes = sorted(outcomes, key=lambda o: o.index)
    print_summary(console, outcomes, view)
    for o in outcomes:
        if o.status == "failed":
            console.print(
                f"trial {o.index} ({o.label}) failed: {o.error.strip()}",
                style="red",
                markup=False,
                soft_wrap=True,
            )
            console.print(f"  logs: {Path(o.workdir) / 'stderr.log'}", markup=False, soft_wrap=True)

    _notes(console, [o for o in outcomes if o.error and o.status != "failed"])


def _notes(console: Console, outcomes: list[TrialOutcome]) -> None:
    """Why trials re-ran, who else ran them, why they did not run: one line per reason
    (the trials it applies to listed), not one per trial."""
    groups: dict[tuple[str, str], list[TrialOutcome]] = {}
    for o in outcomes:
        groups.setdefault((o.status, o.error.strip()), []).append(o)
    for (status, reason), group in groups.items():
        if len(group) == 1:
            who = f"trial {group[0].index} ({group[0].label})"
        else:
            numbers = ", ".join(str(o.index) for o in group[:8])
            who = f"{len(group)} trials ({numbers}{', ...' if len(group) > 8 else ''})"
        console.print(f"{who} {status}: {reason}", style="yellow", markup=False, soft_wrap=True)


def _best(console: Console, result: dict[str, Any]) -> None:
    """The search's outcome: the best trial, and where the study lives."""
    from sweepflow.plan.space import format_value

    best = result["best"]
    values = ", ".join(f"{k} = {v:.6g}" for k, v in best["values"].items())
    params = " ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
    before = result.get("finished_before") or 0
    resumed = f" (resumed: {before} finished before)" if before else ""
    console.print(
        f"best trial #{best['number']}: {values}  ({params}){resumed}",
        style="bold",
        markup=False,
        soft_wrap=True,
    )
    console.print(
        f"study '{result['study']}' in {result['storage']}: see `sweepflow study {result['job']}`",
        markup=False,
        soft_wrap=True,
    )


def print_cached(
    plan: Any,
    extra: list[str],
    project: Path,
    outputs_check: bool = True,
    view: View | None = None,
    workflow: tuple[Any, list[Any]] | None = None,
) -> bool:
    """If every trial of the sweep ``plan`` is cached, print its summary (as ``view``
    says) and return True (no flow run, no MLflow: nothing to do); else return False.
    A ``workflow:`` job's trials are cached when all their steps are stored: give
    ``workflow``, its workflow and its trials' configs (``check_job``)."""
    from flows._members import trial_rows
    from sweepflow.cache.results import all_cached
    from sweepflow.engine.progress import outcome_of
    from sweepflow.plan.specs import build_specs
    from sweepflow.settings import state_dir

    started = time.perf_counter()
    specs = build_specs(plan, project, extra)
    if workflow is not None:  # its steps are stored, not its trials
        results = _stored_workflow(plan.job, *workflow, specs, project)
    elif plan.job.kind == "workflow":
        return False
    else:
        results = all_cached(specs, state_dir(project), plan.job.key, outputs_check)
    if results is None:
        return False
    console = Console(stderr=True)
    outcomes = [outcome_of(s, "cached", r) for s, r in zip(specs, results, strict=True)]
    outcomes = trial_rows(plan.job, specs, outcomes)  # a batch's trials, one row each
    _summary(console, outcomes, view or View())
    console.print(
        f"0 done, {len(outcomes)} cached, 0 failed in {duration(time.perf_counter() - started)}: "
        "every trial is cached, nothing to run (--refresh runs them again)",
        style="bold green",
    )
    if specs:
        folder = Path(specs[0].workdir).parent
        console.print(f"trial folders (logs, outputs): {folder}", markup=False, soft_wrap=True)
    return True


def _stored_workflow(
    job: Any, workflow: Any, configs: list[Any], specs: list[Any], project: Path
) -> list[Any] | None:
    """Each trial of a ``workflow:`` job as the store holds it (every step stored),
    with the metrics its steps reported; None as soon as one step must run."""
    from sweepflow.execution.trial import TrialResult
    from sweepflow.settings import state_dir
    from sweepflow.workflow.run import stored_result, trial_metrics

    state = state_dir(project)
    memo: dict[Path, Any] = {}  # code fingerprints, shared by the trials
    results = []
    for spec, config in zip(specs, configs, strict=True):
        found = stored_result(workflow, config, project, state, job.watch, memo)
        if found is None:
            return None
        results.append(
            TrialResult(
                digest=spec.digest,
                cache_key=spec.cache_key,
                index=spec.index,
                params=spec.params,
                metrics=trial_metrics(found.steps),
                started=0.0,
                ended=0.0,
                workdir=spec.workdir,
            )
        )
    return results


def start_run(
    debug: bool, project: Path | None, chosen: Profile, *, workers: bool = True, **parameters: Any
) -> int:
    """Make the checks every run makes before anything starts (a stale
    ``$PREFECT_API_URL``, the state folder and MLflow store, ``$SWEEPFLOW_SERVER_IDLE``),
    then run the run-job flow (:func:`run_in_terminal`) on the ``chosen`` profile;
    ``workers``: False when no task will run on its workers (no server or cluster is
    started for them)."""
    from sweepflow.cli.api_check import check_api
    from sweepflow.cli.preflight import check_before_run
    from sweepflow.services.warm_server import idle_seconds

    check_api()  # a stale $PREFECT_API_URL: one line naming it, before anything starts
    check_before_run(project)  # a read-only state folder, a bad store: one line, now
    idle_seconds()  # a bad $SWEEPFLOW_SERVER_IDLE: one line, before anything starts
    remote = workers and chosen.type != "local"
    return run_in_terminal(
        debug=debug,
        needs_server=remote,
        cluster=chosen if remote and chosen.type == "dask-local" else None,
        **parameters,
    )


def run_in_terminal(
    *,
    debug: bool = False,
    needs_server: bool = False,
    cluster: Profile | None = None,
    **parameters: Any,
) -> int:
    """Run the run-job flow with a live bar; print the summary; return the exit code.

    ``needs_server``: tasks run in other processes (Dask workers), which must all report
    to one Prefect server: without a configured one, this project's is started (or
    reused) with ``sweepflow up``'s machinery, without worker or MLflow UI.
    ``cluster``: a ``dask-local`` profile whose cluster starts now, while Prefect is
    imported and the flow run created (see ``sweepflow.services.cluster``).

    The Prefect API is chosen before the flow, for the whole process (:func:`_prefect_api`);
    without one configured, the run uses the project's warm server (started in the
    background on first use), or with ``SWEEPFLOW_SERVER_IDLE=0`` starts a temporary
    server of its own that dies with it, stopped once Prefect has sent the run's last
    logs and events.
    """
    prefect_defaults(quiet=not debug)
    project = Path(parameters["job_file"]).parent if parameters.get("job_file") else None
    if cluster is not None and project is not None:
        _prestart(cluster, project)
    try:
        with _prefect_api(project, needs_server) as (api, temporary):
            return _run_flow(debug=debug, api=api, temporary=temporary, **parameters)
    finally:
        from sweepflow.services.cluster import close

        close()


@contextlib.contextmanager
def _prefect_api(
    project: Path | None, needs_server: bool
) -> Iterator[tuple[str | None, TemporaryAPI | WarmLease | None]]:
    """The Prefect API of the run: ``$PREFECT_API_URL``, else Prefect's profile, else the
    project's running ``sweepflow up`` server (started if ``needs_server``), else the
    project's warm server (or a temporary one of this run's own). Yields ``(url, own
    server)``: the URL is None for an own server, which must still be waited for
    (``wait``): it starts meanwhile.

    The URL goes into ``os.environ`` and Prefect's global settings, not a context
    variable: threads that do not inherit the caller's context (a trial's output pump
    logs through the task run's logger) and Prefect's exit handlers must all see it, or
    each starts an ephemeral server of Prefect's own (which outlived the run, holding
    the terminal's pipe). On the way out, Prefect's queued events and logs are sent,
    then the temporary server is stopped and the environment restored.
    """
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        from prefect.settings import PREFECT_API_URL

        api = PREFECT_API_URL.value()  # a Prefect profile may name a server
    chosen = None
    server = None
    if not api and project is not None:  # report to this project's `sweepflow up`
        from sweepflow.services.servers import configured_api_url

        api = chosen = configured_api_url(project)
        if not api and needs_server:
            from sweepflow.services.servers import up

            Console(stderr=True).print(
                "starting this project's Prefect server for the Dask workers"
            )
            api = chosen = up(project, worker=False, mlflow=False)["prefect"]["api_url"]
    before = os.environ.get("PREFECT_API_URL")
    with contextlib.ExitStack() as stack:
        if not api:
            server = stack.enter_context(_own_api(project))
        try:
            if chosen:
                _report_to(chosen)
            yield api, server
        finally:
            _leave_api(server, chosen, before)


@contextlib.contextmanager
def _own_api(project: Path | None) -> Iterator[TemporaryAPI | WarmLease]:
    """The run's own Prefect API: the project's warm server (started in the background
    if none runs; see :mod:`sweepflow.services.warm_server`), or with
    ``SWEEPFLOW_SERVER_IDLE=0`` (or no project) a temporary server that dies with it."""
    from sweepflow.services.warm_server import idle_seconds, use

    if project is not None and idle_seconds() > 0:
        with use(project) as lease:
            yield lease
        return
    from sweepflow.services.temporary import TemporaryAPI

    yield TemporaryAPI.start()  # in the working directory, as Prefect would


def _leave_api(
    server: TemporaryAPI | WarmLease | None, chosen: str | None, before: str | None
) -> None:
    """Send Prefect's queued reports, stop a temporary server, restore the environment."""
    try:
        if server is None or getattr(server, "process", True) is not None:  # it started
            send_reports()  # while the API still answers
    finally:
        if server is not None:
            server.stop()
        if chosen or server is not None:
            _report_to(before)


def _report_to(api: str | None) -> None:
    """Make ``api`` the Prefect API of every thread of this process (None: unset it)."""
    if api is None:
        os.environ.pop("PREFECT_API_URL", None)
    else:
        os.environ["PREFECT_API_URL"] = api
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def send_reports() -> None:
    """Send the events and log records Prefect still queues (up to 5 s each).

    Prefect's workers send them in batches every few seconds from a background thread,
    and drain at interpreter exit only; sweepflow's quick exit (``entry``) skips that,
    and a temporary server is stopped before. Without this a run's last logs (often all
    of a short run's) were lost, with "--- Error logging to API ---".
    """
    if "prefect.events.worker" in sys.modules:
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=5)
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


def _prestart(profile: Profile, project: Path) -> None:
    """Start the run's ``dask-local`` cluster if the Prefect API its workers report to
    is known without Prefect (``$PREFECT_API_URL`` or the project's running server)."""
    from sweepflow.services.servers import configured_api_url

    api = os.environ.get("PREFECT_API_URL") or configured_api_url(project)
    if not api:
        return
    from sweepflow.services.cluster import local_cluster_kwargs, start
    from sweepflow.settings import state_dir
    from sweepflow.tracking.writer import default_tracking_uri

    kwargs = local_cluster_kwargs(profile, api, default_tracking_uri(project), state_dir(project))
    start(kwargs, profile.adapt_kwargs())


def _run_flow(
    *,
    debug: bool,
    api: str | None,
    temporary: TemporaryAPI | WarmLease | None,
    **parameters: Any,
) -> int:
    """:func:`run_in_terminal` once the cluster (if any) and the temporary Prefect server
    (if any) are starting."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    if parameters.get("job_file"):  # open MLflow while the flow is imported and started
        from sweepflow.tracking.writer import default_tracking_uri, warm_up

        warm_up(default_tracking_uri(Path(parameters["job_file"]).parent))
    from flows.run_job import run_job

    # A local run needs no server-side crash detection (sweepflow reaps its own stale
    # runs); Prefect's heartbeat thread would add ~1 s to every flow call.
    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if temporary is not None:  # it has started meanwhile
        url = temporary.wait(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        _report_to(url)
        if getattr(temporary, "lasting", False):  # the warm server: its links outlive the run
            api = url
    console = Console(stderr=True)
    view = parameters.pop("view", None) or View()
    bar = _Bar(console) if console.is_terminal else TrialLines(console, view)
    started = time.perf_counter()
    state = None
    interrupted = False
    try:
        with sink(bar), temporary_settings(updates=updates):
            state = run_job(**parameters, return_state=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.stop()
    _summary(console, bar.outcomes, view)
    ok = state is not None and state.is_completed()
    console.print(
        counts_line(bar.counts, time.perf_counter() - started, interrupted),
        style="bold green" if ok else "bold red",
    )
    if interrupted:
        return 130
    if ok and state is not None:
        from sweepflow.cli.links import mlflow_lines

        result = state.result()
        if result.get("best"):
            _best(console, result)
        for name, path in (result.get("llc") or {}).items():  # an llc: job's table, gallery
            if name in ("table", "gallery"):
                console.print(f"{name}: {path}", markup=False, soft_wrap=True)
        where = Path(parameters["job_file"]).parent if parameters.get("job_file") else None
        ids = (result.get("experiment_id"), result.get("parent_run"))
        for line in mlflow_lines(where, result["tracking_uri"], *ids):
            console.print(line, markup=False, soft_wrap=True)
        _where_to_look(console, bar.outcomes, api, state)
        return 0
    if state is not None:
        _why_failed(console, state.result(raise_on_failure=False), bool(bar.outcomes), debug)
        _where_to_look(console, bar.outcomes, api, state)
    return 1


def _where_to_look(
    console: Console, outcomes: list[TrialOutcome], api: str | None, state: Any
) -> None:
    """The trial folders, and the flow run in Prefect's UI while its server lasts (a
    temporary one is gone when the run ends: no link)."""
    if outcomes:
        folder = Path(outcomes[0].workdir).parent
        console.print(f"trial folders (logs, outputs): {folder}", markup=False, soft_wrap=True)
    if api:
        run_url = f"{api.removesuffix('/').removesuffix('/api')}/runs/flow-run/"
        console.print(
            f"Prefect: {run_url}{state.state_details.flow_run_id}", markup=False, soft_wrap=True
        )


def _why_failed(console: Console, raised: Any, summarised: bool, debug: bool) -> None:
    """One line on why the flow failed, unless the summary said it (trials failed)."""
    from sweepflow.errors import IncompleteRun, SweepflowError

    if isinstance(raised, IncompleteRun) and summarised:
        return
    if isinstance(raised, SweepflowError):  # bad input, or a fault that stopped the run
        text = f"error: {raised}"
    else:
        text = f"error: unexpected {type(raised).__name__}: {raised}"
        text += "" if debug else " (rerun with --debug for the traceback)"
    console.print(text, style="red", markup=False, soft_wrap=True)
