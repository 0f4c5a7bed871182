"""The LLC matrix as a sweep: one trial per (target, sampler) pair, and its analysis.

Each pair is one run of the two-step workflow :data:`LLC_WORKFLOW` (Stage A
``build_llc_target``, Stage B ``sample_llc_target``) through the engine's workflow
runner, so a target is built once however many samplers use it, each pair waits only
on its own target, and everything already stored is a hit. Stage C runs on the driver
as each pair ends (:class:`Analyst`): the estimate and diagnostics from the raw traces,
the plots (kept beside the ``llc-run`` object, outside its hashed payload), and a row
of the table; :meth:`Analyst.finish` writes ``llc_runs.parquet`` and, with a promote
folder, the gallery (Stage D).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sweepflow.execution.trial import TrialSpec
from sweepflow.hashing import digest
from sweepflow.plan.specs import job_folder
from sweepflow.store import ObjectStore
from sweepflow.store.layout import object_dir
from sweepflow.workflow import Workflow
from sweepflow.workflow.executor import artifact
from sweepflow.workflow.run import WorkflowResult, store_root, stored_result

from ._errors import LLCError
from .estimation import check_sampler_precision
from .experiment import Matrix, SamplerEntry, TargetEntry
from .steps import LLC_RUN, SampleConfig, build_llc_target, load_run, sample_llc_target

__all__ = [
    "LLC_WORKFLOW",
    "TABLE",
    "Analyst",
    "check_pairs",
    "pair_config",
    "pair_configs",
    "pair_specs",
    "pair_status",
    "table_path",
]

#: The two stages of a pair: build (or reuse) the target, then sample it.
LLC_WORKFLOW = Workflow("llc", [build_llc_target, sample_llc_target])
TABLE = "llc_runs.parquet"
_REF = "sweepflow.workloads.llc.pairs:LLC_WORKFLOW"
_ANALYSIS = "analysis"  # the extras folder of an llc-run: its plots and row
#: What a pair's MLflow run and trials-table row show (the table has every column).
_METRICS = (
    "llc", "llc_sd", "llc_true", "ess", "rhat", "wall_s", "compile_s", "sampling_s", "grad_evals",
)  # fmt: skip


def pair_specs(matrix: Matrix, job: Any, project: Path) -> list[TrialSpec]:
    """One trial per pair, named by its target and sampler (the params)."""
    folder = job_folder(project, job.key)
    specs = []
    for index, (target, sampler) in enumerate(matrix.pairs()):
        unit = digest({"llc_pair": [target.id, sampler.id]})
        specs.append(
            TrialSpec(
                job=job.key,
                kind="workflow",
                index=index,
                params={"target": target.name, "sampler": sampler.name},
                function=_REF,
                digest=unit,
                cache_key="",
                workdir=str(folder / unit[:16]),
                project_dir=str(project),
                timeout=job.timeout,
            )
        )
    return specs


def pair_config(target: TargetEntry, sampler: SamplerEntry) -> dict[str, BaseModel]:
    """A pair's step configs: its target's config, its sampler's."""
    return {
        build_llc_target.name: target.config,
        sample_llc_target.name: SampleConfig(sampler=sampler.config),
    }


def pair_configs(matrix: Matrix) -> Callable[[TrialSpec], dict[str, BaseModel]]:
    """A pair trial's step configs (see :func:`pair_config`)."""
    pairs = matrix.pairs()
    return lambda spec: pair_config(*pairs[spec.index])


def check_pairs(matrix: Matrix) -> None:
    """Refuse, before anything runs, a pair whose sampler cannot run on its target.

    Raises:
        LLCError: Naming the pair and the fix.
    """
    for target, sampler in matrix.pairs():
        try:
            check_sampler_precision(target.config, sampler.config)
        except LLCError as exc:
            raise LLCError(
                f"pair ({target.name}, {sampler.name}) in {matrix.path.name}: {exc}"
            ) from None


def pair_status(matrix: Matrix, project: Path, state: Path) -> list[bool]:
    """Whether each pair's run is stored already (what a dry run shows); reads only."""
    return [
        stored_result(LLC_WORKFLOW, pair_config(target, sampler), project, state) is not None
        for target, sampler in matrix.pairs()
    ]


def table_path(state: Path, experiment: str) -> Path:
    """Where an experiment's table is written: ``<state>/llc/<experiment>/llc_runs.parquet``."""
    return state / "llc" / experiment / TABLE


class Analyst:
    """Stage C of each pair, on the driver, as it ends; the table and gallery at the end.

    A run's plots and row are made once and kept beside its ``llc-run`` object
    (``extras/analysis/``, outside the hashed payload), so a re-run recomputes nothing;
    the gallery takes each pair's plots by its run's id, never by file time.
    """

    def __init__(self, matrix: Matrix, state: Path, log_files: Callable[..., None] | None = None):
        """``log_files(run_id, paths)`` records a pair's plots on its MLflow run."""
        self.matrix, self.state, self.log_files = matrix, state, log_files
        self.store = ObjectStore(store_root(state))
        self.pairs = matrix.pairs()
        self.rows: dict[int, dict[str, Any]] = {}
        self.plots: dict[str, list[Path]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, spec: TrialSpec, result: WorkflowResult
    ) -> tuple[dict[str, float], dict[str, str]]:
        """A pair's metrics (λ̂, sd, ESS, R-hat, wall time, work) and tags."""
        target, sampler = self.pairs[spec.index]
        outcome = result.by_step()[sample_llc_target.name]
        run_digest = outcome.outputs["run"]
        run_id = f"{LLC_RUN}:{run_digest[:12]}"
        row, plots = self._analysis(run_digest, target.name, target.id, sampler.name, run_id)
        row = row | {"experiment": self.matrix.experiment, "sampler_id": sampler.id}
        with self._lock:
            self.rows[spec.index] = row
            self.plots[run_id] = plots
        if self.log_files is not None and spec.env.get("MLFLOW_RUN_ID"):
            self.log_files(spec.env["MLFLOW_RUN_ID"], plots)
        metrics = {
            key: float(row[key]) for key in _METRICS if isinstance(row.get(key), (int, float))
        }
        tags = {"sweepflow.llc.run": run_id, "sweepflow.llc.target_id": target.id}
        tags["sweepflow.llc.sampler_id"] = sampler.id
        return metrics, tags

    def _analysis(
        self, run_digest: str, target: str, target_id: str, sampler: str, run_id: str
    ) -> tuple[dict[str, Any], list[Path]]:
        """The row and plots of a run: kept ones, else made now and kept."""
        from .analysis import PLOT_NAMES, run_plots, run_row, summarize

        kept = object_dir(self.store.root, run_digest) / "extras" / _ANALYSIS
        names = {"target": target, "target_id": target_id, "sampler": sampler}
        if (kept / "row.json").is_file():
            row = json.loads((kept / "row.json").read_text()) | names
            return row, [kept / name for name in PLOT_NAMES if (kept / name).is_file()]
        made = artifact(self.store.get(run_digest))
        run = load_run(made.path, metadata=made.meta)
        estimate = summarize(run)
        wall = float(made.meta.get("metrics", {}).get("total_seconds", 0.0))
        row = run_row(target, target_id, sampler, estimate, run_id, wall)
        staging = self.state / "llc" / "tmp" / run_digest[:16]
        run_plots(estimate, staging)
        (staging / "row.json").write_text(json.dumps(row, default=_plain, indent=1))
        self.store.add_extras(run_digest, staging, _ANALYSIS)
        shutil.rmtree(staging, ignore_errors=True)
        return row, [kept / name for name in PLOT_NAMES if (kept / name).is_file()]

    def finish(self, promote: Path | None = None) -> dict[str, str]:
        """Write the table (and the gallery into ``promote``); return their paths."""
        from .analysis import write_table

        rows = [self.rows[i] for i in sorted(self.rows)]
        written: dict[str, str] = {}
        if not rows:
            return written
        table = write_table(rows, table_path(self.state, self.matrix.experiment))
        written["table"] = str(table)
        if promote is not None:
            from .gallery import write_gallery

            title = f"LLC gallery: {self.matrix.experiment}"
            markdown, html = write_gallery(rows, self.plots, promote, title=title)
            written |= {"gallery": str(html), "gallery_markdown": str(markdown)}
        return written


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and paths in a row."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
