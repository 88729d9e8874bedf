"""The report: tables with the right figures and one PNG per figure kind, from several machines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from PIL import Image

from sparsebench.bench.store import SCHEMA, append_record
from sparsebench.report import report


FULL_PROTOCOL = {"name": "default", "repeats": 5, "duration_s": 60, "warmup_s": 10}
QUICK_PROTOCOL = {"name": "quick", "repeats": 3, "duration_s": 2, "warmup_s": 0.5}


def fake_record(host: str, model: str, engine: str, sparsity: float, throughput: float, status: str = "ok",
                weights: str = "fp32", bench: dict | None = None) -> dict:
    """A stored record with only the fields the report reads."""
    record = {
        "schema": SCHEMA,
        "key": f"{host}|{model}|{sparsity}|{engine}|{weights}",
        "status": status,
        "error": None if status == "ok" else {"phase": "compile", "type": "RuntimeError", "message": "unsupported op"},
        "measurement": {
            "model": model, "engine": engine, "batch_size": 1, "image_size": 224, "scenario": "sync", "threads": 2, "precision": "fp32",
            "source": {"kind": "file", "sha256": f"{model}-{sparsity}-{weights}", "label": "pruned" if sparsity > 0.05 else "dense"},
            "bench": bench or FULL_PROTOCOL,
        },
        "machine": {
            "hostname": host, "cpu_model": f"CPU of {host}", "cpu_vendor": "GenuineIntel", "physical_cores": 4,
            "logical_cpus": 8, "caches": {"L2": "1024K"}, "max_clock_mhz": 3000.0,
            "isa": {"avx2": True, "avx512": host == "b"}, "libraries": {"onnxruntime": "1.26.0"},
        },
        "model_facts": {
            "parameters": 1_000_000, "sparsity/overall": sparsity, "sparsity/prunable": None,
            "file/bytes": 4 * 2**20, "file/gzip_bytes": 2 * 2**20, "file/gzip_ratio": 2.0, "weights/precision": weights,
        },
        "engine_settings": {"effective_precision": "unknown" if engine == "deepsparse" else weights},
        "accuracy": {"val/acc": 0.9 if weights == "fp32" else 0.89},
    }
    if status == "ok":
        record["metrics"] = {
            "throughput/items_per_s": throughput, "throughput/items_per_s_std": throughput / 50,
            "latency_ms/p99": 1000 / throughput, "cpu/other_processes_busy": 0.0,
        }
    return record


@pytest.fixture
def two_machine_results(tmp_path: Path) -> Path:
    folder = tmp_path / "outputs" / "benchmark"
    for host, scale in (("a", 1.0), ("b", 2.0)):
        path = folder / f"results-{host}.jsonl"
        for model, dense_throughput in (("resnet50", 100.0), ("mobilenet_v1", 400.0)):
            for engine, pruning_gain in (("ort", 1.0), ("openvino", 1.2), ("deepsparse", 3.0)):
                append_record(path, fake_record(host, model, engine, 0.0, scale * dense_throughput))
                append_record(path, fake_record(host, model, engine, 0.62, scale * dense_throughput * pruning_gain))
    append_record(folder / "results-a.jsonl", fake_record("a", "vgg19", "deepsparse", 0.0, 0.0, status="failed"))
    with (folder / "results-a.jsonl").open("a") as file:
        file.write('{"torn": ')
    return folder


def test_report_tables(bench_config: Callable[..., DictConfig], two_machine_results: Path) -> None:
    cfg = bench_config(task="report")
    text = report(cfg).read_text()
    assert "24 measurement(s) from 2 machine(s)" in text
    assert "1 failed" in text
    # Speed-up of pruning: pruned over dense throughput, per engine.
    assert "| CPU of b (b) | resnet50 | 62.0 | fp32 | deepsparse | 1 | 200.0 | 600.0 | 3.00x |" in text
    assert "| CPU of a (a) | mobilenet_v1 | 62.0 | fp32 | openvino | 1 | 400.0 | 480.0 | 1.20x |" in text
    # Throughput table, mean ± std.
    assert "| CPU of a (a) | resnet50 | 224 | dense | 0.0 | fp32 | 1 | sync, 2 thr | 100.0 ± 2.0 | 100.0 ± 2.0 | 100.0 ± 2.0 |" in text
    assert "| resnet50 | 224 | pruned | fp32 | 62.0 | 1.00 | 4.00 | 2.00 | 2.00 |" in text
    assert "shorter than the full protocol" not in text
    assert "| b | CPU of b | GenuineIntel | 4 / 8 | L2 1024K | 3000 | avx2, avx512 |" in text
    assert "| vgg19 | deepsparse | 1 | compile | RuntimeError: unsupported op |" in text


def test_short_protocol_flagged(bench_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    path = tmp_path / "outputs" / "benchmark" / "results.jsonl"
    append_record(path, fake_record("a", "resnet50", "ort", 0.0, 100.0))
    append_record(path, fake_record("a", "mobilenet_v1", "ort", 0.0, 400.0, bench=QUICK_PROTOCOL))
    text = report(bench_config(task="report")).read_text()
    flagged = text.split("## Measurements shorter than the full protocol")[1].split("## ")[0]
    assert "| CPU of a (a) | mobilenet_v1 | 224 | dense | ort | 1 | bench=quick, 3 x 2 s after 0.5 s warm-up |" in flagged
    assert "resnet50" not in flagged


def test_busy_machine_flagged(bench_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    path = tmp_path / "outputs" / "benchmark" / "results.jsonl"
    busy = fake_record("a", "mobilenet_v1", "ort", 0.0, 400.0)
    busy["metrics"]["cpu/other_processes_busy"] = 0.3
    append_record(path, busy)
    append_record(path, fake_record("a", "resnet50", "ort", 0.0, 100.0))
    text = report(bench_config(task="report")).read_text()
    flagged = text.split("## Measurements taken on a busy machine")[1].split("## ")[0]
    assert "| CPU of a (a) | mobilenet_v1 | 224 | dense | ort | 1 | 30 |" in flagged
    assert "resnet50" not in flagged


def test_report_figures(bench_config: Callable[..., DictConfig], two_machine_results: Path) -> None:
    path = report(bench_config(task="report"))
    figures = sorted((path.parent / "figures").glob("*.png"))
    names = [figure.name for figure in figures]
    assert "overview_across_cpus.png" in names
    assert sum(name.startswith("throughput_cpu_of") for name in names) == 2
    assert sum(name.startswith("throughput_vs_sparsity") for name in names) == 2
    for figure in figures:
        with Image.open(figure) as image:
            assert image.width > 400
            assert image.height > 300


def test_report_without_results(bench_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(FileNotFoundError, match="run `python benchmark.py` first"):
        report(bench_config(task="report"))


def test_report_int8_rows(bench_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    path = tmp_path / "outputs" / "benchmark" / "results.jsonl"
    for engine, int8_gain in (("ort", 2.0), ("openvino", 3.0), ("deepsparse", 1.0)):
        append_record(path, fake_record("a", "resnet10t", engine, 0.62, 100.0))
        append_record(path, fake_record("a", "resnet10t", engine, 0.62, 100.0 * int8_gain, weights="int8"))
        # Rounding gives the dense INT8 file a few zeros: it still pairs with the dense float file.
        append_record(path, fake_record("a", "resnet10t", engine, 0.0, 50.0))
        append_record(path, fake_record("a", "resnet10t", engine, 0.011, 50.0 * int8_gain, weights="int8"))
    text = report(bench_config(task="report")).read_text()
    assert "| CPU of a (a) | resnet10t | pruned | 62.0 / 62.0 | openvino | 1 | 100.0 | 300.0 | 3.00x | fp32 / int8 | 90.00 | 89.00 |" in text
    assert "| CPU of a (a) | resnet10t | pruned | 62.0 / 62.0 | deepsparse | 1 | 100.0 | 100.0 | 1.00x | unknown / unknown | 90.00 | 89.00 |" in text
    assert "| CPU of a (a) | resnet10t | dense | 0.0 / 1.1 | ort | 1 | 50.0 | 100.0 | 2.00x | fp32 / int8 | 90.00 | 89.00 |" in text
    assert "| CPU of a (a) | resnet10t | 224 | pruned | 62.0 | int8 | 1 | sync, 2 thr | 100.0 ± 2.0 | 300.0 ± 6.0 | 200.0 ± 4.0 |" in text
