"""Bad benchmark input: each error names the config key, the value and a fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from omegaconf import DictConfig, open_dict
from onnx import TensorProto, helper

from sparsebench.bench.checks import validate_benchmark
from sparsebench.bench.onnx_file import InvalidOnnxError, inspect_input

BAD_CONFIGS = [
    (["batch_size=0"], ValueError, ["batch_size=0", "from 1 to 1024"]),
    (["batch_size=5000"], ValueError, ["batch_size=5000", "batch_size=1"]),
    (["bench.duration_s=0"], ValueError, ["bench.duration_s=0", "bench=quick"]),
    (["bench.duration_s=99999"], ValueError, ["bench.duration_s=99999", "(0, 3600]"]),
    (["bench.repeats=0"], ValueError, ["bench.repeats=0", "from 1 to 100"]),
    (["bench.warmup_s=-1"], ValueError, ["bench.warmup_s=-1", ">= 0"]),
    (["bench.timeout_s=0"], ValueError, ["bench.timeout_s=0", "null"]),
    (["threads=999"], ValueError, ["threads=999", "threads=null"]),
    (["precision=int8"], ValueError, ["precision='int8'", "fp32"]),
    (["scenario=batch"], ValueError, ["scenario='batch'", "sync"]),
    (["streams=2"], ValueError, ["streams=2", "scenario=async"]),
    (["engine.kind=tensorrt"], ValueError, ["engine.kind='tensorrt'", "deepsparse"]),
    (["image_size=16"], ValueError, ["image_size=16", "image_size=32"]),
    (["onnx=missing/model.onnx"], FileNotFoundError, ["onnx=", "missing/model.onnx", "drop onnx="]),
]


@pytest.mark.parametrize(("overrides", "error_type", "fragments"), BAD_CONFIGS)
def test_bad_config_named(
    bench_config: Callable[..., DictConfig], overrides: list[str], error_type: type, fragments: list[str]
) -> None:
    cfg = bench_config(overrides)
    with pytest.raises(error_type) as raised:
        validate_benchmark(cfg)
    for fragment in fragments:
        assert fragment in str(raised.value)


def test_default_config_valid(bench_config: Callable[..., DictConfig]) -> None:
    validate_benchmark(bench_config())


@pytest.mark.parametrize("engine", ["ort", "openvino", "deepsparse"])
@pytest.mark.parametrize("preset", ["default", "quick"])
def test_engine_and_preset_compose(bench_config: Callable[..., DictConfig], engine: str, preset: str) -> None:
    cfg = bench_config([f"engine={engine}", f"bench={preset}"])
    validate_benchmark(cfg)
    assert cfg.engine.kind == engine
    assert cfg.bench.name == preset


def test_image_size_with_onnx_rejected(bench_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    cfg = bench_config([f"onnx={path}", "image_size=64"])
    with pytest.raises(ValueError, match="drop image_size"):
        validate_benchmark(cfg)


def save_graph(path: Path, inputs: list[onnx.ValueInfoProto]) -> Path:
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    node = helper.make_node("Identity", [inputs[0].name], ["out"])
    graph = helper.make_graph([node], "g", inputs, [output])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_several_inputs_rejected(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 3, 32, 32]) for name in ("a", "b")]
    path = save_graph(tmp_path / "two.onnx", inputs)
    with pytest.raises(InvalidOnnxError, match=r"has 2 inputs \['a', 'b'\]"):
        inspect_input(path, 1)


def test_dynamic_spatial_size_rejected(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])]
    path = save_graph(tmp_path / "dynamic.onnx", inputs)
    with pytest.raises(InvalidOnnxError, match="dynamic channel or spatial size"):
        inspect_input(path, 1)


def test_fixed_batch_mismatch_rejected(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 32, 32])]
    path = save_graph(tmp_path / "fixed.onnx", inputs)
    with pytest.raises(InvalidOnnxError, match="set batch_size=4"):
        inspect_input(path, 1)
    assert inspect_input(path, 4)["shape"] == [4, 3, 32, 32]


def test_corrupt_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07not a protobuf at all\xff\xff")
    with pytest.raises(InvalidOnnxError, match="is not a valid ONNX file"):
        inspect_input(path, 1)


def test_dynamic_batch_made_static(tmp_path: Path) -> None:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])]
    path = save_graph(tmp_path / "ok.onnx", inputs)
    facts = inspect_input(path, 16)
    assert facts == {"name": "x", "shape": [16, 3, 32, 32], "precision": "fp32"}
