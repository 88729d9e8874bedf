"""Neural Magic's DeepSparse, which runs sparse weights with sparse kernels."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sparsebench.engines.base import Engine

# Environment variables DeepSparse 1.8 reads for each thread-pinning mode, as set by
# deepsparse.benchmark's --thread_pinning option.
PINNING_ENV = {
    "core": {"NM_BIND_THREADS_TO_CORES": "1", "NM_BIND_THREADS_TO_SOCKETS": "0"},
    "numa": {"NM_BIND_THREADS_TO_CORES": "0", "NM_BIND_THREADS_TO_SOCKETS": "1"},
    "none": {"NM_BIND_THREADS_TO_CORES": "0", "NM_BIND_THREADS_TO_SOCKETS": "0"},
}


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
        # DeepSparse reads its pinning variables when the engine starts. deepsparse.benchmark
        # pins threads to cores unless --thread_pinning is set otherwise, so "core" is the default here too.
        self._pinning = self.request.options.get("thread_pinning") or "core"
        if self._pinning not in PINNING_ENV:
            raise ValueError(f"engine.thread_pinning={self._pinning!r} is unknown; use one of {sorted(PINNING_ENV)}.")
        os.environ.update(PINNING_ENV[self._pinning])
        deepsparse = self.import_runtime("deepsparse")
        self._deepsparse = deepsparse
        scheduler = "single_stream" if self.request.streams == 1 else "multi_stream"
        # compile_model writes input_shapes into the file it is given (override_onnx_input_shapes
        # saves in place), which would fix the batch axis of the user's file. So it gets a copy,
        # kept while the engine lives because the engine reads its model path again later.
        self._copy_folder = tempfile.TemporaryDirectory(prefix="sparsebench-deepsparse-")
        copy = Path(self._copy_folder.name) / Path(self.request.onnx_path).name
        shutil.copyfile(self.request.onnx_path, copy)
        self._engine = deepsparse.compile_model(
            str(copy),
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
            # The enum's value, because Scheduler.default is an alias whose name hides single_stream.
            "optimization": f"scheduler={engine.scheduler.value}",
            "thread_pinning": self._pinning,
            "fraction_of_supported_ops": float(engine.fraction_of_supported_ops),
            "cpu_avx_type": engine.cpu_avx_type,
            "cpu_vnni": bool(engine.cpu_vnni),
            # DeepSparse runs what its own kernels cannot through a bundled ONNX Runtime, and
            # fraction_of_supported_ops is the share its kernels take.
            "effective_precision": "unknown",
            "layer_precisions": {},
            "effective_precision_source": (
                "not readable: DeepSparse 1.8 exposes no per-layer precision; fraction_of_supported_ops="
                f"{float(engine.fraction_of_supported_ops):.2f} is the share of ops its own kernels run"
            ),
        }
