"""Neural Magic's DeepSparse, which runs sparse weights with sparse kernels."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsebench.engines.base import Engine


class DeepSparseEngine(Engine):
    """DeepSparse 1.8, one engine whose scheduler serves every stream.

    ``threads`` becomes DeepSparse's ``num_cores``, because it runs one thread per core. The
    sync scenario uses the single-stream scheduler and the async one the multi-stream
    scheduler with ``streams`` streams. DeepSparse runs fp32 files in fp32.
    """

    kind = "deepsparse"
    install_hint = (
        "Install it with `pip install deepsparse==1.8.0`: Linux on x86-64 with AVX2 or AVX-512 "
        "(or ARM64 with NEON), Python 3.8-3.11, numpy<2 and onnx<1.15."
    )

    def compile(self) -> None:
        deepsparse = self.import_runtime("deepsparse")
        self._deepsparse = deepsparse
        scheduler = "single_stream" if self.request.streams == 1 else "multi_stream"
        self._engine = deepsparse.compile_model(
            self.request.onnx_path,
            batch_size=self.request.input_shape[0],
            num_cores=self.request.threads,
            num_streams=self.request.streams,
            scheduler=self.request.options.get("scheduler") or scheduler,
            input_shapes=[list(self.request.input_shape)],
        )

    def run(self, batch: np.ndarray, stream: int = 0) -> np.ndarray:
        return self._engine.run([batch], val_inp=False)[0]

    def describe(self) -> dict[str, Any]:
        engine = self._engine
        input_dtype = engine.generate_random_inputs()[0].dtype
        return {
            "version": self._deepsparse.__version__,
            "precision": {np.dtype(np.float32): "fp32", np.dtype(np.float16): "fp16"}.get(input_dtype, str(input_dtype)),
            "threads": int(engine.num_cores),
            "streams": int(engine.num_streams),
            "optimization": f"scheduler={engine.scheduler.name}",
            "fraction_of_supported_ops": float(engine.fraction_of_supported_ops),
            "cpu_avx_type": engine.cpu_avx_type,
            "cpu_vnni": bool(engine.cpu_vnni),
        }
