import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from sparsebench.export import onnx_sparsity
from sparsebench.prune import prune
from sparsebench.train import train

from conftest import FAST_PRUNE, ROOT, TINY_MODEL


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
