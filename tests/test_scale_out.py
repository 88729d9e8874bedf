"""Scaling out through existing engines: Lightning DDP, Hydra's submitit launcher, W&B sweeps."""

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from presets import FAST_PRUNE, ROOT, TINY_MODEL

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))
# The metric each entry point logs to W&B's run summary (checked by the end-to-end tests).
LOGGED_METRICS = {"prune.py": "pruned/val_acc", "benchmark.py": "throughput/items_per_s"}


def run_prune(arguments: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, str(ROOT / "prune.py"), *arguments]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def sweep_points(path: Path) -> list[list[str]]:
    """Expand a grid sweep file into the Hydra overrides of each point."""
    spec = yaml.safe_load(path.read_text())
    names = list(spec["parameters"])
    values = [spec["parameters"][name]["values"] for name in names]
    return [[f"{name}={value}" for name, value in zip(names, point)] for point in itertools.product(*values)]


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_point_composes(make_config, path):
    spec = yaml.safe_load(path.read_text())
    assert (ROOT / spec["program"]).is_file()
    assert spec["metric"]["name"] == LOGGED_METRICS[spec["program"]]
    assert "${args_no_hyphens}" in spec["command"]
    points = sweep_points(path)
    assert points
    for overrides in points:
        cfg = make_config(Path(spec["program"]).stem, overrides)
        for override in overrides:
            key, value = override.split("=")
            selected = cfg[key].get("name", cfg[key].get("kind")) if hasattr(cfg[key], "get") else cfg[key]
            assert str(selected) == value, override


def test_unknown_sweep_parameter_caught(make_config, tmp_path):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        make_config("benchmark", ["enigne=ort"])


def test_too_many_devices_rejected(make_config):
    from sparsebench.config import validate_common

    cfg = make_config("prune", ["trainer=ddp_cpu", f"trainer.devices={(os.cpu_count() or 1) + 1}"])
    with pytest.raises(ValueError, match="trainer.devices=.* but this machine has .* CPU cores"):
        validate_common(cfg)


def test_ddp_prune_matches_single_process(tmp_path, data_dir):
    common = [*FAST_PRUNE, *TINY_MODEL, "logger=none", f"paths.data_dir={data_dir}"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    single = run_prune(common, tmp_path / "one")
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = run_prune([*common, "trainer=ddp_cpu", "trainer.devices=2", "trainer.enable_progress_bar=false"],
                    tmp_path / "two")
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    (single_run,) = (tmp_path / "one" / "outputs" / "prune" / "runs").iterdir()
    runs = list((tmp_path / "two" / "outputs" / "prune" / "runs").iterdir())
    assert len(runs) == 1, "ranks must share one run folder"
    ddp_report = json.loads((runs[0] / "sparsity.json").read_text())
    single_report = json.loads((single_run / "sparsity.json").read_text())
    assert ddp_report["ranks_agree"] is True
    assert ddp_report["checkpoint"]["overall"] == single_report["checkpoint"]["overall"]
    for name, layer in single_report["checkpoint"]["layers"].items():
        assert ddp_report["checkpoint"]["layers"][name]["zeros"] == layer["zeros"], name
    assert ddp_report["onnx"]["overall"] == pytest.approx(ddp_report["checkpoint"]["overall"], abs=1e-9)


def test_submitit_local_multirun(tmp_path, data_dir):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = run_prune(["-m", "hydra/launcher=submitit_local", *TINY_MODEL, "data.image_size=32", "logger=none",
                        "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}",
                        "recipe=oneshot_50,oneshot_85"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "outputs" / "prune" / "multiruns").glob("*/[0-9]_*"))
    assert len(jobs) == 2
    sparsities = sorted(json.loads((job / "summary.json").read_text())["sparsity/checkpoint"] for job in jobs)
    assert sparsities == [pytest.approx(0.5, abs=0.005), pytest.approx(0.85, abs=0.005)]
    assert list((tmp_path / "outputs" / "prune" / "multiruns").glob("*/.submitit/*"))


def test_slurm_launcher_without_slurm_explained(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if shutil.which("sbatch") and shutil.which("srun"):
        pytest.skip("this machine has SLURM")
    result = run_prune(["-m", "hydra/launcher=submitit_slurm", *TINY_MODEL, "logger=none", "recipe=oneshot_50"],
                       tmp_path, timeout=120)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "hydra/launcher=submitit_slurm needs SLURM's" in output
    assert "submitit_local" in output
    assert "Traceback" not in output
