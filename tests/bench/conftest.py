"""Fixtures for the benchmark tests: composed configs and small ONNX files with known zeros."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from bench_helpers import IMAGE_SIZE, TinyNet
from sparsebench.export import export_onnx

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

@pytest.fixture
def bench_config(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/<task>.yaml`` with overrides, with every output under this test's tmp folder."""

    def compose_task(overrides: list[str] | None = None, task: str = "benchmark") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=task, overrides=overrides or [], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.cwd = str(tmp_path)
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra
        return cfg

    yield compose_task
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def sparse_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """Export TinyNet with known zeros; return the file and each layer's written sparsity.

    conv1 keeps all weights, conv2 has its first 10 of 16 output channels zeroed (62.5%),
    and the classifier has its first 3 of 10 rows zeroed (30%).
    """
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():
        model.conv2.weight[:10] = 0
        model.head.weight[:3] = 0
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny_sparse.onnx", IMAGE_SIZE)
    return path, {"conv1": 0.0, "conv2": 10 / 16, "head": 3 / 10}
