"""``sweepflow verify [JOB]``: check stored results, trial folders and MLflow records.

Read-only unless ``--repair``. Each finding is one line: what is wrong, where, and the
repair (``--repair`` applies them all):

- a stored result that does not read (truncated, altered): removed, the trial re-runs;
- a cached trial whose folder is gone (``outputs missing``): its result removed, the
  trial re-runs (or keep it with ``sweepflow run --no-outputs-check``);
- a ``pid`` file of a program that is gone: removed;
- a temporary file a killed writer left in the results folder: removed;
- runs left RUNNING by a killed ``sweepflow run``: finished with their cached result,
  or marked KILLED (what the next ``sweepflow run`` of the job does too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

__all__ = ["Finding", "find_problems", "verify"]


@dataclass(frozen=True)
class Finding:
    """One problem: what, where, the repair, and the files the repair removes."""

    what: str
    where: str
    repair: str
    remove: tuple[Path, ...] = ()
    reap: str = ""  # a job whose stale MLflow runs the repair closes


def find_problems(jobfile: Any, names: list[str]) -> list[Finding]:
    """Every problem of the jobs ``names`` of ``jobfile`` (and of the results folder)."""
    from sweepflow.cache.results import result_problem, results_dir
    from sweepflow.execution.claims import Owned
    from sweepflow.plan.expansion import compile_job
    from sweepflow.plan.specs import build_specs
    from sweepflow.settings import state_dir

    project = jobfile.path.parent.resolve()
    state = state_dir(project)
    folder = results_dir(state)
    findings: list[Finding] = []
    checked: set[str] = set()
    for name in names:
        job = jobfile.job(name)
        if job.optimize is not None:
            continue  # a search's trials are not known ahead; the folder scan below holds
        for spec in build_specs(compile_job(job, []), project):
            key, where = spec.cache_key, f"job {job.key}, trial {spec.index} ({spec.label})"
            if not key:
                continue
            checked.add(key)
            problem = result_problem(folder, key)
            if problem == "corrupt":
                findings.append(_corrupt(where, folder / key))
            elif problem == "" and not Path(spec.workdir).is_dir():
                findings.append(
                    Finding(
                        f"outputs missing: trial folder {spec.workdir} is gone",
                        where,
                        "remove its cached result (the trial re-runs); or keep it with "
                        "`sweepflow run --no-outputs-check`",
                        (folder / key,),
                    )
                )
        for pid_file in sorted((state / "runs" / job.key).glob("*/pid")):
            owned = Owned.read(pid_file)
            if owned is None or not owned.alive():
                findings.append(
                    Finding(
                        "pid file of a program that is gone",
                        str(pid_file),
                        "remove it",
                        (pid_file,),
                    )
                )
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                findings.append(
                    Finding(
                        "partial result left by a killed writer", str(path), "remove it", (path,)
                    )
                )
            elif path.name not in checked and result_problem(folder, path.name) == "corrupt":
                findings.append(_corrupt("results folder", path))
    findings += _stale_runs(jobfile, names, project)
    return findings


def _corrupt(where: str, path: Path) -> Finding:
    return Finding(
        f"cached result is corrupt: {path}", where, "remove it (the trial re-runs)", (path,)
    )


def _stale_runs(jobfile: Any, names: list[str], project: Path) -> list[Finding]:
    """Runs left RUNNING by killed drivers, per job (only if the store exists)."""
    from sweepflow.settings import state_dir
    from sweepflow.tracking.uri import default_tracking_uri

    uri = default_tracking_uri(project)
    if uri.startswith("sqlite:///") and not (state_dir(project) / "mlflow.db").exists():
        database = Path(uri.removeprefix("sqlite:///").partition("?")[0])
        if not database.exists():
            return []
    from sweepflow.tracking.stores import open_client
    from sweepflow.tracking.writer import Tracker

    client = open_client(uri)
    findings = []
    for name in names:
        job = jobfile.job(name)
        if client.get_experiment_by_name(job.experiment) is None:
            continue
        tracker = Tracker(uri, job.experiment, job.key)
        for parent in tracker.stale_parents():
            findings.append(
                Finding(
                    "MLflow runs left RUNNING by a killed sweepflow run "
                    f"(pid {parent.tags.get('sweepflow.pid')})",
                    f"job {job.key}, parent run {parent.run_id} at {uri}",
                    "finish its trial runs from the cache, mark the rest KILLED",
                    reap=job.key,
                )
            )
    return findings


def _repair(jobfile: Any, findings: list[Finding]) -> None:
    from sweepflow.cache.results import lookup
    from sweepflow.settings import state_dir
    from sweepflow.tracking.uri import default_tracking_uri
    from sweepflow.tracking.writer import Tracker

    project = jobfile.path.parent.resolve()
    for finding in findings:
        for path in finding.remove:
            path.unlink(missing_ok=True)
    for key in sorted({f.reap for f in findings if f.reap}):
        job = jobfile.job(key)
        tracker = Tracker(default_tracking_uri(project), job.experiment, job.key)
        tracker.reap_stale(lookup(state_dir(project)))


def verify(jobfile: Any, job: str | None, repair: bool) -> int:
    """Print the problems found (and repair them with ``repair``); the exit code: 0 when
    nothing is wrong or everything was repaired, 1 otherwise."""
    names = [jobfile.job(job).key] if job else list(jobfile.jobs)
    findings = find_problems(jobfile, names)
    console = Console()
    scope = f"job {names[0]}" if job else f"{len(names)} jobs"
    if not findings:
        console.print(f"verified {scope}: results, trial folders and MLflow runs are sound")
        return 0
    verb = "repaired" if repair else "would repair (run with --repair)"
    for finding in findings:
        console.print(
            f"{finding.where}: {finding.what}; {verb}: {finding.repair}",
            markup=False,
            soft_wrap=True,
        )
    if repair:
        _repair(jobfile, findings)
        console.print(f"{len(findings)} problems of {scope} repaired", style="bold green")
        return 0
    console.print(f"{len(findings)} problems in {scope}", style="bold red")
    return 1
