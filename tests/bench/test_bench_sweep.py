"""``benchmark.py -m`` as a user runs it: a sweep interrupted by Ctrl-C resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_helpers import FAST_BENCH
from presets import ROOT

# Two measurements of a file exported at 32 px: ONNX Runtime first, then OpenVINO.
SWEEP = [sys.executable, str(ROOT / "benchmark.py"), "-m", "engine=ort,openvino", "image_size=32", *FAST_BENCH]


def stored_records(results: Path) -> list[dict]:
    if not results.is_file():
        return []
    return [json.loads(line) for line in results.read_text().splitlines()]


def test_interrupted_sweep_resumes(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    command = [*SWEEP, f"results_file={results}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while not stored_records(results) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert [record["measurement"]["engine"] for record in stored_records(results)] == ["ort"]
    # Ctrl-C reaches the whole process group: the sweep and its measurement process.
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=120) != 0
    assert len(stored_records(results)) == 1

    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    records = stored_records(results)
    assert [record["measurement"]["engine"] for record in records] == ["ort", "openvino"]
    assert [record["status"] for record in records] == ["ok", "ok"]
    assert "skipped" in rerun.stdout + rerun.stderr
