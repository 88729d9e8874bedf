"""Figures of one timed repeat, and their aggregate over repeats as mean, std and 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LATENCY_KEYS = ("mean", "median", "p90", "p99", "min", "max", "std")
THROUGHPUT = "throughput/items_per_s"


def summarize_repeat(latencies_ns: Sequence[int], elapsed_ns: int, batch_size: int) -> dict[str, float]:
    """Return one repeat's throughput (items/s) and per-batch latency figures (ms).

    ``elapsed_ns`` is the wall time from the start of the first call to the end of the last
    one, so throughput is ``items / elapsed_s`` with ``items = calls * batch_size``.
    """
    if not latencies_ns:
        raise ValueError("a repeat needs at least one timed call")
    if elapsed_ns <= 0:
        raise ValueError(f"elapsed time must be positive, got {elapsed_ns} ns")
    latencies_ms = np.asarray(latencies_ns, dtype=np.float64) / 1e6
    items = len(latencies_ns) * batch_size
    elapsed_s = elapsed_ns / 1e9
    return {
        "calls": len(latencies_ns),
        "items": items,
        "elapsed_s": elapsed_s,
        THROUGHPUT: items / elapsed_s,
        "latency_ms/mean": float(latencies_ms.mean()),
        "latency_ms/median": float(np.percentile(latencies_ms, 50)),
        "latency_ms/p90": float(np.percentile(latencies_ms, 90)),
        "latency_ms/p99": float(np.percentile(latencies_ms, 99)),
        "latency_ms/min": float(latencies_ms.min()),
        "latency_ms/max": float(latencies_ms.max()),
        "latency_ms/std": float(latencies_ms.std(ddof=1)) if len(latencies_ms) > 1 else 0.0,
    }


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Return mean, sample std and the Student-t 95% interval of the mean of ``values``.

    With one value the std is 0 and the interval is unknown (None).
    """
    from scipy import stats  # imported here so the worker process never loads scipy

    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return {"mean": mean, "std": 0.0, "ci95_low": None, "ci95_high": None, "n": len(array)}
    std = float(array.std(ddof=1))
    half_width = float(stats.t.ppf(0.975, len(array) - 1)) * std / math.sqrt(len(array))
    return {"mean": mean, "std": std, "ci95_low": mean - half_width, "ci95_high": mean + half_width, "n": len(array)}


def aggregate(repeats: Sequence[dict[str, float]]) -> tuple[dict[str, float | None], dict[str, dict]]:
    """Aggregate repeat figures into flat metrics (means) and their spread per key.

    The flat metrics also carry ``throughput/items_per_s_std`` and its 95% interval bounds,
    because those are what a run comparison sorts and plots.
    """
    keys = [THROUGHPUT] + [f"latency_ms/{name}" for name in LATENCY_KEYS]
    spreads = {key: spread([repeat[key] for repeat in repeats]) for key in keys}
    metrics: dict[str, float | None] = {key: value["mean"] for key, value in spreads.items()}
    metrics[f"{THROUGHPUT}_std"] = spreads[THROUGHPUT]["std"]
    metrics[f"{THROUGHPUT}_ci95_low"] = spreads[THROUGHPUT]["ci95_low"]
    metrics[f"{THROUGHPUT}_ci95_high"] = spreads[THROUGHPUT]["ci95_high"]
    return metrics, spreads
