"""What a study shows: the best trial, a trials table, exports and plots.

Used by the search flow (Prefect artifacts, MLflow parent run) and by
``sweepflow study``. Tables come from Optuna's ``trials_dataframe`` and plots from its
matplotlib visualisation, so they read like Optuna's own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sweepflow.errors import SweepflowError
from sweepflow.search.locations import file_stem

if TYPE_CHECKING:
    import optuna

__all__ = ["best_summary", "export_trials", "plot_study", "publish_study", "trials_frame"]

PLOTS = ("optimization_history", "param_importances", "slice")


def best_summary(study: optuna.Study, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The best trial (the Pareto front for several metrics), or None if none completed."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    front = study.best_trials if len(names) > 1 else [study.best_trial]

    def view(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        return {
            "number": trial.number,
            "values": dict(zip(names, trial.values, strict=True)),
            "params": dict(trial.params),
            "mlflow_run_id": trial.user_attrs.get("mlflow_run_id", ""),
        }

    best = view(front[0])
    if len(names) > 1:
        best["pareto_front"] = [view(t) for t in front]
    return best


def trials_frame(study: optuna.Study) -> Any:
    """One row per trial: number, state, value(s), params, times (a pandas frame)."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration"))
    return frame.rename(columns=lambda c: c.removeprefix("params_"))


def export_trials(study: optuna.Study, path: Path) -> int:
    """Write the trials to ``.parquet`` or ``.csv``; return the number of rows."""
    frame = trials_frame(study)
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds()
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        raise SweepflowError(
            f"cannot export to '{path}': the file name must end in .parquet or .csv"
        )
    return len(frame)


def _figure(study: optuna.Study, kind: str, target: Any = None, name: str = "") -> Any:
    from optuna.visualization import matplotlib as plots

    kwargs = {"target": target, "target_name": name} if target else {}
    with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
        warnings.simplefilter("ignore")
        axes = getattr(plots, f"plot_{kind}")(study, **kwargs)
    first = axes.flat[0] if hasattr(axes, "flat") else axes  # slice: one per parameter
    return first.figure


def plot_study(
    study: optuna.Study, folder: Path, names: tuple[str, ...], kinds: tuple[str, ...] = PLOTS
) -> list[Path]:
    """Optimisation history, parameter importances and slice plots as PNG files.

    A plot that cannot be drawn yet (importances need two completed trials) is skipped.
    With several metrics, each plot is drawn for every metric.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    targets: list[tuple[str, Any]] = [("", None)]
    if len(names) > 1:
        targets = [(n, (lambda t, i=i: t.values[i])) for i, n in enumerate(names)]
    written = []
    for kind in kinds:
        for metric, target in targets:
            try:
                figure = _figure(study, kind, target, metric)
            except (ValueError, RuntimeError):
                continue
            path = folder / f"{kind}{'-' + metric if metric else ''}.png"
            figure.set_size_inches(max(figure.get_size_inches()[0], 8), 5)
            # Another driver of the study may be drawing it too: readers see a whole file.
            partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            figure.savefig(partial, dpi=100, bbox_inches="tight", format="png")
            os.replace(partial, path)
            plt.close(figure)
            written.append(path)
    return written


def publish_study(
    study: optuna.Study,
    tracker: Any,
    parent: str,
    job: str,
    state: Path,
    best: dict[str, Any] | None,
) -> None:
    """Record the outcome: tag the best trial's MLflow run, log the best values and the
    history plot on the study's parent run, and attach both as a Prefect artifact."""
    if best is None:
        return
    from mlflow.exceptions import MlflowException

    client = tracker.client
    for run in client.search_runs(
        [tracker.experiment_id], "tags.`sweepflow.best` = 'true'", max_results=100
    ):
        with contextlib.suppress(MlflowException):  # another driver removed it first
            client.delete_tag(run.info.run_id, "sweepflow.best")
    if best["mlflow_run_id"]:
        client.set_tag(best["mlflow_run_id"], "sweepflow.best", "true")
    client.set_tag(parent, "optuna.best_trial", str(best["number"]))
    for key, value in best["values"].items():
        client.log_metric(parent, f"best_{key}", value)
    client.log_dict(parent, best, "best.json")
    folder = state / "studies" / f"{file_stem(study.study_name)}-plots"  # a name is no path
    image = ""
    names = tuple(best["values"])
    paths = plot_study(study, folder, names, kinds=PLOTS[:1])  # cheap enough for every run
    for path in paths:
        client.log_artifact(parent, str(path), "plots")
        data = base64.b64encode(path.read_bytes()).decode()
        image += f"\n![{path.stem}](data:image/png;base64,{data})\n"
    _artifact(job, best, image)


def _artifact(job: str, best: dict[str, Any], image: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    lines = [f"# Best trial of `{job}`: #{best['number']}", "", "| | value |", "|---|---|"]
    lines += [f"| **{k}** | {v:.6g} |" for k, v in best["values"].items()]
    lines += [f"| {k} | {v} |" for k, v in best["params"].items()]
    key = f"best-{job.lower().replace('_', '-')}"[:64]
    create_markdown_artifact("\n".join(lines) + "\n" + image, key=key, description="best trial")
