"""Diagnostic plots of an LLC estimate (matplotlib, PNG, no pyplot global state).

``loss_trace.png``: ``L_n - L0`` of each chain against the sampler step.
``running_llc.png``: the running λ̂ of each chain, with the final mean ± sd band.
``llc.png``: both side by side. Divergent chains are drawn dashed and named.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import LLCResult, _atomic_write

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_llc"]


def plot_llc(result: LLCResult, folder: str | Path, reference: float | None = None) -> list[Path]:
    """Write the three PNGs into ``folder``; return their paths.

    Args:
        result: The estimate to plot.
        folder: Where to write (created if missing).
        reference: A known true value to draw as a dotted line, if any.
    """
    folder = Path(folder)
    written = []
    for name, panels in (
        ("loss_trace.png", (_draw_loss,)),
        ("running_llc.png", (_draw_running,)),
        ("llc.png", (_draw_loss, _draw_running)),
    ):
        written.append(_save(folder / name, result, panels, reference))
    return written


def _save(path: Path, result: LLCResult, panels: tuple, reference: float | None) -> Path:
    import io

    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4 * len(panels), 4.2), layout="constrained")
    for axes, draw in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        draw(axes, result, reference)
    figure.suptitle(_title(result), fontsize="medium")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _atomic_write(path, buffer.getvalue())
    return path


def _title(result: LLCResult) -> str:
    model = result.target.model
    return (
        f"{result.sampler.kind.upper()} on {model.kind} target {result.target_id[:12]} "
        f"(n={result.n}, d={result.num_params}, nβ={result.nbeta:.4g}, gamma={result.gamma:g})"
    )


def _chains(result: LLCResult) -> list[tuple[int, str, dict[str, Any]]]:
    styles = []
    for index, chain in enumerate(result.chains):
        if chain.divergent:
            style = {"linestyle": "--", "color": "0.5", "linewidth": 1.0}
            label = f"{chain.name} (left out: {(chain.problem or '').split(':')[0]})"
        else:
            style = {"color": f"C{index % 10}", "linewidth": 0.9}
            label = f"{chain.name}: λ̂ = {chain.llc:.3g}"
        styles.append((index, label, style))
    return styles


def _draw_loss(axes: Axes, result: LLCResult, reference: float | None) -> None:
    import numpy as np

    steps = np.asarray(result.traces.steps)
    full = np.asarray(result.traces.full_data, bool)
    keep = full if full.any() else np.ones_like(full)
    for index, label, style in _chains(result):
        excess = np.asarray(result.traces.loss[index], dtype=float) - result.l0
        axes.plot(steps[keep], excess[keep], label=label, alpha=0.85, **style)
    axes.axhline(0.0, color="black", linewidth=0.6)
    what = "full-data" if full.any() else "minibatch"
    axes.set(xlabel="sampler step (burn-in included)", ylabel=f"L_n(w) - L0 ({what})")
    axes.set_title("Loss above L0 per chain", fontsize="medium")
    axes.legend(fontsize="x-small", loc="upper right")


def _draw_running(axes: Axes, result: LLCResult, reference: float | None) -> None:
    import numpy as np

    steps = np.asarray(result.traces.steps)
    for index, label, style in _chains(result):
        axes.plot(steps, result.traces.running_llc[index], label=label, **style)
    mean, sd = result.llc, result.llc_sd
    if np.isfinite(mean):
        axes.axhline(mean, color="black", linewidth=1.2, label=f"mean {mean:.3g}")
        if np.isfinite(sd):
            axes.axhspan(mean - sd, mean + sd, color="0.6", alpha=0.3, label=f"± sd {sd:.2g}")
    if reference is not None:
        axes.axhline(reference, color="red", linestyle=":", label=f"true {reference:.3g}")
    axes.set(xlabel="sampler step (burn-in included)", ylabel="running λ̂ = nβ (mean L_n - L0)")
    axes.set_title(result.summary(), fontsize="medium")
    axes.legend(fontsize="x-small", loc="best")
