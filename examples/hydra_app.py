"""An unchanged Hydra app: HydraFlow-style ``per: batch`` jobs run it with --multirun.

Each Hydra job reports its result with ``sweepflow.log_metrics`` (a file write; no
MLflow import in the app); sweepflow matches it to its trial by the job's overrides, so
every job gets its own MLflow run and summary row.
"""

from __future__ import annotations

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore

import sweepflow


@dataclass
class Config:
    width: int = 100
    height: int = 100


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base=None, config_name="config")
def app(cfg: Config) -> None:
    sweepflow.log_metrics({"area": float(cfg.width * cfg.height)})


if __name__ == "__main__":
    app()
