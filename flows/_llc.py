"""The flow side of ``llc:`` jobs: the matrix as trials, Stage C hooks, the table and
gallery as Prefect artifacts (see :mod:`sweepflow.workloads.llc.pairs`).

The LLC modules (JAX's steps, ArviZ, matplotlib) are imported only when an ``llc:``
job runs: other jobs never pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "llc_all_stored",
    "llc_analyst",
    "llc_matrix",
    "llc_options",
    "llc_specs",
    "llc_workflow",
    "publish_llc",
]


def llc_matrix(job: Any, sets: list[str] | None) -> Any:
    """The job's experiments file with ``sets`` applied, every pair checked."""
    from sweepflow.workloads.llc.experiment import load_experiment
    from sweepflow.workloads.llc.pairs import check_pairs

    matrix = load_experiment(job.llc_path, sets or [])
    check_pairs(matrix)
    return matrix


def llc_all_stored(matrix: Any, project: Path, state: Path, enabled: bool) -> bool:
    """Whether every pair's run is stored (and may be used): then nothing runs."""
    from sweepflow.workloads.llc.pairs import pair_status

    return enabled and all(pair_status(matrix, project, state))


def llc_specs(matrix: Any, job: Any, project: Path) -> list[Any]:
    """One trial per (target, sampler) pair."""
    from sweepflow.workloads.llc.pairs import pair_specs

    return pair_specs(matrix, job, project)


def llc_workflow() -> Any:
    """The pairs' two-step workflow (build the target, sample it)."""
    from sweepflow.workloads.llc.pairs import LLC_WORKFLOW

    return LLC_WORKFLOW


def llc_analyst(matrix: Any, state: Path, tracker: Any) -> Any:
    """Stage C of each pair, its plots logged on the pair's MLflow run."""
    from sweepflow.workloads.llc.pairs import Analyst

    def log_files(run_id: str, paths: list[Path]) -> None:
        for path in paths:
            tracker.client.log_artifact(run_id, str(path), "plots")

    return Analyst(matrix, state, log_files)


def llc_options(
    matrix: Any, analyst: Any, resources: dict[str, float], profile: Any
) -> dict[str, Any]:
    """The workflow runner's options for the pairs: their configs, the sampling step's
    Dask resources, and the analysis.

    A sampling step asks for the job's ``resources``, else for one GPU when the
    profile's workers have GPUs; a target build asks for none. With the profile's
    ``float64: cpu``, a float64 pair's sampling asks for no GPU and runs on the CPU
    (``$SWEEPFLOW_FLOAT64``, set on Dask workers by the profile, here for threads).
    """
    import os

    from sweepflow.workloads.llc.pairs import pair_configs
    from sweepflow.workloads.llc.steps import FLOAT64_ENV, sample_llc_target

    wanted = dict(resources)
    if not wanted and profile.type != "local" and profile.worker_resources().get("gpu"):
        wanted = {"gpu": 1}
    on_cpu = profile.float64 == "cpu"
    if on_cpu and profile.type == "local":
        os.environ[FLOAT64_ENV] = "cpu"
    pairs = matrix.pairs()

    def step_resources(step: Any, spec: Any) -> dict[str, float]:
        if step.name != sample_llc_target.name:
            return {}
        if on_cpu and pairs[spec.index][0].config.x64:
            return {k: v for k, v in wanted.items() if k != "gpu"}
        return dict(wanted)

    return {
        "configs": pair_configs(matrix),
        "step_resources": step_resources,
        "analyse": analyst,
        # gc --keep-last K keeps the newest K pair runs of each experiment, not of all.
        "record_as": f"llc:{matrix.experiment}",
    }


def publish_llc(analyst: Any, promote: Path | None) -> dict[str, Any]:
    """Write the table (and gallery), attach them to the flow run as Prefect artifacts;
    return their paths for the run's summary."""
    from prefect.artifacts import create_markdown_artifact

    written = analyst.finish(promote)
    if not written:
        return {}
    rows = [analyst.rows[i] for i in sorted(analyst.rows)]
    lines = [
        f"# LLC: {analyst.matrix.experiment}",
        "",
        f"Table: `{written['table']}`"
        + (f"; gallery: `{written['gallery']}`" if "gallery" in written else ""),
        "",
        "| target | sampler | λ̂ | sd | true λ | ESS | R-hat | wall s | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [
            row["target"],
            row["sampler"],
            *(_cell(row.get(k)) for k in ("llc", "llc_sd", "llc_true", "ess", "rhat", "wall_s")),
            row["run_id"],
        ]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    key = "llc-" + "".join(c if c.isalnum() else "-" for c in analyst.matrix.experiment.lower())
    create_markdown_artifact("\n".join(lines), key=key[:100], description="LLC runs")
    return {"llc": written}


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
