import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch

from sparsebench.export import onnx_sparsity
from sparsebench.prune import prune
from sparsebench.train import train

from presets import FAST_PRUNE, ROOT, TINY_MODEL


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}


def test_prune_run_on_digits(make_config, tmp_path):
    cfg = make_config("prune", [*FAST_PRUNE, "logger=wandb"])
    summary = prune(cfg)
    run = tmp_path / "run"

    sparsity = json.loads((run / "sparsity.json").read_text())
    assert sparsity["pruner"] == "native"
    assert sparsity["checkpoint"]["overall"] == pytest.approx(0.62, abs=0.005)
    assert sparsity["onnx"]["overall"] == pytest.approx(sparsity["checkpoint"]["overall"], abs=1e-9)
    for name, layer in sparsity["checkpoint"]["layers"].items():
        assert sparsity["onnx"]["layers"][name]["zeros"] == layer["zeros"], name

    assert summary == json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["dense/val_acc"] <= 1.0
    assert 0.0 <= summary["pruned/val_acc"] <= 1.0
    assert summary["delta/val_acc_points"] == pytest.approx(
        100 * (summary["pruned/val_acc"] - summary["dense/val_acc"])
    )
    pruned, dense = summary["onnx"]["pruned"], summary["onnx"]["dense"]
    assert pruned["gzip_bytes"] < dense["gzip_bytes"]
    assert pruned["gzip_ratio"] == pytest.approx(pruned["bytes"] / pruned["gzip_bytes"])
    assert onnx_sparsity(Path(dense["path"]), list(sparsity["checkpoint"]["layers"]))["overall"] < 0.01
    assert list((run / "wandb").glob("offline-run-*"))


def test_checkpoint_has_plain_weights(make_config, tmp_path):
    prune(make_config("prune", FAST_PRUNE + TINY_MODEL))
    weights = load_weights(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert not [key for key in weights if key.endswith(("_orig", "_mask"))]
    model = timm.create_model("test_resnet", num_classes=10)
    model.load_state_dict(weights, strict=True)
    zeros = int((model.layer3[0].conv1.weight == 0).sum())
    assert zeros == round(0.62 * model.layer3[0].conv1.weight.numel())


def test_resume_mid_pruning_reaches_final_sparsity(make_config, tmp_path):
    # Stop after 8 of 16 steps: one stabilization epoch and half of the pruning window.
    first = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "+trainer.max_steps=8"])
    prune(first)
    run = tmp_path / "run"
    interrupted = load_weights(run / "checkpoints" / "last.ckpt")
    partial = json.loads((run / "sparsity.json").read_text())["checkpoint"]["overall"]
    assert 0.05 < partial < 0.62

    (tmp_path / "run").rename(tmp_path / "first")
    resumed = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, f"resume={tmp_path / 'first'}"])
    summary = prune(resumed)
    assert summary["sparsity/checkpoint"] == pytest.approx(0.62, abs=0.005)
    assert (tmp_path / "run" / "checkpoints" / "dense.pt").exists()
    final = load_weights(tmp_path / "run" / "checkpoints" / "last.ckpt")
    for name, weight in interrupted.items():
        if name.endswith(".weight") and weight.dim() > 1:
            assert torch.all(final[name][weight == 0] == 0), name


def test_resume_with_other_recipe_rejected(make_config, tmp_path):
    prune(make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "+trainer.max_steps=4"]))
    (tmp_path / "run").rename(tmp_path / "first")
    other = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "recipe=gmp_90", f"resume={tmp_path / 'first'}"])
    with pytest.raises(ValueError, match="resume with the same recipe"):
        prune(other)


def test_resume_from_missing_run_named(make_config, tmp_path):
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "resume=no/such/run"])
    with pytest.raises(FileNotFoundError, match="resume='.*no/such/run'"):
        prune(cfg)


def test_window_before_start_fails_before_training(make_config, tmp_path):
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "+recipe.groups=[{name: g, patterns: ['*'], start_epoch: 3, end_epoch: 2}]"])
    with pytest.raises(ValueError, match="ends at epoch 2.0 before it starts at epoch 3.0"):
        prune(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_run_on_digits(make_config, tmp_path):
    cfg = make_config("train", ["epochs=2", "trainer.enable_progress_bar=false", "logger=csv"])
    summary = train(cfg)
    assert summary["val/acc"] > 0.5
    assert (tmp_path / "run" / "dense.onnx").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert (tmp_path / "run" / "csv" / "metrics.csv").exists()


def cli(arguments: list[str], cwd: Path, data_dir: Path) -> list[str]:
    """Return the command line of prune.py with fast settings and the session's digits."""
    return [sys.executable, str(ROOT / "prune.py"), *FAST_PRUNE, *TINY_MODEL, "logger=none",
            f"paths.data_dir={data_dir}", *arguments]


def cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_cli_interrupted_run_resumes(tmp_path, data_dir):
    """SIGINT after the first epoch's checkpoint, then resume= the run folder."""
    longer = ["recipe.finetuning_epochs=12"]
    process = subprocess.Popen(cli(longer, tmp_path, data_dir), cwd=tmp_path, env=cli_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    checkpoints: list[Path] = []
    while not checkpoints and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        checkpoints = list((tmp_path / "outputs" / "prune" / "runs").glob("*/checkpoints/last.ckpt"))
    assert checkpoints, "no last.ckpt appeared while the run was going"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) != 0
    run = checkpoints[0].parents[1]
    assert not (run / "pruned.onnx").exists()

    result = subprocess.run(cli([*longer, f"resume={run}"], tmp_path, data_dir), cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = list((tmp_path / "outputs" / "prune" / "runs").glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["sparsity/checkpoint"] == pytest.approx(0.62, abs=0.005)
    assert summary["sparsity/onnx"] == pytest.approx(0.62, abs=0.005)


def test_cli_multirun_gives_each_job_a_folder(tmp_path, data_dir):
    command = [sys.executable, str(ROOT / "prune.py"), "-m", *TINY_MODEL, "data.image_size=32", "logger=none",
               "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}", "recipe=oneshot_50,oneshot_85"]
    result = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted((tmp_path / "outputs" / "prune" / "multiruns").glob("*/*/summary.json"))
    assert len(summaries) == 2
    sparsities = sorted(json.loads(path.read_text())["sparsity/checkpoint"] for path in summaries)
    assert sparsities == [pytest.approx(0.5, abs=0.005), pytest.approx(0.85, abs=0.005)]


def test_cli_failed_job_does_not_stop_sweep(tmp_path, data_dir):
    command = [sys.executable, str(ROOT / "prune.py"), "-m", *TINY_MODEL, "data.image_size=32", "logger=none",
               "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}", "recipe=oneshot_50",
               "recipe.final_sparsity=1.5,0.5", "recipe.init_sparsity=0.5"]
    result = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "recipe.final_sparsity=1.5 is outside [0, 1)" in result.stdout + result.stderr
    summaries = list((tmp_path / "outputs" / "prune" / "multiruns").glob("*/*/summary.json"))
    assert len(summaries) == 1
    assert json.loads(summaries[0].read_text())["sparsity/checkpoint"] == pytest.approx(0.5, abs=0.005)


def test_cli_input_error_is_one_line(tmp_path, data_dir):
    env = {key: value for key, value in cli_env().items() if key != "HYDRA_FULL_ERROR"}
    result = subprocess.run(cli(["recipe.final_sparsity=1.5"], tmp_path, data_dir), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "recipe.final_sparsity=1.5 is outside [0, 1)" in output
    assert "Traceback" not in output


def test_cli_with_relative_paths_and_chdir(tmp_path, data_dir):
    """prune.py from another folder, with Hydra changing directory and relative paths."""
    (tmp_path / "weights").mkdir()
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "weights" / "dense.pt")
    command = [
        sys.executable, str(ROOT / "prune.py"), *FAST_PRUNE, *TINY_MODEL, "logger=none",
        "checkpoint=weights/dense.pt", f"paths.data_dir={data_dir}", "hydra.job.chdir=true",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "prune" / "runs").iterdir()
    assert (run / "pruned.onnx").exists()
    assert "pruned ONNX file:" in result.stdout + result.stderr
