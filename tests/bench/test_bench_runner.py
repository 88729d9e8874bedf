"""Real measurements through the runner: figures, stored records, reruns and failures."""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig
from tqdm import tqdm

from bench_helpers import FAST_BENCH
from sparsebench.bench.onnx_file import source_model_name
from sparsebench.bench.runner import benchmark, describe_source, follow_worker
from sparsebench.bench.store import read_records


def results_lines(cfg: DictConfig) -> list[dict]:
    return [json.loads(line) for line in Path(cfg.results_file).read_text().splitlines()]


@pytest.fixture
def sparse_run(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict]) -> tuple[DictConfig, dict]:
    """One ORT measurement of the sparse test file at batch size 2, stored once."""
    path, _ = sparse_onnx
    cfg = bench_config([*FAST_BENCH, f"onnx={path}", "engine=ort", "batch_size=2"])
    return cfg, benchmark(cfg)


def test_record_figures_consistent(sparse_run: tuple[DictConfig, dict]) -> None:
    cfg, record = sparse_run
    assert record["status"] == "ok", record["error"]
    assert len(record["repeats"]) == cfg.bench.repeats
    for repeat in record["repeats"]:
        assert repeat["items"] == repeat["calls"] * 2
        assert repeat["throughput/items_per_s"] == pytest.approx(repeat["items"] / repeat["elapsed_s"])
        assert repeat["elapsed_s"] >= cfg.bench.duration_s
        # The timed calls fit inside the elapsed time of the repeat.
        assert repeat["calls"] * repeat["latency_ms/min"] / 1e3 <= repeat["elapsed_s"]
    throughputs = [repeat["throughput/items_per_s"] for repeat in record["repeats"]]
    assert record["metrics"]["throughput/items_per_s"] == pytest.approx(sum(throughputs) / len(throughputs))


def test_percentiles_ordered(sparse_run: tuple[DictConfig, dict]) -> None:
    _, record = sparse_run
    for figures in [*record["repeats"], record["metrics"]]:
        assert figures["latency_ms/min"] <= figures["latency_ms/median"]
        assert figures["latency_ms/median"] <= figures["latency_ms/p90"]
        assert figures["latency_ms/p90"] <= figures["latency_ms/p99"]
        assert figures["latency_ms/p99"] <= figures["latency_ms/max"]
        assert figures["latency_ms/min"] <= figures["latency_ms/mean"] <= figures["latency_ms/max"]


def test_stored_sparsity_equals_written(sparse_run: tuple[DictConfig, dict], sparse_onnx: tuple[Path, dict]) -> None:
    cfg, _ = sparse_run
    _, written = sparse_onnx
    stored = read_records([Path(cfg.results_file)])[-1]["model_facts"]
    assert stored["sparsity/layers"] == pytest.approx(written)
    numel = {"conv1": 8 * 3 * 9, "conv2": 16 * 8 * 9, "head": 10 * 16}
    zeros = sum(written[name] * numel[name] for name in numel)
    assert stored["sparsity/overall"] == pytest.approx(zeros / sum(numel.values()))
    assert stored["parameters"] == sum(numel.values()) + 8 + 16 + 10  # weights and biases
    assert stored["file/gzip_ratio"] == pytest.approx(stored["file/bytes"] / stored["file/gzip_bytes"])


def test_settings_read_back_stored(sparse_run: tuple[DictConfig, dict]) -> None:
    _, record = sparse_run
    settings = record["engine_settings"]
    assert settings["precision"] == "fp32"
    assert settings["threads"] == record["measurement"]["threads"]
    assert settings["streams"] == 1
    assert settings["optimization"] == "all"
    assert record["machine"]["libraries"]["onnxruntime"] == settings["version"]
    assert record["metrics"]["time_ms/compile"] > 0
    assert record["metrics"]["memory_mib/peak_rss"] >= record["metrics"]["memory_mib/rss_before_compile"]


def test_rerun_skips_unless_forced(sparse_run: tuple[DictConfig, dict], bench_config: Callable[..., DictConfig],
                                   sparse_onnx: tuple[Path, dict]) -> None:
    cfg, first = sparse_run
    again = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=ort", "batch_size=2"]))
    assert again["skipped"] is True
    assert again["key"] == first["key"]
    assert len(results_lines(cfg)) == 1

    forced = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=ort", "batch_size=2", "force=true"]))
    assert "skipped" not in forced
    assert len(results_lines(cfg)) == 2


def test_other_batch_is_new_key(sparse_run: tuple[DictConfig, dict], bench_config: Callable[..., DictConfig],
                                sparse_onnx: tuple[Path, dict]) -> None:
    _, first = sparse_run
    other = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=ort", "batch_size=1"]))
    assert other["key"] != first["key"]
    assert "skipped" not in other


def test_unsupported_precision_stored_failed(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict]) -> None:
    cfg = bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=ort", "precision=bf16"])
    record = benchmark(cfg)
    assert record["status"] == "failed"
    assert record["error"]["phase"] == "compile"
    assert "precision='bf16' is not supported by engine=ort" in record["error"]["message"]
    stored = read_records([Path(cfg.results_file)])
    assert [r["status"] for r in stored] == ["failed"]


def test_missing_engine_stored_failed(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A package that fails to import, first on the worker's path, simulates a missing install.
    fake = tmp_path / "fake_site" / "deepsparse"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no deepsparse build for this platform')\n")
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    record = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=deepsparse"]))
    assert record["status"] == "failed"
    assert record["error"]["type"] == "EngineUnavailableError"
    assert "pip install deepsparse==1.8.0" in record["error"]["message"]
    assert "Linux on x86-64" in record["error"]["message"]


def test_failed_measurement_retried(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict]) -> None:
    overrides = [*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=ort", "bench.timeout_s=0.01"]
    first = benchmark(bench_config(overrides))
    assert first["status"] == "failed"
    assert first["error"]["type"] == "TimeoutError"
    assert "raise bench.timeout_s" in first["error"]["message"]
    second = benchmark(bench_config(overrides))
    assert "skipped" not in second


def test_corrupt_file_stored_failed(bench_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07not a protobuf\xff\xff")
    cfg = bench_config([*FAST_BENCH, f"onnx={path}"])
    record = benchmark(cfg)
    assert record["status"] == "failed"
    assert record["error"]["phase"] == "inspect"
    assert "export it again" in record["error"]["message"]
    assert len(results_lines(cfg)) == 1


@pytest.fixture
def resnet50_run_file(sparse_onnx: tuple[Path, dict], tmp_path: Path) -> Path:
    """The sparse test file in a folder whose summary.json names resnet50 as its model."""
    path = tmp_path / "pruned.onnx"
    path.write_bytes(sparse_onnx[0].read_bytes())
    (tmp_path / "summary.json").write_text(json.dumps({"model": "resnet50", "recipe": "gmp_62"}))
    return path


def test_model_mismatch_on_command_line(bench_config: Callable[..., DictConfig], resnet50_run_file: Path) -> None:
    with pytest.raises(ValueError, match="drop model= or set model=resnet50"):
        benchmark(bench_config([*FAST_BENCH, f"onnx={resnet50_run_file}", "model=resnet10t"]))


def test_model_name_from_run_summary(bench_config: Callable[..., DictConfig], resnet50_run_file: Path) -> None:
    cfg = bench_config([*FAST_BENCH, f"onnx={resnet50_run_file}"])
    source = describe_source(cfg)
    assert cfg.model.name == "resnet10t"
    assert source["model"] == "resnet50"
    assert source["recipe"] == "gmp_62"


def test_folder_name_from_run_summary(resnet50_run_file: Path, sparse_onnx: tuple[Path, dict]) -> None:
    assert source_model_name(str(resnet50_run_file), "resnet10t") == "resnet50"
    assert source_model_name(str(sparse_onnx[0]), "resnet10t") == "resnet10t"
    assert source_model_name(None, "resnet10t") == "resnet10t"


@pytest.mark.parametrize("engine", ["ort", "openvino", "deepsparse"])
def test_each_engine_measures(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict], engine: str) -> None:
    record = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", f"engine={engine}", "threads=1"]))
    assert record["status"] == "ok", record["error"]
    assert record["engine_settings"]["precision"] == "fp32"
    assert record["engine_settings"]["threads"] == 1
    assert record["metrics"]["throughput/items_per_s"] > 0
    if engine == "deepsparse":
        assert 0 < record["engine_settings"]["fraction_of_supported_ops"] <= 1
        assert record["engine_settings"]["optimization"] == "scheduler=single_stream"


def test_deepsparse_leaves_file_unchanged(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict],
                                          tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    shutil.copyfile(sparse_onnx[0], path)
    written = path.read_bytes()
    record = benchmark(bench_config([*FAST_BENCH, f"onnx={path}", "engine=deepsparse", "batch_size=2", "bench.repeats=1"]))
    assert record["status"] == "ok", record["error"]
    assert path.read_bytes() == written


def test_async_streams(bench_config: Callable[..., DictConfig], sparse_onnx: tuple[Path, dict]) -> None:
    record = benchmark(bench_config([*FAST_BENCH, f"onnx={sparse_onnx[0]}", "engine=openvino",
                                     "scenario=async", "streams=2", "threads=2"]))
    assert record["status"] == "ok", record["error"]
    assert record["engine_settings"]["streams"] == 2
    for repeat in record["repeats"]:
        assert repeat["throughput/items_per_s"] == pytest.approx(repeat["items"] / repeat["elapsed_s"])


def test_exported_model_measured(bench_config: Callable[..., DictConfig]) -> None:
    cfg = bench_config([*FAST_BENCH, "image_size=32", "num_classes=10"])
    record = benchmark(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["measurement"]["source"]["kind"] == "export"
    assert record["measurement"]["image_size"] == 32
    assert (Path(cfg.paths.output_dir) / "model.onnx").is_file()
    # Random weights stand for a dense model: no convolution exported as all zeros.
    assert record["model_facts"]["sparsity/overall"] < 0.01


# The third line is the format of DeepSparse's own root handler: it must not count as a repeat.
WORKER_OUTPUT = (
    "[worker] compiled in 1.2 s, first inference 8.0 ms; warming up for 10 s\n"
    "[worker] repeat 1/2: 140.5 items/s\n"
    "2026-12-04 23:08:44 __main__     INFO     repeat 1/2: 140.5 items/s\n"
    "[worker] repeat 2/2: 138.0 items/s\n"
)


def test_worker_repeats_advance_bar(tmp_path: Path) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as worker_log, tqdm(total=2, file=io.StringIO()) as progress:
        follow_worker(io.StringIO(WORKER_OUTPUT), worker_log, progress, "ort model.onnx b1")
        assert progress.n == 2
        assert progress.postfix == "138.0 items/s"
    assert log_path.read_text() == WORKER_OUTPUT


def test_worker_repeats_logged_without_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (tmp_path / "worker.log").open("w") as worker_log, tqdm(total=2, disable=True) as progress:
        with caplog.at_level(logging.INFO, logger="sparsebench.bench.runner"):
            follow_worker(io.StringIO(WORKER_OUTPUT), worker_log, progress, "ort model.onnx b1")
    assert caplog.messages == ["ort model.onnx b1: repeat 1/2, 140.5 items/s", "ort model.onnx b1: repeat 2/2, 138.0 items/s"]
