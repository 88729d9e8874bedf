"""Benchmark ONNX models on CPU engines: ``python benchmark.py -m engine=ort,openvino,deepsparse``."""

import hydra
from omegaconf import DictConfig

from sparsebench.bench.runner import benchmark
from sparsebench.cli import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="benchmark")
def main(cfg: DictConfig) -> float | None:
    record = run_task(lambda: benchmark(cfg))
    return record["metrics"]["throughput/items_per_s"] if record["status"] == "ok" else None


if __name__ == "__main__":
    main()
