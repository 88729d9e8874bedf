"""ONNX Runtime on its CPU execution provider."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sparsebench.engines.base import Engine, effective_precision

# GraphOptimizationLevel members by the names the engine config uses.
OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

# Op types of the optimized graph that compute Conv, Gemm and MatMul layers, by precision.
# After QDQ fusion ONNX Runtime runs a quantized Conv as QLinearConv, or as NhwcQLinearConv after
# its NHWC layout transformer. A DequantizeLinear left in front of a float Conv means float compute.
INT8_OPS = ("QLinearConv", "NhwcQLinearConv", "QLinearMatMul", "QGemm", "ConvInteger", "MatMulInteger",
            "MatMulIntegerToFloat", "DynamicQuantizeMatMul")
FLOAT_OPS = ("Conv", "FusedConv", "NhwcFusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul")


class OrtEngine(Engine):
    """ONNX Runtime, one InferenceSession per stream.

    The intra-op pool of each session gets ``threads // streams`` threads and the inter-op
    pool one thread, so the process runs ``threads`` compute threads in all. ONNX Runtime's
    CPU provider runs the model in its own data type, so only fp32 is offered.
    """

    kind = "ort"
    install_hint = "Install it with `pip install onnxruntime` (wheels for Linux, Windows and macOS on x86-64 and ARM64)."

    def compile(self) -> None:
        ort = self.import_runtime("onnxruntime")
        self._ort = ort
        level_name = self.request.options.get("graph_optimization_level", "all")
        if level_name not in OPTIMIZATION_LEVELS:
            raise ValueError(
                f"engine.graph_optimization_level={level_name!r} is unknown; use one of {sorted(OPTIMIZATION_LEVELS)}."
            )
        streams = self.request.streams
        if self.request.threads < streams:
            raise ValueError(
                f"threads={self.request.threads} is fewer than streams={streams}; "
                "every ONNX Runtime stream needs a thread, so lower streams or raise threads."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.request.threads // streams
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level_name])
        options.log_severity_level = 3
        self._sessions = [
            ort.InferenceSession(self.request.onnx_path, options, providers=["CPUExecutionProvider"])
            for _ in range(streams)
        ]
        # The batch axis of an exported file is dynamic; the first run fixes the shape, and
        # the runner always feeds request.input_shape.
        declared = self._sessions[0].get_inputs()[0].shape
        if len(declared) != len(self.request.input_shape):
            raise ValueError(f"{self.request.onnx_path}: input rank {len(declared)} != requested shape {self.request.input_shape}")

    def run(self, batch: np.ndarray, stream: int = 0) -> np.ndarray:
        return self._sessions[stream].run(None, {self.request.input_name: batch})[0]

    def describe(self) -> dict[str, Any]:
        session = self._sessions[0]
        options = session.get_session_options()
        level = next(name for name, member in OPTIMIZATION_LEVELS.items()
                     if getattr(self._ort.GraphOptimizationLevel, member) == options.graph_optimization_level)
        input_type = session.get_inputs()[0].type
        return {
            "version": self._ort.__version__,
            "providers": session.get_providers(),
            "precision": {"tensor(float)": "fp32", "tensor(float16)": "fp16"}.get(input_type, input_type),
            "threads": options.intra_op_num_threads * len(self._sessions),
            "threads_per_stream": options.intra_op_num_threads,
            "inter_op_threads": options.inter_op_num_threads,
            "streams": len(self._sessions),
            "optimization": level,
            "execution_mode": str(options.execution_mode).rsplit(".", 1)[-1],
            **self._layer_precisions(),
        }

    def _layer_precisions(self) -> dict[str, Any]:
        """Count the compute layers per precision in the graph ONNX Runtime runs after optimizing.

        A second session with the same options writes its optimized graph to a temporary
        file, and its op types show whether QDQ pairs were fused into integer kernels.
        """
        import onnx

        options = self._sessions[0].get_session_options()
        with tempfile.TemporaryDirectory(prefix="sparsebench-ort-") as folder:
            optimized = Path(folder) / "optimized.onnx"
            probe = self._ort.SessionOptions()
            probe.graph_optimization_level = options.graph_optimization_level
            probe.intra_op_num_threads = 1
            probe.log_severity_level = 3
            probe.optimized_model_filepath = str(optimized)
            self._ort.InferenceSession(self.request.onnx_path, probe, providers=["CPUExecutionProvider"])
            op_types = Counter(node.op_type for node in onnx.load(str(optimized), load_external_data=False).graph.node)
        layers = {
            "int8": sum(op_types[op] for op in INT8_OPS),
            "fp32": sum(op_types[op] for op in FLOAT_OPS),
        }
        return {
            "effective_precision": effective_precision(layers),
            "layer_precisions": layers,
            "effective_precision_source": "op types of the optimized graph (SessionOptions.optimized_model_filepath)",
        }
