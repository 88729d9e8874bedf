"""The one ONNX exporter: write, check, compare with torch, and measure sparsity and size.

Export uses torch's TorchScript exporter (``dynamo=False``) because the dynamo path needs
onnxscript, which the pinned onnx 1.14 cannot take. In eval mode it folds BatchNorm into the
preceding convolution, which scales each output channel and so keeps zeros zero.
"""

from __future__ import annotations

import copy
import gzip
import logging
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from sparsebench.pruning.masks import sparsity_report

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def export_onnx(
    model: nn.Module,
    path: Path,
    image_size: int,
    masks: Mapping[str, torch.Tensor] | None = None,
    opset: int = OPSET,
) -> Path:
    """Export an eval-mode copy of ``model`` with ``masks`` multiplied into its weights.

    The batch axis is dynamic; the spatial size is fixed at ``image_size``. The model that
    was passed in is left untouched. The file is written next to ``path`` and renamed into
    place, so a killed export never leaves a truncated file.
    """
    exported = copy.deepcopy(model).cpu().eval()
    if masks:
        modules = dict(exported.named_modules())
        with torch.no_grad():
            for name, mask in masks.items():
                modules[name].weight.mul_(mask.to(modules[name].weight))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.onnx")
    sample = torch.randn(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated upstream but is the path that works with onnx 1.14.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            exported, (sample,), str(partial), dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(partial))
    partial.replace(path)
    log.info("exported %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


def compare_with_torch(
    model: nn.Module, path: Path, image_size: int, batch_sizes: Iterable[int] = (1, 3),
    rtol: float = 1e-3, atol: float = 1e-4,
) -> dict[int, float]:
    """Run the ONNX file in ONNX Runtime and torch on the same inputs; return max abs error per batch size.

    Raises RuntimeError when an output differs by more than ``atol + rtol * max|torch output|``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference_model = copy.deepcopy(model).cpu().eval()
    errors = {}
    generator = torch.Generator().manual_seed(0)
    for batch_size in batch_sizes:
        images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
        with torch.no_grad():
            expected = reference_model(images).numpy()
        actual = session.run(None, {INPUT_NAME: images.numpy()})[0]
        if actual.shape != expected.shape:
            raise RuntimeError(f"{path}: ONNX Runtime output shape {actual.shape} != torch {expected.shape} at batch {batch_size}")
        error = float(np.max(np.abs(actual - expected)))
        tolerance = atol + rtol * float(np.max(np.abs(expected)))
        if error > tolerance:
            raise RuntimeError(
                f"{path}: ONNX Runtime differs from torch by {error:.3g} at batch size {batch_size} "
                f"(tolerance {tolerance:.3g})"
            )
        errors[batch_size] = error
    return errors


def module_name_from_node(node_name: str) -> str:
    """Turn a TorchScript-exporter node name into the module's dotted name.

    In ``/layer2/layer2.0/downsample/downsample.1/Conv`` each scope is an attribute name,
    except that a container's child repeats its parent's scope (``downsample.1`` is child
    ``1`` of ``downsample``), so the node belongs to module ``layer2.0.downsample.1``.
    """
    parts: list[str] = []
    previous = ""
    for scope in node_name.strip("/").split("/")[:-1]:
        if previous and scope.startswith(previous + "."):
            parts.append(scope[len(previous) + 1 :])
        else:
            parts.append(scope)
        previous = scope
    return ".".join(parts)


def weight_sources(graph: onnx.GraphProto) -> dict[str, tuple[onnx.TensorProto, onnx.NodeProto | None]]:
    """Find the stored weight of every Conv, Gemm and MatMul node, keyed by module name.

    Returns the initializer and, for a quantized (QDQ) file, the DequantizeLinear node that
    reads it. Initializers reached through Identity nodes (the exporter shares equal tensors)
    are followed. Nodes whose name does not map to a module keep their ONNX node name.
    """
    initializers = {init.name: init for init in graph.initializer}
    identity = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "Identity"}
    dequantize = {node.output[0]: node for node in graph.node if node.op_type == "DequantizeLinear"}
    sources: dict[str, tuple[onnx.TensorProto, onnx.NodeProto | None]] = {}
    for node in graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2:
            continue
        source = node.input[1]
        while source in identity:
            source = identity[source]
        dequantize_node = dequantize.get(source)
        if dequantize_node is not None:
            source = dequantize_node.input[0]
        if source not in initializers:
            continue
        name = module_name_from_node(node.name) or node.name
        sources.setdefault(name, (initializers[source], dequantize_node))
    return sources


def integer_weight(stored: np.ndarray, dequantize_node: onnx.NodeProto, initializers: Mapping) -> np.ndarray:
    """Return a quantized weight minus its zero point, as int32.

    DequantizeLinear computes ``(stored - zero_point) * scale``, so an element is zero in the
    result exactly when it is zero in the float weight that the file stands for.
    """
    values = stored.astype(np.int32)
    if len(dequantize_node.input) < 3 or not dequantize_node.input[2]:
        return values
    zero_point = numpy_helper.to_array(initializers[dequantize_node.input[2]]).astype(np.int32)
    if zero_point.ndim == 1 and zero_point.size > 1:
        # A per-channel zero point lies along the node's axis (ONNX's default axis is 1).
        axis = next((attr.i for attr in dequantize_node.attribute if attr.name == "axis"), 1)
        shape = [1] * values.ndim
        shape[axis] = zero_point.size
        zero_point = zero_point.reshape(shape)
    return values - zero_point


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """Return the weight of every Conv, Gemm and MatMul node, keyed by module name.

    A float file gives its float initializers. A quantized (QDQ) file gives the integer
    initializers behind its DequantizeLinear nodes minus their zero points, so zeros are
    counted in the stored INT8 values, not in a float copy.
    """
    graph = onnx.load(str(path)).graph
    initializers = {init.name: init for init in graph.initializer}
    weights: dict[str, np.ndarray] = {}
    for name, (initializer, dequantize_node) in weight_sources(graph).items():
        stored = numpy_helper.to_array(initializer)
        weights[name] = stored if dequantize_node is None else integer_weight(stored, dequantize_node, initializers)
    return weights


def onnx_weight_types(path: Path) -> dict[str, str]:
    """Return the stored data type of each Conv, Gemm and MatMul weight, e.g. ``int8`` or ``float``."""
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        name: onnx.TensorProto.DataType.Name(initializer.data_type).lower()
        for name, (initializer, _) in weight_sources(graph).items()
    }


def onnx_sparsity(path: Path, layer_names: Iterable[str] | None = None) -> dict:
    """Measure the sparsity of an ONNX file's weights, over ``layer_names`` when given.

    Raises ValueError when a named layer has no weight in the file.
    """
    weights = onnx_weights(path)
    if layer_names is None:
        return sparsity_report(weights)
    names = list(layer_names)
    missing = [name for name in names if name not in weights]
    if missing:
        raise ValueError(f"{path}: no Conv/Gemm/MatMul weight found for layers {missing[:5]}")
    return sparsity_report({name: weights[name] for name in names})


def file_facts(path: Path) -> dict[str, float]:
    """Return a file's size and its gzip -9 size in bytes, and the compression ratio."""
    data = path.read_bytes()
    gzip_bytes = len(gzip.compress(data, compresslevel=9))
    return {"bytes": len(data), "gzip_bytes": gzip_bytes, "gzip_ratio": len(data) / gzip_bytes}


def export_and_verify(
    model: nn.Module, path: Path, image_size: int, layer_names: Iterable[str] | None = None
) -> dict:
    """Export, check against ONNX Runtime, and return the file's sparsity and size facts."""
    export_onnx(model, path, image_size)
    errors = compare_with_torch(model, path, image_size)
    sparsity = onnx_sparsity(path, layer_names)
    return {
        "path": str(path),
        "image_size": image_size,
        "max_abs_error_vs_torch": {str(k): v for k, v in errors.items()},
        "sparsity": sparsity,
        **file_facts(path),
    }
