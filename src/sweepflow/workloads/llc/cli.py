"""``sweepflow llc estimate TARGET.yaml SAMPLER.yaml [--out DIR]``: one LLC estimate.

Importing this module loads typer only; JAX and the rest load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from .results import LLCResult

__all__ = ["llc_app"]

llc_app = typer.Typer(
    help="Local learning coefficient (LLC) estimation with JAX (SGLD, HMC, NUTS, MCLMC).",
    no_args_is_help=True,
)


@llc_app.command("estimate")
def estimate(
    target: Annotated[Path, typer.Argument(help="Target YAML: model, data, training, seed.")],
    sampler: Annotated[
        Path, typer.Argument(help="Sampler YAML: kind (sgld, hmc, nuts, mclmc) and settings.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for llc.json and the plots (default: llc-<id>-<kind>)."
        ),
    ] = None,
) -> int:
    """Estimate the LLC of TARGET with SAMPLER; print it, write llc.json and PNG plots."""
    from ._errors import LLCError
    from ._files import load_sampler_config, load_target_config

    target_cfg = load_target_config(target)
    sampler_cfg = load_sampler_config(sampler)  # both files checked before any work

    from .estimation import estimate_llc
    from .plots import plot_llc

    result = estimate_llc(target_cfg, sampler_cfg)
    folder = out or Path(f"llc-{result.target_id[:12]}-{sampler_cfg.kind}")
    written = [result.save(folder / "llc.json"), *plot_llc(result, folder)]
    for line in _report(result):
        typer.echo(line)
    for problem in result.diagnostics.divergent_chains:
        typer.echo(f"warning: {problem}; left out of the estimate", err=True)
    typer.echo("wrote " + ", ".join(str(path) for path in written))
    if len(result.diagnostics.divergent_chains) == len(result.chains):
        raise LLCError(
            f"every chain of {sampler} diverged or escaped (see {folder}): "
            "lower step_size, raise gamma, or check the target"
        )
    return 0


def _report(result: LLCResult) -> list[str]:
    sampler, timings, diag = result.sampler, result.timings, result.diagnostics
    lines = [
        f"target {result.target_id[:12]}: {result.target.model.kind}, n={result.n}, "
        f"d={result.num_params}, L0={result.l0:.6g} "
        f"({'float64' if result.x64 else 'float32'}, built in {timings.build_seconds:.1f} s)",
        f"{sampler.kind}: {sampler.chains} chains x {sampler.draws} draws, "
        f"nβ={result.nbeta:.4g}, gamma={result.gamma:g}; {timings.sampling_seconds:.2f} s sampling "
        f"+ {timings.compile_seconds:.1f} s compiling ({timings.draws_per_second:.0f} draws/s)",
        result.summary(),
        "per chain: " + ", ".join(f"{chain.llc:.4g}" for chain in result.chains),
    ]
    health = [
        f"ESS {diag.ess:.0f}" if diag.ess is not None else "ESS n/a",
        f"R-hat {diag.rhat:.3f}" if diag.rhat is not None else "R-hat n/a",
    ]
    rates = [chain.acceptance for chain in result.chains if chain.acceptance is not None]
    if rates:
        health.append("acceptance " + ", ".join(f"{rate:.2f}" for rate in rates))
    lines.append(", ".join(health))
    return lines
