"""Stage C of the LLC workflow, on the driver: raw traces -> LLCResult, table rows, plots.

Workers write raw traces only (an ``llc-run`` artifact); everything derived from them is
computed here, where ArviZ and matplotlib may be imported: :func:`summarize` turns a run
into the same :class:`LLCResult` that :func:`~sweepflow.workloads.llc.sample_llc`
returns, :func:`run_row` flattens it into one row of ``llc_runs.parquet``
(:func:`write_table`), and :func:`run_plots` draws its pictures.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._config import QuadraticModel, TargetConfig
from ._errors import LLCError
from ._files import validate
from ._sampler_config import HMCConfig, MCLMCConfig, NUTSConfig, SamplerConfig, SGLDConfig
from ._traces import ChainTraces
from .estimator import default_escape
from .results import LLCResult, _atomic_write
from .theory import default_beta, quadratic_llc

__all__ = [
    "CORE_COLUMNS",
    "HYPERPARAMETER_COLUMNS",
    "PLOT_NAMES",
    "run_plots",
    "run_row",
    "summarize",
    "true_llc",
    "write_table",
]

CORE_COLUMNS: tuple[str, ...] = (
    "target",
    "target_id",
    "sampler",
    "sampler_kind",
    "run_id",
    "llc",
    "llc_sd",
    "llc_true",
    "llc_error",
    "ess",
    "rhat",
    "chains_used",
    "divergent_chains",
    "problems",
    "acceptance",
    "wall_s",
    "compile_s",
    "sampling_s",
    "grad_evals",
    "total_draws",
    "draws_per_s",
    "n",
    "num_params",
    "precision",
    "beta",
    "nbeta",
    "gamma",
    "l0",
    "escape",
)
"""The first columns of every row and of ``llc_runs.parquet``, in this order."""

# Estimand settings (beta, gamma, escape) appear once, as the values actually used.
_ESTIMAND = {"kind", "beta", "gamma", "escape"}
HYPERPARAMETER_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        name
        for model in (SGLDConfig, HMCConfig, NUTSConfig, MCLMCConfig)
        for name in model.model_fields
        if name not in _ESTIMAND
    )
)
"""Every sampler's hyperparameters (one column each, empty where a kind has none)."""

PLOT_NAMES: tuple[str, ...] = ("running_llc.png", "loss_trace.png", "llc.png", "chain_llc.png")
"""The files :func:`run_plots` writes into its folder, in this order."""


def summarize(run: Any) -> LLCResult:
    """The estimate of a raw run: the numbers ``sample_llc`` gives for the same traces.

    Both go through :func:`~sweepflow.workloads.llc.estimation.summarize_sample`, so the
    estimate, per-chain values, ESS and R-hat are the same by construction.

    ``run`` is an ``llc-run`` payload (:class:`~sweepflow.workloads.llc.steps.RawRun`
    from ``load_run``) or a mapping with the same keys. The fields read (looked up on
    ``run``, then on ``run.traces`` if it has one; names after ``|`` are aliases):

    - ``target``: the :class:`TargetConfig` (or a mapping of it); ``sampler``: the
      sampler configuration (or a mapping of it);
    - ``n``, ``num_params``, ``l0``; optional ``target_id``, ``x64`` (default: the
      target config's) and ``beta`` (default: the sampler's, else ``1 / log n``);
    - ``loss | losses``: ``L_n`` per draw, shape (chains, draws); ``full_data | full``:
      whether each draw's loss is full-data, shape (draws,); ``steps``;
      ``final_loss | final_losses`` (chains,); ``grad_evals`` (chains,); optional
      ``acceptance`` (chains,) and ``tuning``;
    - optional ``compile_seconds`` and ``sampling_seconds | wall_seconds`` (0 if absent).

    Raises:
        LLCError: If a required field is missing (naming it).
    """
    import numpy as np

    from .estimation import RawSample, summarize_sample

    target: TargetConfig = validate(TargetConfig, _field(run, "target"), "llc-run target")
    sampler: SamplerConfig = validate(SamplerConfig, _field(run, "sampler"), "llc-run sampler")
    acceptance = _field(run, "acceptance", default=None)
    n = int(_field(run, "n"))
    beta = float(_field(run, "beta", default=None) or sampler.beta or default_beta(n))
    traces = ChainTraces(
        losses=np.asarray(_field(run, "loss", "losses"), dtype=np.float64),
        full=np.asarray(_field(run, "full_data", "full"), dtype=bool),
        steps=np.asarray(_field(run, "steps"), dtype=np.int64),
        final_losses=np.asarray(_field(run, "final_loss", "final_losses"), dtype=np.float64),
        acceptance=None if acceptance is None else [float(a) for a in acceptance],
        grad_evals=[int(g) for g in _field(run, "grad_evals")],
        compile_seconds=float(_field(run, "compile_seconds", default=0.0)),
        wall_seconds=float(_field(run, "sampling_seconds", "wall_seconds", default=0.0)),
        tuning=dict(_field(run, "tuning", default=None) or {}),
    )
    x64 = _field(run, "x64", default=None)
    return summarize_sample(
        RawSample(sampler=sampler, beta=beta, nbeta=n * beta, traces=traces),
        target=target,
        target_id=str(_field(run, "target_id", default=None) or target.target_id),
        n=n,
        num_params=int(_field(run, "num_params")),
        l0=float(_field(run, "l0")),
        x64=target.x64 if x64 is None else bool(x64),
    )


def true_llc(result: LLCResult) -> float | None:
    """The exact estimand where it is known (quadratic targets), else None.

    For ``L = L0 + ½ (w - w*)ᵀ H (w - w*)`` it is ``½ Σ nβ h / (nβ h + gamma)``.
    """
    model = result.target.model
    if isinstance(model, QuadraticModel):
        return quadratic_llc(model.eigenvalues, result.nbeta, result.gamma)
    return None


def run_row(
    target: str, target_id: str, sampler: str, result: LLCResult, run_id: str, wall_s: float
) -> dict[str, Any]:
    """One row of ``llc_runs.parquet``: names, estimate, diagnostics, work, hyperparameters.

    Keys: :data:`CORE_COLUMNS`, then :data:`HYPERPARAMETER_COLUMNS` (None where the
    sampler kind has no such setting). ``llc_true`` and ``llc_error`` (``llc -
    llc_true``) are None unless the target's exact value is known.

    Args:
        target: The target's name in the experiment; ``target_id`` its id.
        sampler: The sampler's name in the experiment (``sgld[step_size=1e-05]``).
        result: The run's estimate (:func:`summarize`).
        run_id: The record this row comes from (the ``llc-run`` artifact or step run).
        wall_s: Wall time of the run as the workflow measured it.
    """
    config = result.sampler
    exact = true_llc(result)
    acceptance = [c.acceptance for c in result.chains if c.acceptance is not None]
    row: dict[str, Any] = {
        "target": target,
        "target_id": target_id,
        "sampler": sampler,
        "sampler_kind": config.kind,
        "run_id": run_id,
        "llc": result.llc,
        "llc_sd": result.llc_sd,
        "llc_true": exact,
        "llc_error": None if exact is None else result.llc - exact,
        "ess": result.diagnostics.ess,
        "rhat": result.diagnostics.rhat,
        "chains_used": len(result.chains) - len(result.diagnostics.divergent_chains),
        "divergent_chains": len(result.diagnostics.divergent_chains),
        "problems": "; ".join(result.diagnostics.divergent_chains),
        "acceptance": sum(acceptance) / len(acceptance) if acceptance else None,
        "wall_s": float(wall_s),
        "compile_s": result.timings.compile_seconds,
        "sampling_s": result.timings.sampling_seconds,
        "grad_evals": sum(c.grad_evals for c in result.chains),
        "total_draws": len(result.traces.loss) * len(result.traces.steps),
        "draws_per_s": result.timings.draws_per_second,
        "n": result.n,
        "num_params": result.num_params,
        "precision": "float64" if result.x64 else "float32",
        "beta": result.beta,
        "nbeta": result.nbeta,
        "gamma": result.gamma,
        "l0": result.l0,
        "escape": config.escape or default_escape(result.num_params),
    }
    settings = config.model_dump()
    row.update({name: settings.get(name) for name in HYPERPARAMETER_COLUMNS})
    return row


def write_table(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write ``rows`` as a parquet file (temporary name, then renamed); return its path.

    Columns: :data:`CORE_COLUMNS`, :data:`HYPERPARAMETER_COLUMNS`, then any other keys in
    the order they first appear, so the same rows always give the same table.

    Args:
        rows: Rows from :func:`run_row` (extra keys are kept).
        path: The file (conventionally ``<state>/llc_runs.parquet``); an existing
            folder means ``llc_runs.parquet`` inside it.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "llc_runs.parquet"
    columns = list(dict.fromkeys([*CORE_COLUMNS, *HYPERPARAMETER_COLUMNS, *_keys(rows)]))
    frame = pd.DataFrame([dict(row) for row in rows], columns=columns)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    _atomic_write(path, buffer.getvalue())
    return path


def run_plots(result: LLCResult, folder: Path, reference: float | None = None) -> list[Path]:
    """Write the run's pictures into ``folder`` (one folder per run); return their paths.

    The files are :data:`PLOT_NAMES`: the running λ̂ of each chain, the loss traces,
    both side by side, and λ̂ per chain with the mean ± sd. ``reference`` (default: the
    exact value where :func:`true_llc` knows it) is drawn as a dotted red line.
    """
    from .plots import plot_llc

    folder = Path(folder)
    reference = reference if reference is not None else true_llc(result)
    written = {path.name: path for path in plot_llc(result, folder, reference)}
    written["chain_llc.png"] = _plot_chains(result, folder / "chain_llc.png", reference)
    return [written[name] for name in PLOT_NAMES]


def _plot_chains(result: LLCResult, path: Path, reference: float | None) -> Path:
    import math

    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = figure.subplots()
    for index, chain in enumerate(result.chains):
        value = chain.llc if math.isfinite(chain.llc) else float("nan")
        color, marker = ("0.5", "x") if chain.divergent else (f"C{index % 10}", "o")
        axes.scatter([index], [value], s=40, zorder=3, color=color, marker=marker)
    if math.isfinite(result.llc):
        axes.axhline(result.llc, color="black", linewidth=1.2, label=f"mean {result.llc:.3g}")
        if math.isfinite(result.llc_sd):
            axes.axhspan(
                result.llc - result.llc_sd,
                result.llc + result.llc_sd,
                color="0.6",
                alpha=0.3,
                label=f"± sd {result.llc_sd:.2g}",
            )
    if reference is not None:
        axes.axhline(reference, color="red", linestyle=":", label=f"true {reference:.3g}")
    axes.set_xticks(range(len(result.chains)), [str(i) for i in range(len(result.chains))])
    axes.set(xlabel="chain (x: left out)", ylabel="λ̂ of the chain")
    axes.set_title(
        f"{result.sampler.kind.upper()} λ̂ per chain, target {result.target_id[:12]}",
        fontsize="medium",
    )
    axes.legend(fontsize="x-small", loc="best")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _atomic_write(path, buffer.getvalue())
    return path


_MISSING = object()


def _field(run: Any, *names: str, default: Any = _MISSING) -> Any:
    """The first of ``names`` found on ``run`` (attribute or key), then on ``run.traces``."""
    for holder in (run, _part(run, "traces")):
        if holder is None:
            continue
        for name in names:
            value = _part(holder, name)
            if value is not None:
                return value
    if default is _MISSING:
        raise LLCError(
            f"llc-run has no field {' or '.join(repr(n) for n in names)}: it was written by "
            "another sweepflow version; delete the run from the store (or re-run) to rebuild it"
        )
    return default


def _part(holder: Any, name: str) -> Any:
    if isinstance(holder, Mapping):
        return holder.get(name)
    return getattr(holder, name, None)


def _keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))
