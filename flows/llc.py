"""LLC experiments from Python: the same flow ``sweepflow llc run`` runs.

    >>> from flows.llc import run_llc  # doctest: +SKIP
    >>> summary = run_llc("experiments.yaml", promote="gallery")  # doctest: +SKIP
    >>> summary["llc"]["table"]  # doctest: +SKIP
    '/…/.sweepflow/llc/demo/llc_runs.parquet'

An experiments file is also a job file with one ``llc:`` job (named by its
``experiment:``), so a deployment or a schedule of that job runs the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

__all__ = ["run_llc"]


def run_llc(
    file: str | Path,
    *,
    sets: list[str] | None = None,
    profile: str | None = None,
    promote: str | Path | None = None,
    refresh: bool = False,
) -> dict[str, Any]:
    """Run every (target, sampler) pair of ``file`` (``sets``: ``--set`` items) as the
    ``run-job`` flow; return its summary (counts, trials, and ``llc``: the table's and
    gallery's paths)."""
    from flows.run_job import run_job
    from sweepflow.spec.jobs import load_jobs

    path = Path(file).resolve()
    (name,) = load_jobs(path).jobs
    summary = run_job(
        job=name,
        overrides=list(sets or []),
        job_file=str(path),
        profile=profile,
        refresh=refresh,
        promote=str(Path(promote).resolve()) if promote else None,
    )
    return cast("dict[str, Any]", summary)
