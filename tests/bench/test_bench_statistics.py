"""Repeat figures and their aggregate over repeats."""

from __future__ import annotations

import math

import pytest

from sparsebench.bench.statistics import aggregate, spread, summarize_repeat


def test_throughput_is_items_over_elapsed() -> None:
    latencies_ns = [2_000_000, 3_000_000, 5_000_000, 10_000_000]
    figures = summarize_repeat(latencies_ns, elapsed_ns=25_000_000, batch_size=8)
    assert figures["items"] == 32
    assert figures["elapsed_s"] == pytest.approx(0.025)
    assert figures["throughput/items_per_s"] == pytest.approx(32 / 0.025)


def test_latency_figures_in_ms() -> None:
    latencies_ns = [1_000_000 * value for value in range(1, 101)]
    figures = summarize_repeat(latencies_ns, elapsed_ns=sum(latencies_ns), batch_size=1)
    assert figures["latency_ms/min"] == pytest.approx(1.0)
    assert figures["latency_ms/max"] == pytest.approx(100.0)
    assert figures["latency_ms/mean"] == pytest.approx(50.5)
    assert figures["latency_ms/median"] == pytest.approx(50.5)
    assert figures["latency_ms/p90"] == pytest.approx(90.1)
    assert figures["latency_ms/p99"] == pytest.approx(99.01)


def test_empty_repeat_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        summarize_repeat([], elapsed_ns=1, batch_size=1)


def test_spread_interval_of_mean() -> None:
    result = spread([10.0, 12.0, 14.0])
    assert result["mean"] == pytest.approx(12.0)
    assert result["std"] == pytest.approx(2.0)
    # Student t with 2 degrees of freedom: 4.303 * 2 / sqrt(3).
    half_width = 4.302652729911275 * 2.0 / math.sqrt(3)
    assert result["ci95_low"] == pytest.approx(12.0 - half_width)
    assert result["ci95_high"] == pytest.approx(12.0 + half_width)


def test_spread_of_one_value() -> None:
    result = spread([5.0])
    assert result["std"] == 0.0
    assert result["ci95_low"] is None
    assert result["ci95_high"] is None


def test_aggregate_means_over_repeats() -> None:
    repeats = [
        summarize_repeat([1_000_000] * 10, elapsed_ns=10_000_000, batch_size=1),
        summarize_repeat([2_000_000] * 10, elapsed_ns=20_000_000, batch_size=1),
    ]
    metrics, spreads = aggregate(repeats)
    assert metrics["throughput/items_per_s"] == pytest.approx((1000 + 500) / 2)
    assert metrics["latency_ms/mean"] == pytest.approx(1.5)
    assert metrics["throughput/items_per_s_std"] == pytest.approx(spreads["throughput/items_per_s"]["std"])
    assert metrics["throughput/items_per_s_ci95_low"] < metrics["throughput/items_per_s"]
    assert metrics["throughput/items_per_s_ci95_high"] > metrics["throughput/items_per_s"]
