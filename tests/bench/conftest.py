"""Fixtures for the benchmark tests: composed configs and small ONNX files with known zeros."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from bench_helpers import IMAGE_SIZE, TinyNet
from sparsebench.export import export_onnx

@pytest.fixture
def bench_config(make_config: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    """Compose ``conf/benchmark.yaml`` (or another task) with every output under this test's tmp folder."""

    def compose_task(overrides: list[str] | None = None, task: str = "benchmark") -> DictConfig:
        return make_config(task, overrides)

    return compose_task


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
