"""What a dry run of an experiments file shows: :func:`describe` and :func:`num_params`."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from sweepflow.spec.source import Source

from ._config import DLNModel, MLPModel, QuadraticModel, TargetConfig, ToyModel

if TYPE_CHECKING:
    from .experiment import Matrix, SamplerEntry

__all__ = ["describe", "num_params"]


def num_params(config: TargetConfig) -> int:
    """The number of parameters ``d`` of a target, from its configuration alone."""
    model = config.model
    if isinstance(model, QuadraticModel):
        return len(model.eigenvalues)
    if isinstance(model, ToyModel):
        return len(model.powers)
    sizes = [config.data.input_dim, *model.widths, model.output_dim]
    bias = isinstance(model, MLPModel) and model.bias
    assert isinstance(model, (MLPModel, DLNModel))
    return sum(a * b + (b if bias else 0) for a, b in itertools.pairwise(sizes))


def describe(matrix: Matrix) -> list[str]:
    """Lines for a dry run: the targets, the samplers with their settings, the pair count."""
    n_t, n_s = len(matrix.targets), len(matrix.samplers)
    lines = [f"experiment {matrix.experiment} ({Source(matrix.path).display})"]
    width = max(
        len(name)
        for name in [*(t.name for t in matrix.targets), *(s.name for s in matrix.samplers)]
    )
    lines.append(f"targets ({n_t}):")
    for t in matrix.targets:
        cfg = t.config
        lines.append(
            f"  {t.name:<{width}}  {t.id[:12]}  {cfg.model.kind}, n={cfg.data.n}, "
            f"d={num_params(cfg)}, {cfg.precision}"
        )
    lines.append(f"samplers ({n_s}):")
    for s in matrix.samplers:
        lines.append(f"  {s.name:<{width}}  {s.id}  {_settings(s)}")
    lines.append(f"pairs: {n_t} targets x {n_s} samplers = {n_t * n_s}")
    return lines


def _settings(entry: SamplerEntry) -> str:
    """``sgld: 4 chains x 1000 draws, step_size=1e-05``: settings swept or off their defaults."""
    config: Any = entry.config
    defaults = type(config)()
    changed = [
        f"{key}={value}"
        for key, value in config.model_dump().items()
        if key not in ("kind", "chains", "draws")
        and (key in entry.sweep or value != getattr(defaults, key))
    ]
    head = f"{config.kind}: {config.chains} chains x {config.draws} draws"
    return ", ".join([head, *changed])
