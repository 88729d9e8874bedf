"""Compare the harness with each engine's own benchmark tool on one ONNX file.

For every engine the same file runs through sparsebench's worker and through the engine's
own tool with matching settings: batch size, threads, one stream, sync, fp32, duration and
warm-up. The tools are ``benchmark_app`` for OpenVINO, ``deepsparse.benchmark`` for
DeepSparse, and a bare ``InferenceSession.run`` loop for ONNX Runtime. Each engine runs
``--rounds`` times through both, the order alternating between rounds. The verdict takes the
median of the per-round ratios (harness / tool): pairing the two runs of a round cancels the
drift of the machine's speed over the minutes a comparison lasts, which moved both arms by up
to 12% on a shared 2-core virtual machine. The target is at least 0.97, meaning the harness
adds at most 3% overhead. One round alone varies by several percent there, so it cannot
resolve the target.

    python benchmarks/engine_tools.py --model resnet50 --image-size 224 --duration 10 --rounds 6
    python benchmarks/engine_tools.py --onnx outputs/prune/runs/<run>/pruned.onnx
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch
from omegaconf import OmegaConf

from sparsebench.bench.machine import physical_cores
from sparsebench.bench.onnx_file import inspect_input
from sparsebench.bench.runner import reset_zero_norm_scales, run_worker
from sparsebench.export import export_onnx
from sparsebench.models import create_model

TARGET_RATIO = 0.97
BARE_ORT_LOOP = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import onnxruntime as ort
    path, name, shape, threads, duration, warmup = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        session.run(None, {name: batch})
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        session.run(None, {name: batch})
        calls += 1
    print(calls * shape[0] / (time.perf_counter() - start))
""")


def tool_path(name: str) -> str:
    """Return the tool next to this Python, or on PATH; raise FileNotFoundError naming its package."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found next to {sys.executable} or on PATH; install its engine package.")
    return found


def tool_throughput(engine: str, path: Path, image_input: dict, threads: int, duration: float, warmup: float,
                    workdir: Path) -> float:
    """Run the engine's own tool with the harness's settings and return its throughput (items/s)."""
    shape = image_input["shape"]
    if engine == "ort":
        output = subprocess.run([sys.executable, "-c", BARE_ORT_LOOP, str(path), image_input["name"], str(shape),
                                 str(threads), str(duration), str(warmup)], check=True, capture_output=True, text=True)
        return float(output.stdout.strip().splitlines()[-1])
    if engine == "openvino":
        # benchmark_app has no warm-up time option; it runs one untimed inference first.
        output = subprocess.run([
            tool_path("benchmark_app"), "-m", str(path), "-d", "CPU", "-api", "sync", "-hint", "none",
            "-nstreams", "1", "-nireq", "1", "-nthreads", str(threads), "-infer_precision", "f32",
            "-shape", f"{image_input['name']}{shape}".replace(" ", ""), "-t", str(int(duration)),
        ], check=True, capture_output=True, text=True)
        match = re.search(r"Throughput:\s+([\d.]+)\s+FPS", output.stdout)
        if not match:
            raise RuntimeError(f"benchmark_app printed no throughput:\n{output.stdout[-2000:]}")
        return float(match.group(1))
    if engine == "deepsparse":
        export = workdir / "deepsparse.json"
        subprocess.run([
            tool_path("deepsparse.benchmark"), str(path), "-b", str(shape[0]), "-ncores", str(threads), "-s", "sync",
            "-t", str(int(duration)), "-w", str(int(warmup)), "-x", str(export), "-q",
        ], check=True, capture_output=True, text=True)
        return float(json.loads(export.read_text())["benchmark_result"]["items_per_sec"])
    raise ValueError(f"unknown engine {engine!r}")


def harness_throughput(engine: str, path: Path, image_input: dict, threads: int, duration: float, warmup: float,
                       workdir: Path) -> tuple[float, float]:
    """Measure with sparsebench's worker; return throughput (items/s) and other processes' CPU share."""
    spec = {
        "engine": engine, "engine_options": {}, "onnx_path": str(path), "input_name": image_input["name"],
        "input_shape": image_input["shape"], "threads": threads, "precision": "fp32", "streams": 1,
        "bench": {"duration_s": duration, "repeats": 1, "warmup_s": warmup, "warmup_calls": 0, "seed": 0},
    }
    result = run_worker(spec, workdir / engine, limit_s=duration + warmup + 600)
    return result["repeats"][0]["throughput/items_per_s"], result["cpu/other_processes_busy"]


def compare_rounds(engine: str, path: Path, image_input: dict, args: argparse.Namespace,
                   workdir: Path) -> tuple[list[float], list[float]]:
    """Measure ``engine`` through the harness and its tool for ``args.rounds`` rounds.

    Odd rounds run the harness first and even rounds the tool first. Returns both lists of
    throughputs (items/s) and prints each round as it ends.
    """
    harness_runs, tool_runs = [], []
    settings = (path, image_input, args.threads, args.duration, args.warmup, workdir)
    for round_index in range(args.rounds):
        arms = ("harness", "tool") if round_index % 2 == 0 else ("tool", "harness")
        busy = 0.0
        for arm in arms:
            if arm == "harness":
                harness, busy = harness_throughput(engine, *settings)
                harness_runs.append(harness)
            else:
                tool_runs.append(tool_throughput(engine, *settings))
        note = f", other processes used {100 * busy:.0f}% of the CPUs" if busy > 0.1 else ""
        print(f"{engine} round {round_index + 1}/{args.rounds} ({' then '.join(arms)}): harness "
              f"{harness_runs[-1]:.2f}, tool {tool_runs[-1]:.2f} items/s, ratio "
              f"{harness_runs[-1] / tool_runs[-1]:.3f}{note}", flush=True)
    return harness_runs, tool_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, help="ONNX file to measure; default: export --model with random weights")
    parser.add_argument("--model", default="resnet50", help="model config name under conf/model (default resnet50)")
    parser.add_argument("--image-size", type=int, default=224, help="input side in pixels of the export")
    parser.add_argument("--batch-size", type=int, default=1, help="images per call")
    parser.add_argument("--threads", type=int, default=physical_cores(), help="threads per engine (default: physical cores)")
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed warm-up seconds per run")
    parser.add_argument("--engines", default="ort,openvino,deepsparse", help="comma-separated engines")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs of harness and tool per engine")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        path = args.onnx
        if path is None:
            model_cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / f"{args.model}.yaml")
            torch.manual_seed(0)
            model = create_model(model_cfg, 1000)
            reset_zero_norm_scales(model)
            path = export_onnx(model, workdir / f"{args.model}.onnx", args.image_size)
        image_input = inspect_input(path, args.batch_size)
        print(f"file {path}, input {image_input['shape']}, {args.threads} threads, "
              f"{args.duration:.0f} s timed after {args.warmup:.0f} s warm-up, sync, fp32")
        verdicts = []
        for engine in args.engines.split(","):
            harness_runs, tool_runs = compare_rounds(engine, path, image_input, args, workdir)
            verdicts.append((engine, harness_runs, tool_runs))

    print(f"\n{'engine':<12}{'harness (items/s)':>20}{'tool (items/s)':>18}{'ratio':>8}{'round ratios':>16}  verdict")
    for engine, harness_runs, tool_runs in verdicts:
        round_ratios = [harness / tool for harness, tool in zip(harness_runs, tool_runs)]
        ratio = statistics.median(round_ratios)
        verdict = "ok" if ratio >= TARGET_RATIO else f"below {TARGET_RATIO}"
        spread = f"{min(round_ratios):.3f}-{max(round_ratios):.3f}"
        print(f"{engine:<12}{statistics.median(harness_runs):>20.2f}{statistics.median(tool_runs):>18.2f}"
              f"{ratio:>8.3f}{spread:>16}  {verdict}")
    print("Throughputs are medians over the rounds; ratio is the median of the per-round harness / tool ratios.")


if __name__ == "__main__":
    main()
