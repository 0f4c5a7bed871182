"""A search whose study already holds its ``n_trials``: what ``sweepflow run`` prints
instead of starting a flow (the count, the best trial, where the study lives).

Read from the study's file (a journal or a SQLite database) with Optuna alone, before
Prefect or MLflow is imported: a finished search answers in well under a second. A
database server is not reached here (the flow reports on it properly).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from sweepflow.search.locations import shown, storage_file

__all__ = ["CompleteStudy", "best_line", "complete_study"]


class CompleteStudy(BaseModel):
    """A study that holds at least the trials asked of it.

    Attributes:
        job: The job's key (``sweepflow study <job>`` shows the study).
        study: The study's name.
        storage: Where it lives, as messages show it (a password masked).
        finished: Its trials that count towards ``n_trials`` (finished, or failed on
            their own).
        total: The trials asked of it (``--n-trials``, else the job's ``n_trials``).
        best: The best trial as the search flow reports it (number, values, params;
            see :func:`sweepflow.search.report.best_summary`), None if none completed.
    """

    model_config = ConfigDict(frozen=True)

    job: str
    study: str
    storage: str
    finished: int
    total: int
    best: dict[str, Any] | None

    def message(self) -> str:
        """The lines to print: the count, the best trial, where the study lives and how
        to extend it.

        >>> CompleteStudy(job="tune", study="tune", storage="/s/tune.journal", finished=3,
        ...     total=3, best={"number": 1, "values": {"loss": 0.5}, "params": {"x": 2.5}}
        ... ).message().splitlines()[:2]  # doctest: +NORMALIZE_WHITESPACE
        ['study complete: 3 trials (use --n-trials to extend)',
         'best trial #1: loss = 0.5  (x=2.5)']
        """
        lines = [f"study complete: {self.finished} trials (use --n-trials to extend)"]
        lines.append(
            best_line(self.best) if self.best else "no trial of it completed: all failed or pruned"
        )
        held = f"{self.finished} of {self.total} trials"
        if self.finished > self.total:
            held = f"{self.finished} trials, more than the {self.total} asked"
        lines.append(
            f"study '{self.study}' already holds {held} (in {self.storage}): nothing to run; "
            f"see `sweepflow study {self.job}`, or extend it with --n-trials "
            f"{max(self.total, self.finished) + 10}"
        )
        return "\n".join(lines)


def best_line(best: dict[str, Any]) -> str:
    """The best trial in one line, as the end of a search prints it.

    >>> best_line({"number": 4, "values": {"loss": 0.1234567},
    ...            "params": {"lr": 0.01, "act": "relu"}})
    'best trial #4: loss = 0.123457  (lr=0.01 act=relu)'
    """
    from sweepflow.plan.space import format_value

    values = ", ".join(f"{k} = {v:.6g}" for k, v in best["values"].items())
    params = " ".join(f"{k}={format_value(v)}" for k, v in best["params"].items())
    return f"best trial #{best['number']}: {values}  ({params})"


def complete_study(
    job: str, location: str, name: str, total: int, metrics: tuple[str, ...]
) -> CompleteStudy | None:
    """Study ``name`` in the placed storage ``location``, if it is a file that exists
    and the study in it holds at least ``total`` counted trials; else None (nothing is
    created: a missing file or study, or a database server, is the flow's to open).

    Args:
        job: The job's key.
        location: The placed storage (see :func:`sweepflow.search.study.study_location`).
        name: The study's name.
        total: The trials asked of it.
        metrics: The job's metric names, in order (the best trial's values are named
            after them).
    """
    path = storage_file(location)
    if path is None or not path.is_file():
        return None
    import optuna

    from sweepflow.search.report import best_summary
    from sweepflow.search.study import counted, open_storage

    try:
        study = optuna.load_study(study_name=name, storage=open_storage(location))
    except Exception:  # no such study, or one the flow reports on properly: start it
        return None
    finished = sum(map(counted, study.get_trials(deepcopy=False)))
    if finished < total:
        return None
    best = best_summary(study, metrics)
    return CompleteStudy(
        job=job, study=name, storage=shown(location), finished=finished, total=total, best=best
    )
