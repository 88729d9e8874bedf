"""One measurement from config: ``benchmark(cfg)`` is what ``benchmark.py`` runs per job.

Flow: check the config -> build the measurement key and skip it when already stored ->
export the model or take ``onnx`` -> inspect the file and measure its facts -> time the
engine in a fresh worker process -> append one record to the results store -> log a W&B run.
A failure after the config checks (corrupt file, missing engine, unsupported op, out of
memory, timeout) is stored as a failed record and returned, so a sweep goes on.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, OmegaConf, open_dict
from tqdm import tqdm

import sparsebench
from sparsebench.bench.checks import validate_benchmark
from sparsebench.bench.machine import machine_facts, physical_cores
from sparsebench.bench.onnx_file import file_accuracy, inspect_input, model_facts, run_summary
from sparsebench.bench.statistics import aggregate
from sparsebench.bench.store import SCHEMA, append_record, completed_keys, read_records
from sparsebench.bench.tracking import log_measurement
from sparsebench.config import absolute_path, set_on_command_line

log = logging.getLogger(__name__)

# Seconds a worker gets for starting, compiling and the first inference, beyond the timed part.
COMPILE_ALLOWANCE_S = 600
LOG_TAIL_CHARS = 2000
# Share of all CPUs that other processes may use during timing before a result is flagged.
BUSY_WARNING_FRACTION = 0.10
# The line the worker logs after each timed repeat; the runner turns it into progress.
REPEAT_LINE = re.compile(r"^\[worker\] repeat (\d+)/(\d+): ([\d.]+) items/s")
# Seconds to wait for the last worker output once the worker has exited or been killed.
READER_JOIN_S = 10


class MeasurementError(RuntimeError):
    """A measurement failed after the config checks; stored with its phase, not raised."""

    def __init__(self, phase: str, error_type: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.error_type = error_type


def benchmark(cfg: DictConfig) -> dict[str, Any]:
    """Measure one engine x ONNX file x batch size x scenario and return its stored record.

    Returns the stored record unchanged when the results file already contains a successful
    measurement with the same key and ``force`` is false.
    """
    with open_dict(cfg):
        for key in ("onnx", "results_file"):
            if cfg[key]:
                cfg[key] = absolute_path(str(cfg[key]))
    validate_benchmark(cfg)
    results_file = Path(cfg.results_file)
    output_dir = Path(cfg.paths.output_dir)
    threads = cfg.threads or physical_cores()

    # 1. Identify the measurement, and skip it when it is stored already.
    source = describe_source(cfg)
    measurement = {
        "model": source["model"],
        "source": source,
        "engine": cfg.engine.kind,
        "engine_options": OmegaConf.to_container(cfg.engine, resolve=True),
        "batch_size": cfg.batch_size,
        "scenario": cfg.scenario,
        "streams": cfg.streams,
        "threads": threads,
        "precision": cfg.precision,
        "bench": {**OmegaConf.to_container(cfg.bench, resolve=True), "seed": cfg.seed},
    }
    machine = machine_facts()
    key = measurement_key(machine["hostname"], measurement)
    records = read_records([results_file]) if results_file.is_file() else []
    if not cfg.force and key in completed_keys(records):
        stored = [record for record in records if record["key"] == key and record["status"] == "ok"]
        log.info("skipped %s: already stored in %s; force=true measures it again", key, results_file)
        return {**stored[-1], "skipped": True}

    record: dict[str, Any] = {
        "schema": SCHEMA,
        "key": key,
        "status": "ok",
        "error": None,
        "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sweep": sweep_id(output_dir),
        "output_dir": str(output_dir),
        "measurement": measurement,
        "machine": machine,
    }

    # 2. Prepare the file, then time it in a fresh process.
    log.info("measuring %s on %s, batch %d, %s, %d threads", source["model"], cfg.engine.kind,
             cfg.batch_size, cfg.scenario, threads)
    try:
        onnx_path = prepare_onnx(cfg, source, output_dir)
        record["model_facts"] = measure_facts(onnx_path)
        record["accuracy"] = file_accuracy(onnx_path)
        image_input = inspect(onnx_path, cfg.batch_size)
        measurement["image_size"] = image_input["shape"][-1]
        spec = {
            "engine": cfg.engine.kind,
            "engine_options": measurement["engine_options"],
            "onnx_path": str(onnx_path),
            "input_name": image_input["name"],
            "input_shape": image_input["shape"],
            "threads": threads,
            "precision": cfg.precision,
            "streams": cfg.streams,
            "bench": measurement["bench"],
        }
        label = f"{source['model']} {source['label']} {cfg.engine.kind} b{cfg.batch_size}"
        result = run_worker(spec, output_dir, timeout_s(cfg.bench), label)
        metrics, spread = aggregate(result["repeats"])
        record["engine_settings"] = result["engine_settings"]
        record["repeats"] = result["repeats"]
        record["spread"] = spread
        record["metrics"] = {
            **metrics,
            **{key: result[key] for key in ("time_ms/compile", "time_ms/first_inference",
                                            "memory_mib/rss_before_compile", "memory_mib/peak_rss",
                                            "cpu/other_processes_busy")},
        }
        busy = result["cpu/other_processes_busy"]
        if busy > BUSY_WARNING_FRACTION:
            log.warning(
                "other processes kept %.0f%% of the CPUs busy during the timed repeats; the figures of %s are "
                "unreliable, so rerun on an idle machine with force=true", 100 * busy, key,
            )
    except MeasurementError as error:
        record["status"] = "failed"
        record["error"] = {"phase": error.phase, "type": error.error_type, "message": str(error)}
        log.error("measurement %s failed in %s: %s: %s", key, error.phase, error.error_type, error)

    # 3. Store first, so a crash in logging loses nothing.
    append_record(results_file, record)
    log_measurement(cfg, record, output_dir)
    if record["status"] == "ok":
        metrics = record["metrics"]
        log.info(
            "%s on %s, batch %d: %.1f ± %.1f items/s, latency p50 %.2f ms, p99 %.2f ms, peak RSS %.0f MiB; stored in %s",
            source["model"], cfg.engine.kind, cfg.batch_size, metrics["throughput/items_per_s"],
            metrics["throughput/items_per_s_std"], metrics["latency_ms/median"], metrics["latency_ms/p99"],
            metrics["memory_mib/peak_rss"],
            results_file,
        )
    return record


def describe_source(cfg: DictConfig) -> dict[str, Any]:
    """Describe where the ONNX file comes from: a given file (by content hash) or an export."""
    if cfg.onnx:
        path = Path(cfg.onnx)
        summary = run_summary(path) or {}
        model_name = cfg.model.name
        saved_model = summary.get("model")
        if saved_model and saved_model != model_name:
            if set_on_command_line("model"):
                raise ValueError(
                    f"onnx={str(path)!r} was exported from model {saved_model!r} (see {path.parent / 'summary.json'}), "
                    f"but model={model_name!r}; drop model= or set model={saved_model}."
                )
            log.info("onnx=%s was exported from model %s (its summary.json), so the result is stored under that name",
                     path, saved_model)
            model_name = saved_model
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return {
            "kind": "file", "model": model_name, "path": str(path), "sha256": digest,
            "label": path.stem, "recipe": summary.get("recipe") if path.stem != "dense" else None,
        }
    weights = "pretrained" if cfg.model.pretrained else "random"
    if cfg.model.pretrained_file:
        weights = f"file:{cfg.model.pretrained_file}"
    return {
        "kind": "export", "model": cfg.model.name, "timm_name": cfg.model.timm_name,
        "image_size": cfg.image_size or cfg.model.input_size, "num_classes": cfg.num_classes,
        "weights": weights, "seed": cfg.seed, "label": "dense", "recipe": None,
    }


def measurement_key(hostname: str, measurement: dict[str, Any]) -> str:
    """Return the key that identifies a measurement on a machine, readable up front.

    The readable part names machine, model, engine, batch, scenario, threads and precision.
    The hash covers the source and every engine and bench option, so changing any of them
    makes a new measurement.
    """
    source = measurement["source"]
    source_id = source["sha256"][:12] if source["kind"] == "file" else f"{source['image_size']}px-{source['weights']}"
    digest = hashlib.sha256(json.dumps(measurement, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return "|".join([
        hostname, measurement["model"], source_id, measurement["engine"], f"b{measurement['batch_size']}",
        f"{measurement['scenario']}x{measurement['streams']}", f"t{measurement['threads']}",
        measurement["precision"], measurement["bench"]["name"], digest,
    ])


def sweep_id(output_dir: Path) -> str:
    """Return the multirun folder name that groups this job's sweep, or this run's folder name."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return Path(hydra_cfg.sweep.dir).name
    return output_dir.name


def prepare_onnx(cfg: DictConfig, source: dict[str, Any], output_dir: Path) -> Path:
    """Return the file to measure, exporting ``cfg.model`` into ``output_dir`` when ``onnx`` is unset."""
    if source["kind"] == "file":
        return Path(source["path"])
    import torch

    from sparsebench.export import export_onnx
    from sparsebench.models import create_model

    path = output_dir / "model.onnx"
    try:
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, cfg.num_classes)
        if source["weights"] == "random":
            reset_zero_norm_scales(model)
        export_onnx(model, path, source["image_size"])
    except (RuntimeError, ValueError, OSError) as error:
        raise MeasurementError("export", type(error).__name__, f"exporting model={cfg.model.name} failed: {error}") from error
    return path


def reset_zero_norm_scales(model: "torch.nn.Module") -> None:
    """Set normalization scales that timm initializes to zero to one, in place.

    timm zero-initializes the last BatchNorm of each residual block (``zero_init_last``).
    Exporting folds that BatchNorm into its convolution, so a randomly initialized ResNet would
    reach the engines with whole convolutions of zeros (58% sparsity for resnet10t) and could
    not stand for a dense model.
    """
    import torch

    with torch.no_grad():
        for module in model.modules():
            weight = getattr(module, "weight", None)
            is_norm = isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm, torch.nn.LayerNorm))
            if is_norm and weight is not None and not torch.count_nonzero(weight):
                weight.fill_(1.0)


def measure_facts(path: Path) -> dict[str, Any]:
    """Measure the file's parameters, sparsity and sizes, as a failed measurement if it cannot."""
    try:
        return model_facts(path)
    except Exception as error:  # onnx raises protobuf and checker errors of many types
        raise MeasurementError(
            "inspect", type(error).__name__, f"onnx={str(path)!r} cannot be read ({error}); export it again."
        ) from error


def inspect(path: Path, batch_size: int) -> dict[str, Any]:
    try:
        return inspect_input(path, batch_size)
    except ValueError as error:
        raise MeasurementError("inspect", type(error).__name__, str(error)) from error


def timeout_s(bench: DictConfig) -> float:
    """Return the worker's time limit: ``bench.timeout_s``, or the planned time plus an allowance."""
    if bench.timeout_s is not None:
        return float(bench.timeout_s)
    return bench.warmup_s + bench.repeats * bench.duration_s + COMPILE_ALLOWANCE_S


def run_worker(spec: dict[str, Any], output_dir: Path, limit_s: float, label: str | None = None) -> dict[str, Any]:
    """Run one measurement in a fresh Python process and return its result.

    The worker imports the same sparsebench as this process, because its source folder is put
    first on PYTHONPATH. Its output goes to ``worker.log`` in ``output_dir``. Each timed repeat
    advances a progress bar on a terminal, or is logged where there is none. ``label`` names the
    measurement in both (default: engine, file name and batch size).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    spec_path = output_dir / "measurement.json"
    result_path = output_dir / "result.json"
    log_path = output_dir / "worker.log"
    spec_path.write_text(json.dumps(spec, indent=2))
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    package_root = str(Path(sparsebench.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "sparsebench.bench.worker", str(spec_path), str(result_path)]
    label = label or f"{spec['engine']} {Path(spec['onnx_path']).name} b{spec['input_shape'][0]}"

    # disable=None shows the bar only when stderr is a terminal.
    with log_path.open("w") as worker_log, tqdm(total=spec["bench"]["repeats"], desc=label, unit="repeat",
                                                disable=None, leave=False) as progress:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                   errors="replace")
        reader = threading.Thread(target=follow_worker, args=(process.stdout, worker_log, progress, label),
                                  daemon=True)
        reader.start()
        try:
            process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired as error:
            process.kill()
            process.wait()
            raise MeasurementError(
                "run", "TimeoutError",
                f"the measurement did not finish within {limit_s:.0f} s and was killed; raise bench.timeout_s "
                f"or shorten bench.duration_s. Worker log: {log_path}",
            ) from error
        except BaseException:
            # Ctrl-C or another error here: the measurement process must not outlive the runner.
            process.kill()
            process.wait()
            raise
        finally:
            reader.join(READER_JOIN_S)

    if result_path.is_file():
        result = json.loads(result_path.read_text())
        if result["status"] == "ok":
            return result
        error = result["error"]
        raise MeasurementError(error["phase"], error["type"], error["message"])
    raise MeasurementError("run", "WorkerCrashed", describe_exit(process.returncode, log_path))


def follow_worker(stream: IO[str], worker_log: IO[str], progress: tqdm, label: str) -> None:
    """Copy the worker's output to its log and report each finished repeat as progress."""
    for line in stream:
        worker_log.write(line)
        worker_log.flush()
        match = REPEAT_LINE.match(line)
        if match is None:
            continue
        progress.update(1)
        progress.set_postfix_str(f"{float(match[3]):.1f} items/s")
        if progress.disable:
            log.info("%s: repeat %s/%s, %s items/s", label, match[1], match[2], match[3])


def describe_exit(returncode: int, log_path: Path) -> str:
    """Explain a worker that exited without a result, with the tail of its log."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        cause = f"was killed by {name}"
        if -returncode == signal.SIGKILL:
            cause += ", most often by the kernel's out-of-memory killer; lower batch_size or free memory"
    else:
        cause = f"exited with status {returncode}"
    tail = log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log_path.is_file() else ""
    return f"the measurement process {cause} before writing a result. Log tail ({log_path}):\n{tail}"
