"""The optimize flow: a job's Optuna search as mapped, cached Prefect trial tasks."""

from __future__ import annotations

from typing import Any

from flows._runtime import end_with_worker, json_flow
from flows._search import search

__all__ = ["optimize"]


# Trials go to the profile's task runner (see flows._search), not to the flow's.
@json_flow("optimize")
def optimize(
    job: str,
    overrides: list[str] | None = None,
    n_trials: int | None = None,
    job_file: str | None = None,
    profile: str | None = None,
    storage: str | None = None,
    refresh: bool = False,
    extra: list[str] | None = None,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    profile_set: list[str] | None = None,
) -> dict[str, Any]:
    """Run or resume the search of ``job`` (a job with ``optimize:``).

    Asks trials from the job's Optuna study, keeps ``parallel`` (or ``max_parallel``)
    in flight as trial tasks, and tells each result back; stops when the study has
    ``n_trials`` finished trials (default: the job's ``optimize.n_trials``). ``storage``
    overrides the job's study storage (an Optuna URL or a journal file). Returns the
    counts, the best trial and one row per trial run now.
    """
    end_with_worker()
    return search(
        job,
        overrides,
        job_file=job_file,
        profile=profile,
        profile_set=profile_set,
        refresh=refresh,
        extra=extra,
        max_parallel=max_parallel,
        n_trials=n_trials,
        storage=storage,
        fail_fast=fail_fast,
    )
