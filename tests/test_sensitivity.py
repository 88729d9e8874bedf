import json
import logging
import os
import subprocess
import sys

import pytest
import timm
import torch
from omegaconf import OmegaConf

from sparsebench.pruning.masks import assign_groups, prunable_layers, random_mask, zero_count
from sparsebench.pruning.recipe import Recipe
from sparsebench.prune import prune
from sparsebench.sensitivity import read_settings, sensitivity, sweep_layer
from sparsebench.sensitivity_recipe import max_safe_sparsity
from sparsebench.train import build_model_and_data
from sparsebench.module import ClassificationModule
from sparsebench.trainer import evaluate

from presets import FAST_PRUNE, ROOT, TINY_MODEL

# Two layers, two sparsities and two seeds on three batches: nine validation runs.
FAST_SENSITIVITY = [
    *TINY_MODEL,
    "data.image_size=32",
    "data.batch_size=64",
    "trainer.limit_val_batches=3",
    "logger=csv",
    "sensitivity.top_k=2",
    "sensitivity.sparsities=[0.5,0.9]",
    "sensitivity.seeds=[0,1]",
]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A state dict of test_resnet, so the run analyses given weights, as a user's would."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "dense.pt"
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), path)
    return path


def test_sensitivity_run_on_digits(make_config, tmp_path, checkpoint):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, f"checkpoint={checkpoint}"])
    report = sensitivity(cfg)
    run = tmp_path / "run"

    assert report == json.loads((run / "sensitivity.json").read_text())
    assert report["sparsities"] == [0.0, 0.5, 0.9]
    assert report["runs"] == ["seed=0", "seed=1"]
    assert list(report["layers"]) == ["layer4.0.conv1", "layer4.0.conv2"]
    assert sorted(report["ranking"]) == sorted(report["layers"])
    for name, layer in report["layers"].items():
        assert layer["numel"] == torch.Size(layer["shape"]).numel(), name
        for key in ("val_acc", "zeros"):
            assert [len(row) for row in layer[key]] == [3, 3], (name, key)
        for key in ("val_acc_mean", "val_acc_std", "drop_points"):
            assert len(layer[key]) == 3, (name, key)
        # Random masks on dense weights: exactly round(s * numel) zeros, whatever the seed.
        for row in layer["zeros"]:
            assert row == [round(s * layer["numel"]) for s in report["sparsities"]], name
        assert layer["max_safe_sparsity"] in report["sparsities"]
    for key in ("curves", "ranking"):
        assert (run / f"sensitivity_{key}.png").stat().st_size > 10_000
    assert (run / "csv" / "metrics.csv").exists()


def test_baseline_equals_unpruned_accuracy(make_config, checkpoint):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, f"checkpoint={checkpoint}", "sensitivity.top_k=1"])
    report = sensitivity(cfg)
    model, datamodule = build_model_and_data(cfg)
    unpruned = evaluate(ClassificationModule(model, datamodule.num_classes, optimizer=None), datamodule, cfg)

    assert report["baseline/val_acc"] == unpruned["val/acc"]
    for name, layer in report["layers"].items():
        assert [row[0] for row in layer["val_acc"]] == [unpruned["val/acc"]] * 2, name
        assert layer["drop_points"][0] == 0.0, name


def test_suggested_recipe_loads_and_matches(make_config, tmp_path, checkpoint):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, f"checkpoint={checkpoint}", "sensitivity.top_k=1",
                                      "sensitivity.method=magnitude", "sensitivity.default_sparsity=0.5"])
    report = sensitivity(cfg)
    assert report["runs"] == ["magnitude"]

    recipe = Recipe.from_config(OmegaConf.load(tmp_path / "run" / "suggested_recipe.yaml"))
    base = Recipe.from_config(cfg.recipe)
    assert [group.name for group in recipe.groups] == ["layer4.0.conv1", "default"]
    assert recipe.groups[0].final_sparsity == report["layers"]["layer4.0.conv1"]["max_safe_sparsity"]
    assert recipe.groups[1].final_sparsity == 0.5
    assert recipe.pruning_epochs == base.pruning_epochs

    model = timm.create_model("test_resnet", num_classes=10)
    assigned = assign_groups(prunable_layers(model, recipe), recipe.resolved_groups())
    assert assigned["layer4.0.conv1"] == ["layer4.0.conv1"]
    assert len(assigned["default"]) == report["prunable_layers"] - 1

    # prune.py takes the file as recipe=<path>, which becomes recipe=file recipe.path=<path>.
    path = tmp_path / "run" / "suggested_recipe.yaml"
    pruned = prune(make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "recipe=file", f"recipe.path={path}"]))
    weights = json.loads((tmp_path / "run" / "sparsity.json").read_text())["checkpoint"]
    assert pruned["recipe"] == recipe.name
    assert weights["layers"]["layer4.0.conv1"]["sparsity"] == pytest.approx(recipe.groups[0].final_sparsity, abs=1e-3)


def test_sweep_restores_layer_weights(make_config, checkpoint):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, f"checkpoint={checkpoint}", "sensitivity.seeds=[0]"])
    model, datamodule = build_model_and_data(cfg)
    module = ClassificationModule(model, datamodule.num_classes, optimizer=None)
    before = {key: value.clone() for key, value in model.state_dict().items()}

    entry = sweep_layer(module, datamodule, cfg, "conv1.3", read_settings(cfg.sensitivity), baseline=0.5)
    assert entry["zeros"] == [[0, 1152, 2074]]
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_default_sparsity_follows_recipe(make_config):
    cfg = make_config("sensitivity", ["recipe=gmp_85"])
    assert read_settings(cfg.sensitivity).default_sparsity == 0.85
    assert read_settings(cfg.sensitivity).sparsities[0] == 0.0


def test_random_mask_exact_and_seeded():
    weight = torch.randn(48, 48, 3, 3)
    for sparsity in (0.0, 0.1, 0.62, 0.999):
        mask = random_mask(weight, sparsity, torch.Generator().manual_seed(0))
        assert zero_count(mask) == round(sparsity * weight.numel()), sparsity
    first = random_mask(weight, 0.5, torch.Generator().manual_seed(1))
    again = random_mask(weight, 0.5, torch.Generator().manual_seed(1))
    other = random_mask(weight, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_max_safe_sparsity_stops_at_first_failure():
    sparsities = [0.0, 0.3, 0.6, 0.9]
    assert max_safe_sparsity(sparsities, [0.0, 0.5, 1.0, 8.0], 1.0) == 0.6
    assert max_safe_sparsity(sparsities, [0.0, 2.0, 0.1, 0.1], 1.0) == 0.0
    assert max_safe_sparsity(sparsities, [0.0, -0.5, 0.2, 0.9], 1.0) == 0.9


def test_missing_checkpoint_warns_and_runs(make_config, tmp_path, caplog):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, "sensitivity.top_k=1", "sensitivity.seeds=[0]"])
    with caplog.at_level(logging.WARNING, logger="sparsebench.sensitivity"):
        sensitivity(cfg)
    assert "checkpoint=null" in caplog.text
    assert "means little" in caplog.text
    assert (tmp_path / "run" / "sensitivity.json").exists()


def test_top_k_above_layer_count_rejected(make_config, tmp_path):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, "sensitivity.top_k=99"])
    with pytest.raises(ValueError, match=r"sensitivity.top_k=99 is larger than the 14 prunable layers.*top_k=14"):
        sensitivity(cfg)
    assert not (tmp_path / "run" / "sensitivity.json").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sensitivity.sparsities=[0.5,1.0]", r"sensitivity.sparsities contains 1.0, outside \[0, 1\)"),
        ("sensitivity.sparsities=[-0.1]", r"sensitivity.sparsities contains -0.1, outside \[0, 1\)"),
        ("sensitivity.sparsities=[]", r"sensitivity.sparsities=.* must be a non-empty list"),
        ("sensitivity.top_k=0", r"sensitivity.top_k=0 must be a whole number >= 1"),
        ("sensitivity.method=l1", r"sensitivity.method='l1' is unknown"),
        ("sensitivity.seeds=[]", r"sensitivity.seeds=.* must be a non-empty list"),
        ("sensitivity.tolerance_points=-1", r"sensitivity.tolerance_points=-1 must be >= 0"),
        ("sensitivity.default_sparsity=62", r"sensitivity.default_sparsity=62 is outside \[0, 1\)"),
    ],
)
def test_bad_settings_rejected(make_config, override, message):
    cfg = make_config("sensitivity", [*FAST_SENSITIVITY, override])
    with pytest.raises(ValueError, match=message):
        sensitivity(cfg)


def test_cli_writes_report(tmp_path, data_dir, checkpoint):
    command = [
        sys.executable, str(ROOT / "sensitivity.py"), *FAST_SENSITIVITY, "logger=none",
        "sensitivity.top_k=1", "sensitivity.sparsities=[0.5]", "sensitivity.seeds=[0]",
        f"checkpoint={checkpoint}", f"paths.data_dir={data_dir}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "sensitivity" / "runs").iterdir()
    for name in ("sensitivity.json", "suggested_recipe.yaml", "sensitivity_curves.png", "sensitivity_ranking.png"):
        assert (run / name).exists(), name
