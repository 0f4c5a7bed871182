"""The tutorial's program: a small numpy workload configured by ``width`` and ``height``.

Run by sweepflow (``sweepflow run job_sequential``) or by hand
(``python example.py width=300 height=200``); either way its config and metrics land in
MLflow, through sweepflow's light reporting channel when launched by sweepflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

import sweepflow


class Config(BaseModel):
    """What the program is swept over."""

    width: int = 100
    height: int = 100
    seed: int = 0


@sweepflow.main(Config)
def app(cfg: Config, out: Path) -> None:
    """Fill a width x height grid with noise, smooth it, and report statistics."""
    rng = np.random.default_rng(cfg.seed)
    grid = rng.standard_normal((cfg.height, cfg.width))
    for step in range(5):
        grid = 0.25 * (np.roll(grid, 1, 0) + np.roll(grid, -1, 0) + np.roll(grid, 1, 1) + grid)
        sweepflow.log_metrics({"std": float(grid.std())}, step=step)
    np.save(out / "grid.npy", grid)
    sweepflow.log_metrics({"area": cfg.width * cfg.height, "mean": float(grid.mean())})


if __name__ == "__main__":
    app()
