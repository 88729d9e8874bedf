"""Every study network exports and runs on every engine (slow: 4.7 minutes on 2 cores)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from bench_helpers import FAST_BENCH
from sparsebench.bench.runner import benchmark

# The smallest input each network takes, which keeps export and compile short.
STUDY_MODELS = {
    "efficientnet_b0": 64,
    "efficientnet_b2": 64,
    "mobilevit_xs": 64,
    "resnet50": 64,
    "mobilenet_v1": 64,
    "vgg19": 224,
    "inception_v3": 75,
}


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(STUDY_MODELS))
def test_model_runs_on_every_engine(bench_config: Callable[..., DictConfig], model: str) -> None:
    size = STUDY_MODELS[model]
    exported = benchmark(bench_config([*FAST_BENCH, f"model={model}", f"image_size={size}", "num_classes=10",
                                       "engine=ort", "bench.repeats=1"]))
    assert exported["status"] == "ok", exported["error"]
    onnx_path = Path(exported["output_dir"]) / "model.onnx"
    for engine in ("openvino", "deepsparse"):
        record = benchmark(bench_config([*FAST_BENCH, f"model={model}", f"onnx={onnx_path}", f"engine={engine}",
                                         "bench.repeats=1"]))
        assert record["status"] == "ok", f"{model} on {engine}: {record['error']}"
        assert record["engine_settings"]["precision"] == "fp32"
