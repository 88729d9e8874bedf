"""One measurement in a fresh process: ``python -m sparsebench.bench.worker SPEC RESULT``.

The runner starts this module once per measurement, so engines never share thread pools,
allocators or caches. It reads the measurement spec (JSON), and writes one result (JSON) that
contains either the timings or the error with the phase it happened in. It imports numpy and the
one engine it needs, never torch. Exit status: 0 on success, 1 after writing a failure.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from sparsebench.bench.statistics import summarize_repeat
from sparsebench.engines import Engine, EngineRequest, engine_class

# Named, not __name__: run with -m this module is __main__, and DeepSparse adds a handler of its
# own to the __main__ logger, which would print every line twice.
log = logging.getLogger("sparsebench.bench.worker")


def rss_mib() -> float:
    """Return this process's peak resident set size so far, in MiB.

    Linux's VmHWM starts afresh at exec, unlike getrusage's ru_maxrss, which keeps the peak of
    the forking parent (the runner, with torch loaded). Elsewhere ru_maxrss is the only source.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the kernel reports kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # macOS reports bytes, other systems KiB.
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


class CpuLoad:
    """CPU time that other processes use from creation on, as a fraction of all CPUs.

    A busy neighbour slows engines that pin and spin their threads (DeepSparse, OpenVINO) far
    more than its share, so the figure is stored to judge a result by.
    """

    def __init__(self) -> None:
        self.start_ns = time.perf_counter_ns()
        self.start_system = self._system_busy_s()
        self.start_own = self._own_cpu_s()

    @staticmethod
    def _system_busy_s() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def _own_cpu_s() -> float:
        times = os.times()
        return times.user + times.system

    def other_processes_fraction(self) -> float:
        """Return other processes' share of all CPUs since creation, in [0, 1]."""
        wall_s = (time.perf_counter_ns() - self.start_ns) / 1e9
        other_s = (self._system_busy_s() - self.start_system) - (self._own_cpu_s() - self.start_own)
        return min(1.0, max(0.0, other_s / (wall_s * (psutil.cpu_count() or 1))))


def timed_loop(engine: Engine, batch: np.ndarray, stream: int, deadline_ns: int) -> tuple[list[int], int]:
    """Run batches until ``deadline_ns``; return per-call latencies (ns) and the last call's end."""
    latencies = []
    now = time.perf_counter_ns()
    while now < deadline_ns:
        start = time.perf_counter_ns()
        engine.run(batch, stream)
        now = time.perf_counter_ns()
        latencies.append(now - start)
    return latencies, now


def timed_repeat(engine: Engine, batches: list[np.ndarray], duration_s: float) -> tuple[list[int], int]:
    """Time one repeat of ``duration_s`` seconds on every stream; return latencies and elapsed ns.

    With one stream the loop runs in this thread. With several, one Python thread per stream
    calls the engine (the runtimes release the GIL), and the elapsed time ends when the last
    stream finishes its last call.
    """
    start = time.perf_counter_ns()
    deadline = start + int(duration_s * 1e9)
    if len(batches) == 1:
        latencies, end = timed_loop(engine, batches[0], 0, deadline)
        return latencies, end - start

    results: list[tuple[list[int], int]] = [([], start)] * len(batches)
    errors: list[BaseException] = []

    def run_stream(stream: int) -> None:
        try:
            results[stream] = timed_loop(engine, batches[stream], stream, deadline)
        except BaseException as error:  # re-raised below in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run_stream, args=(stream,)) for stream in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    latencies = [latency for stream_latencies, _ in results for latency in stream_latencies]
    return latencies, max(end for _, end in results) - start


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Compile, warm up and time one engine as ``spec`` requests; raise on any failure."""
    request = EngineRequest(
        onnx_path=spec["onnx_path"], input_name=spec["input_name"], input_shape=tuple(spec["input_shape"]),
        threads=spec["threads"], precision=spec["precision"], streams=spec["streams"], options=spec["engine_options"],
    )
    bench = spec["bench"]
    phase = "compile"
    try:
        # Inputs exist before anything is timed; one array per stream.
        rng = np.random.default_rng(bench["seed"])
        batches = [rng.standard_normal(request.input_shape, dtype=np.float32) for _ in range(request.streams)]
        rss_before_compile = rss_mib()

        # 1. Compile, then the first inference, each timed once.
        start = time.perf_counter_ns()
        engine = engine_class(spec["engine"])(request)
        engine.compile()
        compile_ns = time.perf_counter_ns() - start
        phase = "run"
        start = time.perf_counter_ns()
        engine.run(batches[0], 0)
        first_inference_ns = time.perf_counter_ns() - start
        settings = engine.describe()
        log.info("compiled in %.1f s, first inference %.1f ms; warming up for %.1f s",
                 compile_ns / 1e9, first_inference_ns / 1e6, bench["warmup_s"])

        # 2. Warm-up, untimed: at least warmup_s seconds and warmup_calls calls per stream.
        timed_repeat(engine, batches, bench["warmup_s"])
        for _ in range(bench["warmup_calls"]):
            for stream, batch in enumerate(batches):
                engine.run(batch, stream)

        # 3. Timed repeats, watching how much CPU other processes take meanwhile.
        load = CpuLoad()
        repeats = []
        for index in range(bench["repeats"]):
            latencies, elapsed_ns = timed_repeat(engine, batches, bench["duration_s"])
            repeats.append(summarize_repeat(latencies, elapsed_ns, request.input_shape[0]))
            log.info("repeat %d/%d: %.1f items/s", index + 1, bench["repeats"], repeats[-1]["throughput/items_per_s"])
        other_busy = load.other_processes_fraction()
    except BaseException as error:
        error.phase = phase  # type: ignore[attr-defined]
        raise

    return {
        "status": "ok",
        "engine_settings": settings,
        "repeats": repeats,
        "time_ms/compile": compile_ns / 1e6,
        "time_ms/first_inference": first_inference_ns / 1e6,
        "memory_mib/rss_before_compile": rss_before_compile,
        "memory_mib/peak_rss": rss_mib(),
        "cpu/other_processes_busy": other_busy,
    }


def main(spec_path: str, result_path: str) -> int:
    """Run the measurement in ``spec_path`` and write its result or its error to ``result_path``."""
    logging.basicConfig(level=logging.INFO, format="[worker] %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = measure(spec)
        code = 0
    except (Exception, MemoryError) as error:
        result = {
            "status": "failed",
            "error": {
                "type": type(error).__name__,
                "message": str(error),
                "phase": getattr(error, "phase", "compile"),
                "traceback": traceback.format_exc(limit=6),
            },
        }
        code = 1
    partial = Path(result_path).with_suffix(".partial")
    partial.write_text(json.dumps(result))
    partial.replace(result_path)
    return code


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
