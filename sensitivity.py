"""Layer sensitivity analysis: ``python sensitivity.py model=efficientnet_b2 checkpoint=path/to/last.ckpt``."""

import hydra
from omegaconf import DictConfig

from sparsebench.sensitivity import sensitivity


@hydra.main(version_base="1.3", config_path="conf", config_name="sensitivity")
def main(cfg: DictConfig) -> None:
    sensitivity(cfg)


if __name__ == "__main__":
    main()
