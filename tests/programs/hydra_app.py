"""A tiny unchanged Hydra app with a structured config (for ``per: batch`` jobs)."""

from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

import sweepflow


@dataclass
class AreaConfig:
    width: int = 1
    height: int = 1


ConfigStore.instance().store(name="area_config", node=AreaConfig)


@hydra.main(version_base=None, config_name="area_config")
def app(cfg: AreaConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "result.txt").write_text(f"{cfg.width}x{cfg.height}")
    sweepflow.log_metrics({f"area_{cfg.width}x{cfg.height}": float(cfg.width * cfg.height)})


if __name__ == "__main__":
    app()
