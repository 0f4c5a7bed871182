"""Benchmark: SGLD draws per second for LLC estimation, sweepflow (JAX) versus devinterp.

Run: ``.venv/bin/python bench/llc.py``. Both samplers start at the same trained ``w*`` of
the same MLP, on the same data, with the same batch size, step size, nβ, localisation and
number of chains, and record one minibatch loss per draw (devinterp's way; sweepflow's
``eval_every: null``). Prints draws per second side by side with their ratio (goal: ≥ 10x
on a CPU), then sweepflow's draws per second at 1, 4 and 16 chains. Compile time is
reported apart from the sampling time.

devinterp needs PyTorch; neither is a dependency of sweepflow. Without them the
comparison is skipped with a message. To run it::

    pip install torch devinterp   # a CPU build of torch is enough
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

from sweepflow.workloads.llc import (
    DataConfig,
    MLPModel,
    SGLDConfig,
    TargetConfig,
    TrainingConfig,
    build_target,
    sample_llc,
)


def make_target(args: argparse.Namespace) -> Any:
    config = TargetConfig(
        model=MLPModel(widths=tuple(args.widths), activation="relu", output_dim=1),
        data=DataConfig(n=args.n, input_dim=args.input_dim, noise=0.1, seed=0),
        training=TrainingConfig(steps=500, batch_size=args.batch_size),
    )
    return build_target(config)


def sgld_config(args: argparse.Namespace, chains: int) -> SGLDConfig:
    return SGLDConfig(
        chains=chains,
        draws=args.draws,
        burn_in=0,
        thin=1,
        step_size=args.step_size,
        batch_size=args.batch_size,
        gamma=args.gamma,
        eval_every=None,
    )


def sweepflow_runner(target: Any, args: argparse.Namespace, chains: int) -> Any:
    """Compile once; return ``run(seed) -> (sampling seconds, λ̂)`` and the compile time."""
    config = sgld_config(args, chains)
    compile_seconds = sample_llc(target, config).timings.compile_seconds

    def run(seed: int) -> tuple[float, float]:
        result = sample_llc(target, config.model_copy(update={"seed": seed}))
        return result.timings.sampling_seconds, result.llc

    return run, compile_seconds


def devinterp_runner(target: Any, args: argparse.Namespace, chains: int) -> Any:
    """devinterp's own chain loop (``sample_single_chain``, as its ``sample`` runs it).

    Returns ``run() -> (seconds, loop seconds, λ̂)``: the loop seconds time first to
    last draw of each chain, without devinterp's per-chain set-up (model copy, data
    loader, garbage collection), for a lower bound of its cost.
    """
    import numpy as np
    import torch
    from devinterp.optim import SGMCMC
    from devinterp.slt.sampler import sample_single_chain

    model = _torch_mlp(target)
    x = torch.from_numpy(np.array(target.x, dtype=np.float32))
    y = torch.from_numpy(np.array(target.y, dtype=np.float32))

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": x[i], "y": y[i]}

    def evaluate(net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[Any, dict]:
        return 0.5 * ((batch["y"] - net(batch["input_ids"])) ** 2).sum(-1), {}

    losses: list[float] = []
    stamps: list[float] = []

    def on_draw(*, loss: Any, **_: Any) -> None:
        losses.append(float(loss.mean()))
        stamps.append(time.perf_counter())

    nbeta = target.n / np.log(target.n)
    kwargs = {"lr": args.step_size, "nbeta": nbeta, "localization": args.gamma}
    params = {name: None for name, _ in model.named_parameters()}

    def chain(draws: int, index: int) -> None:
        sample_single_chain(
            ref_model=model,
            dataset=Rows(),
            evaluate=evaluate,
            param_masks=params,
            num_draws=draws,
            sampling_method=SGMCMC.sgld,
            sampling_method_kwargs=kwargs,
            chain=index,
            seed=index,
            callbacks=[on_draw],
            batch_size=args.batch_size,
        )

    def run() -> tuple[float, float, float]:
        losses.clear()
        loop = 0.0
        start = time.perf_counter()
        for index in range(chains):  # devinterp runs chains one after another
            stamps.clear()
            chain(args.draws, index)
            loop += stamps[-1] - stamps[0]
        seconds = time.perf_counter() - start
        return seconds, loop, float(nbeta * (np.mean(losses) - target.l0))

    chain(50, 0)  # warm-up: first-call costs of torch, not of sampling
    return run


def _torch_mlp(target: Any) -> Any:
    """The target's MLP in torch, at ``w*`` (same weights, same activation)."""
    import numpy as np
    import torch

    layers: list[torch.nn.Module] = []
    for i, layer in enumerate(target.params):
        w = np.asarray(layer["w"], dtype=np.float32)
        linear = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(layer["b"], dtype=np.float32)))
        layers.append(linear)
        if i < len(target.params) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def _devinterp_missing() -> str | None:
    try:
        import devinterp  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed"
    return None


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("jax", "torch", "devinterp"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} -")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples")
    parser.add_argument("--input-dim", type=int, default=10, help="input width")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 64], help="hidden widths")
    parser.add_argument("--batch-size", type=int, default=64, help="SGLD minibatch size")
    parser.add_argument("--draws", type=int, default=1000, help="draws per chain")
    parser.add_argument("--chains", type=int, default=4, help="chains in the comparison")
    parser.add_argument("--step-size", type=float, default=1e-4, help="SGLD step size")
    parser.add_argument("--gamma", type=float, default=100.0, help="localisation")
    parser.add_argument("--repeat", type=int, default=3, help="timing rounds (best of)")
    parser.add_argument("--scaling", type=int, nargs="*", default=[1, 4, 16], help="chains")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # devinterp's progress bars (read on import)

    target = make_target(args)
    print(
        f"MLP {args.input_dim}-{'-'.join(map(str, args.widths))}-1 (d={target.num_params}), "
        f"n={args.n}, batch {args.batch_size}, {args.draws} draws/chain, float32; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {_versions()}"
    )
    draws = args.chains * args.draws
    ours, compile_seconds = sweepflow_runner(target, args, args.chains)
    missing = _devinterp_missing()
    theirs = None if missing else devinterp_runner(target, args, args.chains)
    # Rounds alternate the two, and each keeps its best round, so that a burst of load
    # from another process on this machine does not land on one side only.
    best, best_theirs = (float("inf"), 0.0), (float("inf"), float("inf"), 0.0)
    for round_ in range(args.repeat):
        for seed in range(3):
            best = min(best, ours(round_ * 3 + seed))
        if theirs is not None:
            best_theirs = min(best_theirs, theirs())
    print(f"\nSGLD, {args.chains} chains          draws/s   compile s   λ̂")
    rate = draws / best[0]
    print(f"  sweepflow (JAX)   {rate:>12,.0f}   {compile_seconds:>9.1f}   {best[1]:.3g}")
    if theirs is None:
        print(f"  devinterp         skipped: {missing} (pip install torch devinterp)")
    else:
        seconds, loop, llc = best_theirs
        their_rate, loop_rate = draws / seconds, args.chains * (args.draws - 1) / loop
        print(f"  devinterp (torch) {their_rate:>12,.0f}   {'-':>9}   {llc:.3g}")
        print(f"    its loop alone  {loop_rate:>12,.0f}   (no per-chain set-up)")
        print(
            f"  ratio             {rate / their_rate:>11.1f}x   "
            f"({rate / loop_rate:.1f}x against its loop alone; goal: >= 10x)"
        )
    print("\nsweepflow SGLD, chains in parallel (vmap)")
    print("  chains       draws/s   compile s")
    compiles = {args.chains: compile_seconds}
    for chains in args.scaling:
        run, seconds = sweepflow_runner(target, args, chains)
        compile_seconds = compiles.get(chains, seconds)  # 0.0 when compiled above
        seconds = min(run(seed)[0] for seed in range(3 * args.repeat))
        print(f"  {chains:>6}  {chains * args.draws / seconds:>12,.0f}   {compile_seconds:>9.1f}")


if __name__ == "__main__":
    main()
