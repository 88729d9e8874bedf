"""Dense training: ``python train.py model=efficientnet_b0 [data=imagenet data.root=...]``."""

import hydra
from omegaconf import DictConfig

from sparsebench.cli import run_task
from sparsebench.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    return run_task(lambda: train(cfg))["val/acc"]


if __name__ == "__main__":
    main()
