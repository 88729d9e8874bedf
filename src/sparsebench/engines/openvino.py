"""OpenVINO on its CPU device."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from sparsebench.engines.base import Engine, effective_precision

# OpenVINO's names for the precisions of INFERENCE_PRECISION_HINT.
OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}

# Properties stored with every result, read from the compiled model.
READ_BACK = (
    "INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT",
    "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING", "SCHEDULING_CORE_TYPE",
    "CPU_SPARSE_WEIGHTS_DECOMPRESSION_RATE", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES",
)

# Layer types of the CPU plugin's runtime graph that compute Conv, Gemm and MatMul layers.
COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "Deconvolution")
# runtimePrecision values of those layers, by the names sparsebench uses.
RUNTIME_PRECISIONS = {"u8": "int8", "i8": "int8", "f32": "fp32", "bf16": "bf16", "f16": "fp16"}


class OpenVinoEngine(Engine):
    """OpenVINO, one compiled model with one infer request per stream.

    The inference precision, thread count and stream count are set explicitly, not through a
    performance hint, and compile fails when the compiled model reports other values. That
    stops OpenVINO from running bf16 on a CPU that has it while other engines run fp32.
    """

    kind = "openvino"
    precisions = ("fp32", "bf16", "fp16")
    install_hint = (
        "Install it with `pip install openvino` (wheels for Linux, Windows and macOS on x86-64 and ARM64; "
        "its CPU plugin needs SSE4.2 on x86-64)."
    )

    def compile(self) -> None:
        ov = self.import_runtime("openvino")
        self._ov = ov
        core = ov.Core()
        model = core.read_model(self.request.onnx_path)
        model.reshape({self.request.input_name: list(self.request.input_shape)})
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": OV_PRECISIONS[self.request.precision],
            "INFERENCE_NUM_THREADS": self.request.threads,
            "NUM_STREAMS": self.request.streams,
        }
        hint = self.request.options.get("performance_hint")
        if hint:
            config["PERFORMANCE_HINT"] = str(hint).upper()
        for key, value in (self.request.options.get("properties") or {}).items():
            config[str(key)] = value
        self._compiled = core.compile_model(model, self.request.options.get("device", "CPU"), config)
        self._requests = [self._compiled.create_infer_request() for _ in range(self.request.streams)]
        self._check_applied()

    def _check_applied(self) -> None:
        applied = self.describe()
        requested = {"precision": self.request.precision, "threads": self.request.threads, "streams": self.request.streams}
        different = {key: (value, applied[key]) for key, value in requested.items() if applied[key] != value}
        if different:
            raise RuntimeError(
                "OpenVINO compiled the model with other settings than requested "
                f"(setting: requested, applied): {different}. Change precision, threads or streams to values "
                "this CPU supports."
            )

    def run(self, batch: np.ndarray, stream: int = 0) -> np.ndarray:
        request = self._requests[stream]
        request.infer({0: batch}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data

    def describe(self) -> dict[str, Any]:
        properties = {key: self._compiled.get_property(key) for key in READ_BACK}
        precision = str(properties["INFERENCE_PRECISION_HINT"].get_type_name()) if hasattr(
            properties["INFERENCE_PRECISION_HINT"], "get_type_name") else str(properties["INFERENCE_PRECISION_HINT"])
        by_ov_name = {value: key for key, value in OV_PRECISIONS.items()}
        return {
            "version": self._ov.get_version(),
            "device": self.request.options.get("device", "CPU"),
            "precision": by_ov_name.get(precision, precision),
            "threads": int(properties["INFERENCE_NUM_THREADS"]),
            "streams": int(properties["NUM_STREAMS"]),
            "optimization": f"hint={properties['PERFORMANCE_HINT']}, mode={properties['EXECUTION_MODE_HINT']}",
            "properties": {key: str(value) for key, value in properties.items()},
            **self._layer_precisions(),
        }

    def _layer_precisions(self) -> dict[str, Any]:
        """Count the compute layers per ``runtimePrecision`` in the compiled model's runtime graph."""
        layers: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "layerType" not in info or info["layerType"].astype(str) not in COMPUTE_LAYERS:
                continue
            runtime = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
            layers[RUNTIME_PRECISIONS.get(runtime, runtime)] += 1
        return {
            "effective_precision": effective_precision(dict(layers)),
            "layer_precisions": dict(layers),
            "effective_precision_source": "runtimePrecision of each layer in CompiledModel.get_runtime_model()",
        }
