"""Tables and figures from stored benchmark results: ``python report.py``."""

import hydra
from omegaconf import DictConfig

from sparsebench.cli import run_task
from sparsebench.report import report


@hydra.main(version_base="1.3", config_path="conf", config_name="report")
def main(cfg: DictConfig) -> None:
    run_task(lambda: report(cfg))


if __name__ == "__main__":
    main()
