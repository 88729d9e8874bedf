"""INT8 quantization with ONNX Runtime's static quantizer, and the checks that keep sparsity intact.

Weights are quantized per output channel and symmetrically by default, so a weight of 0.0
becomes the integer 0 with a zero point of 0. Pruned zeros therefore stay exactly zero, and a
sparse engine can skip them in the INT8 file as in the float one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
from omegaconf import DictConfig

from sparsebench.calibration import SPLITS, LoaderCalibrationReader, calibration_loader
from sparsebench.data import ImageDataModule
from sparsebench.export import onnx_sparsity, onnx_weight_types, onnx_weights

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
FORMATS = ("QDQ",)
QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
# Nodes whose presence means the file contains quantized tensors already.
QUANTIZED_OPS = (
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "ConvInteger", "MatMulInteger", "QGemm",
)


def import_ort_quantization() -> ModuleType:
    """Import ``onnxruntime.quantization``, raising ImportError with the fix when it cannot load.

    ONNX Runtime 1.26's quantization tools map ``TensorProto.INT4`` and ``UINT4`` when they
    are imported. Those enum values came with onnx 1.16, while onnx is pinned to 1.14 for
    DeepSparse and SparseML, so they are defined here with their onnx.proto numbers.
    """
    # NOTE: a compatibility shim for onnx<1.16. sparsebench never requests INT4 tensors, so only
    # the two constants are needed. Drop this when the onnx pin moves to 1.16 or later.
    if not hasattr(onnx.TensorProto, "INT4"):
        onnx.TensorProto.INT4 = 22
        onnx.TensorProto.UINT4 = 21
    try:
        import onnxruntime.quantization as ort_quantization
    except ImportError as error:
        raise ImportError(
            f"INT8 quantization needs onnxruntime.quantization, which failed to import ({error}); "
            "install the pinned requirements (`pip install -r requirements.txt`, which adds ml-dtypes)."
        ) from error
    return ort_quantization


def validate_quantization(settings: DictConfig) -> None:
    """Check the ``quantization`` config section, naming the key, the value and the fix."""
    if settings.format not in FORMATS:
        raise ValueError(
            f"quantization.format={settings.format!r} is not supported; use QDQ, the form whose INT8 weights "
            "sparsebench reads back and which OpenVINO and DeepSparse import."
        )
    if settings.calibration_method not in CALIBRATION_METHODS:
        raise ValueError(
            f"quantization.calibration_method={settings.calibration_method!r} is unknown; use one of {CALIBRATION_METHODS}."
        )
    batches = settings.calibration_batches
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 1:
        raise ValueError(f"quantization.calibration_batches={batches!r} must be an integer >= 1, e.g. 8.")
    if settings.calibration_split not in SPLITS:
        raise ValueError(f"quantization.calibration_split={settings.calibration_split!r} is unknown; use one of {SPLITS}.")
    for key in ("weight_type", "activation_type"):
        if settings[key] not in QUANT_TYPES:
            raise ValueError(f"quantization.{key}={settings[key]!r} is unknown; use one of {sorted(QUANT_TYPES)}.")
    for key in ("per_channel", "symmetric_weights", "symmetric_activations", "reduce_range"):
        if not isinstance(settings[key], bool):
            raise TypeError(f"quantization.{key}={settings[key]!r} must be true or false.")
    if not settings.symmetric_weights:
        log.warning(
            "quantization.symmetric_weights=false gives weights nonzero zero points, so pruned weights are "
            "stored as the zero point, not as 0, and sparse engines cannot skip them"
        )


def check_float_file(path: Path) -> None:
    """Raise ValueError when ``path`` already contains quantized nodes or integer weights."""
    model = onnx.load(str(path), load_external_data=False)
    quantized_nodes = sorted({node.op_type for node in model.graph.node if node.op_type in QUANTIZED_OPS})
    integer_weights = sorted(name for name, kind in onnx_weight_types(path).items() if "int" in kind)
    if quantized_nodes or integer_weights:
        found = f"nodes {quantized_nodes}" if quantized_nodes else f"integer weights in {integer_weights[:3]}"
        raise ValueError(
            f"onnx={str(path)!r} is quantized already ({found}); give the float file it came from, "
            "e.g. pruned.onnx rather than pruned.int8.onnx."
        )


def quantize_file(
    float_path: Path, target: Path, datamodule: ImageDataModule, settings: DictConfig, file_input: dict[str, Any],
    layer_names: list[str] | None,
) -> dict[str, Any]:
    """Write the INT8 QDQ copy of ``float_path`` to ``target``; return both files' sparsity reports.

    The file is written next to ``target`` and renamed into place, so a failed calibration
    never leaves a partial file. Raises RuntimeError when a zero weight of the float file is
    not an integer zero in the INT8 file.
    """
    ort_quantization = import_ort_quantization()
    reader = LoaderCalibrationReader(
        calibration_loader(datamodule, settings.calibration_split), file_input["name"],
        settings.calibration_batches, file_input["shape"], float_path,
    )
    partial = target.with_suffix(".partial.onnx")
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "quantizing %s to INT8 (%s, %s calibration on %d batches of %d %s images)", float_path.name,
        settings.format, settings.calibration_method, settings.calibration_batches, datamodule.cfg.batch_size,
        settings.calibration_split,
    )
    ort_quantization.quantize_static(
        str(float_path), str(partial), reader,
        quant_format=getattr(ort_quantization.QuantFormat, settings.format),
        op_types_to_quantize=list(settings.op_types) or None,
        per_channel=settings.per_channel,
        reduce_range=settings.reduce_range,
        activation_type=getattr(ort_quantization.QuantType, QUANT_TYPES[settings.activation_type]),
        weight_type=getattr(ort_quantization.QuantType, QUANT_TYPES[settings.weight_type]),
        calibrate_method=getattr(ort_quantization.CalibrationMethod, settings.calibration_method),
        extra_options={
            "WeightSymmetric": settings.symmetric_weights,
            "ActivationSymmetric": settings.symmetric_activations,
        },
    )
    onnx.checker.check_model(str(partial))
    partial.replace(target)

    check_zeros_kept(float_path, target)
    report = {"float": onnx_sparsity(float_path, layer_names), "int8": onnx_sparsity(target, layer_names)}
    rounded = {
        name: layer["zeros"] - report["float"]["layers"][name]["zeros"]
        for name, layer in report["int8"]["layers"].items()
        if layer["zeros"] != report["float"]["layers"][name]["zeros"]
    }
    report["rounded_to_zero"] = rounded
    if rounded:
        log.warning(
            "INT8 sparsity %.4f%% exceeds the float file's %.4f%%: %d weights below half a quantization step "
            "rounded to zero in %d layers, e.g. %s",
            100 * report["int8"]["overall"], 100 * report["float"]["overall"], sum(rounded.values()),
            len(rounded), list(rounded)[:3],
        )
    log.info("sparsity: float %.2f%%, INT8 %.2f%% (read from the INT8 initializers)",
             100 * report["float"]["overall"], 100 * report["int8"]["overall"])
    return report


def check_zeros_kept(float_path: Path, int8_path: Path) -> None:
    """Raise RuntimeError, naming the layers, where a zero float weight is not an integer zero in INT8."""
    float_weights = onnx_weights(float_path)
    int8_weights = onnx_weights(int8_path)
    lost, unchecked = {}, []
    for name, weight in float_weights.items():
        quantized = int8_weights.get(name)
        if quantized is None or quantized.shape != weight.shape:
            unchecked.append(name)
            continue
        count = int(np.count_nonzero(quantized[weight == 0]))
        if count:
            lost[name] = count
    if unchecked:
        log.warning("%d layers have no INT8 weight of the float shape, so their zeros are not checked: %s",
                    len(unchecked), unchecked[:5])
    if lost:
        raise RuntimeError(
            f"{int8_path}: {sum(lost.values())} pruned weights are nonzero after quantization in layers "
            f"{list(lost)[:5]}; set quantization.symmetric_weights=true so zero maps to the integer 0."
        )
