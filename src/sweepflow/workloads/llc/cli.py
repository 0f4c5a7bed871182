"""``sweepflow llc``: ``estimate TARGET.yaml SAMPLER.yaml`` (one LLC estimate, here),
``run experiments.yaml`` (every target x sampler pair as a Prefect flow, cached in the
artifact store) and ``tune experiments.yaml --sampler NAME`` (an Optuna search of a
sampler's hyperparameters against a reference).

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


@llc_app.command("tune")
def tune_sampler(
    file: Annotated[Path, typer.Argument(help="Experiments file: targets and samplers.")],
    sampler: Annotated[str, typer.Option("--sampler", help="The file's sampler to tune (name).")],
    n_trials: Annotated[
        int, typer.Option("--n-trials", min=1, help="Continue the study to this many trials.")
    ],
    space: Annotated[
        str | None,
        typer.Option("--space", help='Search space: "step_size=log(1e-6:1e-3) batch_size=32,64".'),
    ] = None,
    reference: Annotated[
        str, typer.Option("--reference", help="Reference sampler: hmc or nuts.")
    ] = "hmc",
    reference_draws: Annotated[
        int, typer.Option("--reference-draws", min=1, help="Draws per reference chain.")
    ] = 2000,
    per_work: Annotated[
        bool, typer.Option("--per-work", help="Score error x log10(gradient evaluations).")
    ] = False,
    huber: Annotated[
        float | None, typer.Option("--huber", help="Huber loss with this delta, not |error|.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the TPE sampler.")] = 0,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (llc-tune-EXPERIMENT-SAMPLER).")
    ] = None,
) -> int:
    """Tune SAMPLER's hyperparameters (Optuna TPE) against a long HMC/NUTS reference λ per
    target; the reference and every trial's run are cached in the artifact store."""
    from .tune import run_cli

    return run_cli(
        file,
        sampler,
        n_trials,
        space,
        reference,
        reference_draws,
        per_work,
        huber,
        seed,
        typer.echo,
        study,
    )
