"""Layer sensitivity analysis: ``python sensitivity.py model=efficientnet_b2 checkpoint=path/to/last.ckpt``."""

import sys

import hydra
from omegaconf import DictConfig

from sparsebench.cli import run_task
from sparsebench.config import expand_recipe_files
from sparsebench.sensitivity import sensitivity


@hydra.main(version_base="1.3", config_path="conf", config_name="sensitivity")
def main(cfg: DictConfig) -> None:
    run_task(lambda: sensitivity(cfg))


if __name__ == "__main__":
    sys.argv[1:] = expand_recipe_files(sys.argv[1:])
    main()
