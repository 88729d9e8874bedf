"""Inspect an ONNX file for benchmarking: its one image input, and its size and sparsity facts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx
from omegaconf import OmegaConf
from onnx import TensorProto

from sparsebench.export import file_facts, onnx_sparsity, onnx_weight_types

log = logging.getLogger(__name__)

PRECISION_OF_TYPE = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}
# Stored weight data types (lower-case TensorProto names) by the precision names of results.
PRECISION_OF_WEIGHT_TYPE = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8", "uint8": "int8"}


class InvalidOnnxError(ValueError):
    """The ONNX file cannot be benchmarked as given; the message gives the reason and the fix."""


def inspect_input(path: Path, batch_size: int) -> dict[str, Any]:
    """Return the name, static shape at ``batch_size`` and data type of the file's one image input.

    Raises InvalidOnnxError for a file that does not parse, has several inputs, or whose
    input is not NCHW with a fixed channel count and spatial size.
    """
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf raises DecodeError and others for a corrupt file
        raise InvalidOnnxError(
            f"onnx={str(path)!r} is not a valid ONNX file ({type(error).__name__}: {error}); export it again."
        ) from error
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise InvalidOnnxError(
            f"onnx={str(path)!r} has {len(inputs)} inputs {[value.name for value in inputs]}; the benchmark "
            "feeds one image tensor, so export a model with exactly one input."
        )
    value = inputs[0]
    tensor_type = value.type.tensor_type
    dims = [dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or "?") for dim in tensor_type.shape.dim]
    if len(dims) != 4:
        raise InvalidOnnxError(
            f"onnx={str(path)!r}: input {value.name!r} has shape {dims}; an image classifier takes "
            "(batch, channels, height, width)."
        )
    if not all(isinstance(dim, int) and dim > 0 for dim in dims[1:]):
        raise InvalidOnnxError(
            f"onnx={str(path)!r}: input {value.name!r} has shape {dims} with a dynamic channel or spatial size; "
            "export it with a fixed image size (only the batch axis may be dynamic)."
        )
    if isinstance(dims[0], int) and dims[0] > 0 and dims[0] != batch_size:
        raise InvalidOnnxError(
            f"onnx={str(path)!r} fixes the batch size to {dims[0]}, but batch_size={batch_size}; set "
            f"batch_size={dims[0]} or export with a dynamic batch axis."
        )
    return {
        "name": value.name,
        "shape": [batch_size, *dims[1:]],
        "precision": PRECISION_OF_TYPE.get(tensor_type.elem_type, TensorProto.DataType.Name(tensor_type.elem_type)),
    }


def model_facts(path: Path) -> dict[str, Any]:
    """Measure parameters, sparsity and file size of an ONNX file.

    ``sparsity/overall`` covers every Conv, Gemm and MatMul weight. When a prune run's
    ``sparsity.json`` sits next to the file, ``sparsity/prunable`` covers only the layers that
    its recipe pruned, which is the figure the recipe targets. ``weights/precision`` is the
    stored type of those weights: ``fp32``, ``int8`` for a quantized file, or ``mixed``.
    """
    model = onnx.load(str(path))
    parameters = sum(_numel(init.dims) for init in model.graph.initializer)
    sparsity = onnx_sparsity(path)
    facts: dict[str, Any] = {
        "parameters": parameters,
        "sparsity/overall": sparsity["overall"],
        "sparsity/prunable": None,
        "sparsity/layers": {name: layer["sparsity"] for name, layer in sparsity["layers"].items()},
        "weights/precision": weights_precision(path),
        **{f"file/{key}": value for key, value in file_facts(path).items()},
    }
    recipe_layers = prune_run_layers(path)
    if recipe_layers:
        facts["sparsity/prunable"] = onnx_sparsity(path, recipe_layers)["overall"]
    return facts


def weights_precision(path: Path) -> str:
    """Name the stored precision of the file's Conv, Gemm and MatMul weights, or ``mixed``."""
    precisions = {PRECISION_OF_WEIGHT_TYPE.get(kind, kind) for kind in onnx_weight_types(path).values()}
    if len(precisions) == 1:
        return precisions.pop()
    return "mixed" if precisions else "none"


def file_accuracy(path: Path) -> dict[str, Any] | None:
    """Return the top-1 that the run next to ``path`` measured for this file, if it did.

    Prune runs with ``quantize=int8`` and quantize runs measure top-1 of their float and INT8
    files through ONNX Runtime on the validation split and list it in ``summary.json``.
    """
    summary = run_summary(path) or {}
    for entry in (summary.get("onnx") or {}).values():
        if Path(entry.get("path", "")).name == path.name and entry.get("val_acc") is not None:
            return {
                "val/acc": entry["val_acc"],
                "measured_by": "top-1 through ONNX Runtime on the validation split",
                "summary": str(path.parent / "summary.json"),
            }
    return None


def prune_run_layers(path: Path) -> list[str] | None:
    """Return the pruned layer names from ``sparsity.json`` next to ``path``, if there is one.

    A prune run's report lists them under ``checkpoint``, and a quantize run's under ``layers``.
    There null means that the source file had no recipe, so every layer is counted.
    """
    report = path.parent / "sparsity.json"
    if not report.is_file():
        return None
    try:
        content = json.loads(report.read_text())
        if "layers" in content:
            return content["layers"]
        return list(content["checkpoint"]["layers"])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        log.warning("%s has no readable layer list (%s); sparsity/prunable is not measured", report, error)
        return None


def run_summary(path: Path) -> dict[str, Any] | None:
    """Return the train or prune run's ``summary.json`` next to ``path``, if there is one."""
    summary = path.parent / "summary.json"
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text())
    except json.JSONDecodeError as error:
        log.warning("%s is not valid JSON (%s); the model name comes from model= alone", summary, error)
        return None


def source_model_name(onnx: str | None, model_name: str) -> str:
    """Return the model named in the ``summary.json`` next to ``onnx``, else ``model_name``.

    ``conf/benchmark.yaml`` names run folders with it, as the ``source_model`` resolver, so that
    a measured file's folder carries the model it was exported from.
    """
    if not onnx:
        return model_name
    summary = run_summary(Path(onnx).expanduser()) or {}
    return summary.get("model") or model_name


OmegaConf.register_new_resolver("source_model", source_model_name, replace=True)


def _numel(dims: Any) -> int:
    count = 1
    for dim in dims:
        count *= dim
    return count
