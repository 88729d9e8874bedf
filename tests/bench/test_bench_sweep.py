"""``benchmark.py`` as a user runs it, interrupted: nothing half-stored, no process left, reruns resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench_helpers import FAST_BENCH
from presets import ROOT

BENCHMARK = [sys.executable, str(ROOT / "benchmark.py")]
# A file exported at 32 px, so that each measurement is quick.
QUICK = ["image_size=32", *FAST_BENCH]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def stored_records(results: Path) -> list[dict]:
    if not results.is_file():
        return []
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_interrupted_sweep_resumes(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    command = [*BENCHMARK, "-m", *QUICK, "engine=ort,openvino", f"results_file={results}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while not stored_records(results) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert [record["measurement"]["engine"] for record in stored_records(results)] == ["ort"]
    # Ctrl-C reaches the whole process group: the sweep and its measurement process.
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) != 0
    assert len(stored_records(results)) == 1

    rerun = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = stored_records(results)
    assert [record["measurement"]["engine"] for record in records] == ["ort", "openvino"]
    assert [record["status"] for record in records] == ["ok", "ok"]
    assert "1 measurement(s) stored" in rerun.stdout + rerun.stderr
    assert "0 failed, 1 skipped as stored before" in rerun.stdout + rerun.stderr


def test_interrupted_runner_stops_measurement(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    command = [*BENCHMARK, *QUICK, "engine=ort", "bench.duration_s=60", f"results_file={results}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    workers: list[psutil.Process] = []
    while not workers and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
        workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "the measurement process never started"
    # SIGINT to the runner alone: its measurement process must not outlive it.
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) != 0
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []
    assert stored_records(results) == []
