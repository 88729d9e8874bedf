"""Checks of the benchmark config, run before anything is exported or measured.

Each error names the config key, the value and a fix. These are mistakes that would make
every job of a sweep fail the same way, so they raise instead of being stored as results.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from sparsebench.engines import ENGINES
from sparsebench.engines.base import PRECISIONS

MAX_BATCH_SIZE = 1024
MAX_DURATION_S = 3600
MAX_REPEATS = 100
SCENARIOS = ("sync", "async")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_benchmark(cfg: DictConfig) -> None:
    """Raise ValueError, TypeError or FileNotFoundError on the first invalid benchmark setting."""
    if cfg.engine.kind not in ENGINES:
        raise ValueError(f"engine.kind={cfg.engine.kind!r} is unknown; use engine= one of {sorted(ENGINES)}.")
    if not is_int(cfg.batch_size) or not 1 <= cfg.batch_size <= MAX_BATCH_SIZE:
        raise ValueError(
            f"batch_size={cfg.batch_size!r} is out of range; use an integer from 1 to {MAX_BATCH_SIZE}, e.g. batch_size=1."
        )
    if cfg.scenario not in SCENARIOS:
        raise ValueError(f"scenario={cfg.scenario!r} is unknown; use one of {SCENARIOS}.")
    if not is_int(cfg.streams) or cfg.streams < 1:
        raise ValueError(f"streams={cfg.streams!r} must be an integer >= 1.")
    if cfg.scenario == "sync" and cfg.streams != 1:
        raise ValueError(f"streams={cfg.streams} needs scenario=async; the sync scenario runs one request at a time.")
    cpus = os.cpu_count() or 1
    if cfg.threads is not None and (not is_int(cfg.threads) or not 1 <= cfg.threads <= cpus):
        raise ValueError(
            f"threads={cfg.threads!r} is out of range; use an integer from 1 to {cpus} (the logical CPUs), "
            "or threads=null for the physical cores."
        )
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"precision={cfg.precision!r} is unknown; use one of {PRECISIONS}.")
    if not isinstance(cfg.force, bool):
        raise TypeError(f"force={cfg.force!r} must be true or false.")
    validate_bench_section(cfg.bench)
    validate_source(cfg)


def validate_bench_section(bench: DictConfig) -> None:
    """Check durations, repeats and the timeout of the ``bench`` preset."""
    if not is_number(bench.duration_s) or not 0 < bench.duration_s <= MAX_DURATION_S:
        raise ValueError(
            f"bench.duration_s={bench.duration_s!r} is out of range; use seconds in (0, {MAX_DURATION_S}], "
            "e.g. bench.duration_s=60, or bench=quick for a smoke run."
        )
    if not is_int(bench.repeats) or not 1 <= bench.repeats <= MAX_REPEATS:
        raise ValueError(f"bench.repeats={bench.repeats!r} is out of range; use an integer from 1 to {MAX_REPEATS}.")
    if not is_number(bench.warmup_s) or bench.warmup_s < 0:
        raise ValueError(f"bench.warmup_s={bench.warmup_s!r} must be seconds >= 0.")
    if not is_int(bench.warmup_calls) or bench.warmup_calls < 0:
        raise ValueError(f"bench.warmup_calls={bench.warmup_calls!r} must be an integer >= 0.")
    if bench.timeout_s is not None and (not is_number(bench.timeout_s) or bench.timeout_s <= 0):
        raise ValueError(f"bench.timeout_s={bench.timeout_s!r} must be positive seconds, or null for the default.")


def validate_source(cfg: DictConfig) -> None:
    """Check ``onnx`` exists, or that the export settings fit the model."""
    if cfg.onnx:
        path = Path(cfg.onnx)
        if not path.is_file():
            raise FileNotFoundError(
                f"onnx={cfg.onnx!r} does not exist or is not a file; give the path of an ONNX file, "
                "or drop onnx= to export model= with random weights."
            )
        if cfg.image_size is not None:
            raise ValueError(
                f"image_size={cfg.image_size} applies only to an exported model; onnx={cfg.onnx!r} fixes its own "
                "input size, so drop image_size."
            )
        return
    if cfg.image_size is not None and (not is_int(cfg.image_size) or cfg.image_size < cfg.model.min_input_size):
        raise ValueError(
            f"image_size={cfg.image_size!r} is below model {cfg.model.name!r}'s minimum of "
            f"{cfg.model.min_input_size} pixels; set image_size={cfg.model.min_input_size} or more, or null."
        )
    if not is_int(cfg.num_classes) or cfg.num_classes < 1:
        raise ValueError(f"num_classes={cfg.num_classes!r} must be an integer >= 1.")
