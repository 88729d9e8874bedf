import json
import sys
from pathlib import Path

import pytorch_lightning as pl
import pytest
import timm
import torch

from sparsebench.config import expand_recipe_files
from sparsebench.export import onnx_sparsity
from sparsebench.prune import build_pruner, load_recipe, prune
from sparsebench.pruning.native import NativeGMP
from sparsebench.pruning.sparseml import import_sparseml
from sparsebench.train import build_components

from presets import FAST_PRUNE, TINY_MODEL

pytest.importorskip("sparseml", reason="SparseML 1.8 installs only on Python <= 3.11, x86-64")


class SparsityRecorder(pl.Callback):
    """Record every pruned layer's measured sparsity after each optimizer step."""

    def __init__(self, pruner) -> None:
        self.pruner = pruner
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        layers = self.pruner.measured()["layers"]
        self.history.append({name: layer["sparsity"] for name, layer in layers.items()})


def record_run(make_config, tmp_path, pruner_kind: str) -> list[dict[str, float]]:
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, f"pruner={pruner_kind}"])
    recipe = load_recipe(cfg)
    pl.seed_everything(0)
    module, datamodule = build_components(cfg, recipe, schedule_lr=pruner_kind == "native")
    pruner = build_pruner(cfg, recipe, tmp_path / pruner_kind)
    recorder = SparsityRecorder(pruner)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=pruner.total_epochs, limit_train_batches=4, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[pruner, recorder],
    )
    trainer.fit(module, datamodule=datamodule)
    return recorder.history


def test_pruners_agree_at_every_step(make_config, tmp_path):
    native = record_run(make_config, tmp_path, "native")
    sparseml = record_run(make_config, tmp_path, "sparseml")
    assert len(native) == len(sparseml) == 16
    assert native[0].keys() == sparseml[0].keys()
    for step, (ours, theirs) in enumerate(zip(native, sparseml)):
        for name in ours:
            assert abs(ours[name] - theirs[name]) <= 0.005, (step, name, ours[name], theirs[name])
    for name in native[-1]:
        assert native[-1][name] == pytest.approx(sparseml[-1][name], abs=1e-3), name
    rises = [max(step.values()) for step in native]
    assert rises[3] == 0.0
    assert 0.05 <= rises[4] < 0.62


def test_sparseml_prune_run(make_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = prune(make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "pruner=sparseml"]))
    run = tmp_path / "run"
    assert summary["pruner"] == "sparseml"
    assert summary["sparsity/checkpoint"] == pytest.approx(0.62, abs=0.005)
    assert summary["sparsity/onnx"] == pytest.approx(summary["sparsity/checkpoint"], abs=1e-9)

    manager = import_sparseml().ScheduledModifierManager.from_yaml(str(run / "sparseml_recipe.yaml"))
    kinds = sorted(type(modifier).__name__ for modifier in manager.iter_modifiers())
    assert kinds == ["EpochRangeModifier", "GMPruningModifier", "SetLearningRateModifier", "SetLearningRateModifier"]
    (gmp,) = [m for m in manager.iter_modifiers() if type(m).__name__ == "GMPruningModifier"]
    assert (gmp.start_epoch, gmp.end_epoch, gmp.final_sparsity) == (1.0, 3.0, 0.62)
    sparsity = json.loads((run / "sparsity.json").read_text())
    assert sparsity["pruner"] == "sparseml"
    assert (run / "sparseml" / "modifiers.log").exists()
    assert not (tmp_path / "sparse_logs").exists()


def test_hand_written_recipe_used_as_is(make_config, tmp_path):
    recipe_file = tmp_path / "mine.yaml"
    recipe_file.write_text(
        "version: 1.1.0\nmodifiers:\n"
        "  - !EpochRangeModifier\n    start_epoch: 0.0\n    end_epoch: 3.0\n"
        "  - !GMPruningModifier\n    params: ['layer3.0.conv2.weight', 'layer4.0.conv2.weight']\n"
        "    init_sparsity: 0.1\n    final_sparsity: 0.8\n    start_epoch: 0.0\n    end_epoch: 2.0\n"
        "    update_frequency: 0.5\n"
    )
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "pruner=sparseml", f"pruner.recipe_file={recipe_file}"])
    summary = prune(cfg)
    run = tmp_path / "run"
    assert (run / "sparseml_recipe.yaml").read_text() == recipe_file.read_text()
    layers = json.loads((run / "sparsity.json").read_text())["checkpoint"]["layers"]
    assert set(layers) == {"layer3.0.conv2", "layer4.0.conv2"}
    assert summary["sparsity/checkpoint"] == pytest.approx(0.8, abs=0.005)


def test_unparsable_recipe_names_file(make_config, tmp_path):
    recipe_file = tmp_path / "broken.yaml"
    recipe_file.write_text("modifiers:\n  - !NoSuchModifier\n    start_epoch: 0\n")
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "pruner=sparseml", f"pruner.recipe_file={recipe_file}"])
    with pytest.raises(ValueError, match="SparseML could not parse .*broken.yaml.*NoSuchModifier"):
        prune(cfg)


def test_missing_sparseml_explained(monkeypatch):
    for name in ("sparseml", "sparseml.pytorch", "sparseml.pytorch.optim"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pruner=sparseml needs SparseML 1.8.0.*pruner=native"):
        import_sparseml()


@pytest.mark.parametrize("pruner", ["native", "sparseml"])
def test_oneshot_exports_target_sparsity(make_config, tmp_path, pruner):
    # timm zero-initializes some BatchNorm scales, which would fold into all-zero convolutions.
    model = timm.create_model("test_resnet", num_classes=10)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
    torch.save(model.state_dict(), tmp_path / "dense.pt")
    cfg = make_config("prune", [*TINY_MODEL, "data.image_size=32", "logger=csv", "recipe=oneshot_85",
                                f"pruner={pruner}", "trainer.enable_progress_bar=false",
                                f"checkpoint={tmp_path / 'dense.pt'}"])
    summary = prune(cfg)
    assert summary["oneshot"] is True
    layers = json.loads((tmp_path / "run" / "sparsity.json").read_text())["checkpoint"]["layers"]
    onnx_report = onnx_sparsity(Path(summary["onnx"]["pruned"]["path"]), list(layers))
    assert onnx_report["overall"] == pytest.approx(0.85, abs=0.005)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_recipe_file_argument_expanded(tmp_path):
    assert expand_recipe_files(["model=resnet50", "recipe=gmp_62"]) == ["model=resnet50", "recipe=gmp_62"]
    expanded = expand_recipe_files(["recipe=/abs/a.yaml,/abs/b.yml"])
    assert expanded == ["recipe=file", "recipe.path=/abs/a.yaml,/abs/b.yml"]


def test_recipe_loaded_from_file(make_config, tmp_path):
    path = tmp_path / "suggested.yaml"
    path.write_text("name: suggested\nfinal_sparsity: 0.7\ngroups:\n  - name: late\n    patterns: ['layer4.*']\n")
    cfg = make_config("prune", ["recipe=file", f"recipe.path={path}", "recipe.finetuning_epochs=3"])
    recipe = load_recipe(cfg)
    assert recipe.name == "suggested"
    assert recipe.final_sparsity == 0.7
    assert recipe.finetuning_epochs == 3
    assert recipe.groups[0].patterns == ["layer4.*"]


def test_recipe_file_missing_named(make_config, tmp_path):
    cfg = make_config("prune", ["recipe=file", f"recipe.path={tmp_path / 'gone.yaml'}"])
    with pytest.raises(FileNotFoundError, match="recipe=.*gone.yaml.* does not exist"):
        load_recipe(cfg)


def test_native_and_sparseml_share_groups(make_config, tmp_path):
    cfg = make_config("prune", [*FAST_PRUNE, *TINY_MODEL, "pruner=sparseml"])
    recipe = load_recipe(cfg)
    module, _ = build_components(cfg, recipe)
    native, sparseml = NativeGMP(recipe), build_pruner(cfg, recipe, tmp_path)
    native.setup(None, module, "fit")
    sparseml.setup(None, module, "fit")
    assert native.members == sparseml.members
