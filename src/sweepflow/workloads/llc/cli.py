"""``sweepflow llc``: ``estimate TARGET.yaml SAMPLER.yaml`` (one LLC estimate, here),
``run experiments.yaml`` (every target x sampler pair as a Prefect flow, cached in the
artifact store) and ``tune experiments.yaml --sampler NAME`` (an Optuna search of a
sampler's hyperparameters against a reference).

Importing this module loads typer only; JAX and the rest load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from .results import LLCResult

__all__ = ["launch", "llc_app"]

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


@llc_app.command("run")
def run_experiment(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Experiments file: targets and samplers.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Change the matrix: samplers.draws=200, targets.1.data.n=500 (repeat)."
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", "-p", help="Execution profile: name or path (default: local)."),
    ] = None,
    promote: Annotated[
        Path | None,
        typer.Option("--promote", help="Write the gallery (gallery.md, gallery.html) here."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="Print the matrix and what is cached; run nothing."),
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Run every step again, even when it is stored.")
    ] = False,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", "-j", min=1, help="Pairs in flight at once."),
    ] = None,
) -> int:
    """Run every (target, sampler) pair of FILE as a Prefect flow: targets built once,
    each pair sampled on a worker, estimates, diagnostics, plots and llc_runs.parquet
    made here; every step cached in the artifact store."""
    from sweepflow.spec.jobs import load_jobs

    jobfile = load_jobs(file)
    if len(jobfile.jobs) != 1 or next(iter(jobfile.jobs.values())).kind != "llc":
        from ._errors import LLCError

        raise LLCError(
            f"{file} is not an experiments file (targets: and samplers: at the top level): "
            "see 'sweepflow llc run --help', or run a job file's llc: job with sweepflow run"
        )
    (name,) = jobfile.jobs
    return launch(
        ctx,
        jobfile,
        name,
        list(sets or []),
        profile=profile,
        promote=promote,
        dry_run=dry_run,
        refresh=refresh,
        max_parallel=max_parallel,
    )


def launch(
    ctx: typer.Context,
    jobfile: Any,
    name: str,
    sets: list[str],
    *,
    profile: str | None = None,
    profile_set: list[str] | None = None,
    promote: Path | None = None,
    dry_run: bool = False,
    refresh: bool = False,
    max_parallel: int | None = None,
    fail_fast: bool = False,
    columns: str | None = None,
) -> int:
    """Run the ``llc:`` job ``name`` (``sweepflow llc run``, or ``sweepflow run`` of an
    llc: job): every check before anything starts, then the run-job flow."""
    from sweepflow.cli.summary import view_of
    from sweepflow.settings import state_dir
    from sweepflow.spec.profiles import load_profile

    from .experiment import describe, load_experiment
    from .pairs import check_pairs

    job = jobfile.job(name)
    project = jobfile.path.parent
    matrix = load_experiment(job.llc_path, sets)  # bad input fails here: one line
    check_pairs(matrix)
    if dry_run:
        from .pairs import pair_status

        for line in describe(matrix):
            typer.echo(line)
        cached = pair_status(matrix, project.resolve(), state_dir(project))
        for (target, sampler), hit in zip(matrix.pairs(), cached, strict=True):
            typer.echo(f"  {'cached' if hit else 'to run':7} {target.name} x {sampler.name}")
        typer.echo(f"{sum(cached)} of {len(cached)} pairs cached")
        return 0
    chosen = load_profile(profile or job.profile, list(profile_set or []), project)
    view = view_of(name, job, columns, jobfile.path)
    from sweepflow.cli.api_check import check_api
    from sweepflow.cli.preflight import check_before_run
    from sweepflow.services.warm_server import idle_seconds

    check_api()
    check_before_run(project)
    idle_seconds()
    from sweepflow.cli.console import run_in_terminal
    from sweepflow.plan.expansion import MAX_TRIALS

    return run_in_terminal(
        debug=bool((ctx.obj or {}).get("debug")),
        job=name,
        overrides=sets,
        job_file=str(jobfile.path.resolve()),
        refresh=refresh,
        extra=[],
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        profile=str(profile) if profile else None,
        profile_set=list(profile_set or []),
        needs_server=chosen.type != "local",
        cluster=chosen if chosen.type == "dask-local" else None,
        n_trials=None,
        storage=None,
        max_trials=MAX_TRIALS,
        outputs_check=True,
        view=view,
        promote=str(promote.resolve()) if promote else None,
    )


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
) -> int:
    """Tune SAMPLER's hyperparameters (Optuna TPE) against a long HMC/NUTS reference λ per
    target; the reference and every trial's run are cached in the artifact store."""
    from .tune import run_cli

    return run_cli(
        file, sampler, n_trials, space, reference, reference_draws, per_work, huber, seed,
        typer.echo,
    )
