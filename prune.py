"""Gradual magnitude pruning: ``python prune.py model=efficientnet_b2 recipe=gmp_62``."""

import sys

import hydra
from omegaconf import DictConfig

from sparsebench.cli import run_task
from sparsebench.config import expand_recipe_files
from sparsebench.prune import prune


@hydra.main(version_base="1.3", config_path="conf", config_name="prune")
def main(cfg: DictConfig) -> float | None:
    return run_task(lambda: prune(cfg)).get("pruned/val_acc")


if __name__ == "__main__":
    sys.argv[1:] = expand_recipe_files(sys.argv[1:])
    main()
