"""INT8 post-training quantization: ``python quantize.py onnx=outputs/prune/runs/<run>/pruned.onnx``."""

import hydra
from omegaconf import DictConfig

from sparsebench.cli import run_task
from sparsebench.quantize import quantize


@hydra.main(version_base="1.3", config_path="conf", config_name="quantize")
def main(cfg: DictConfig) -> float:
    return run_task(lambda: quantize(cfg))["int8/val_acc"]


if __name__ == "__main__":
    main()
