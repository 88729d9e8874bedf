from typing import Any

import pytorch_lightning as pl
import pytest
import torch

from sparsebench.pruning.native import NativeGMP
from sparsebench.pruning.recipe import Recipe
from sparsebench.train import build_components

from presets import FAST_PRUNE, TINY_MODEL


class MaskWatcher(pl.Callback):
    """Record, after every optimizer step, how many pruned weights are not zero."""

    def __init__(self, pruner: NativeGMP) -> None:
        self.pruner = pruner
        self.regrown: list[int] = []
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.steps += 1
        regrown = 0
        for name, mask in self.pruner.masks.items():
            weight = self.pruner.layers[name].weight
            regrown += int((weight[mask == 0] != 0).sum())
        self.regrown.append(regrown)


def fit_with_pruner(make_config, overrides):
    cfg = make_config("prune", FAST_PRUNE + TINY_MODEL + overrides)
    recipe = Recipe.from_config(cfg.recipe)
    module, datamodule = build_components(cfg, recipe)
    pruner = NativeGMP(recipe)
    watcher = MaskWatcher(pruner)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=recipe.total_epochs, limit_train_batches=4, limit_val_batches=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[pruner, watcher],
    )
    trainer.fit(module, datamodule=datamodule)
    return module, pruner, watcher, trainer


def test_masked_weights_stay_zero_with_momentum_and_decay(make_config):
    module, pruner, watcher, _ = fit_with_pruner(make_config, [
        "recipe.stabilization_epochs=0", "recipe.pruning_epochs=1", "recipe.finetuning_epochs=2",
        "optimizer.lr=0.1", "optimizer.momentum=0.9", "optimizer.weight_decay=0.01",
    ])
    assert watcher.steps == 12
    assert pruner.masks
    assert watcher.regrown == [0] * 12
    momentum = module.trainer.optimizers[0].state
    assert any(state.get("momentum_buffer") is not None for state in momentum.values())


def test_final_sparsity_exact_per_layer(make_config):
    _, pruner, _, _ = fit_with_pruner(make_config, ["recipe.final_sparsity=0.7"])
    for name in pruner.masks:
        weight = pruner.layers[name].weight
        assert int((weight == 0).sum()) == round(0.7 * weight.numel()), name
    assert pruner.measured()["overall"] == pytest.approx(0.7, abs=1e-4)


def test_sparsity_follows_schedule_each_epoch(make_config):
    _, pruner, _, trainer = fit_with_pruner(make_config, [])
    expected = pruner.targets(trainer.global_step)
    assert expected == {"all": 0.62}
    assert pruner.applied == expected


def test_global_scope_hits_overall_target(make_config):
    _, pruner, _, _ = fit_with_pruner(make_config, ["recipe.scope=global", "recipe.final_sparsity=0.8"])
    measured = pruner.measured()
    assert measured["overall"] == pytest.approx(0.8, abs=1e-4)
    per_layer = [layer["sparsity"] for layer in measured["layers"].values()]
    assert max(per_layer) - min(per_layer) > 0.05


def test_groups_reach_their_own_targets(make_config):
    _, pruner, _, _ = fit_with_pruner(make_config, [
        "+recipe.groups=[{name: late, patterns: ['layer4.*'], final_sparsity: 0.9, start_epoch: 2, end_epoch: 3},"
        "{name: rest, patterns: ['*'], final_sparsity: 0.5}]",
    ])
    measured = pruner.measured()["groups"]
    assert measured["late"] == pytest.approx(0.9, abs=1e-4)
    assert measured["rest"] == pytest.approx(0.5, abs=1e-4)


def test_pattern_matching_nothing_fails_before_training(make_config):
    with pytest.raises(ValueError, match="pattern 'blocks.\\*' matches no prunable layer"):
        fit_with_pruner(make_config, ["+recipe.groups=[{name: typo, patterns: ['blocks.*']}]"])


def test_state_round_trip_restores_masks(make_config):
    _, pruner, _, _ = fit_with_pruner(make_config, [])
    state = pruner.state_dict()
    assert all(mask.dtype == torch.bool for mask in state["masks"].values())
    fresh = NativeGMP(pruner.recipe)
    fresh.load_state_dict(state)
    assert fresh.applied == pruner.applied
    for name, mask in pruner.masks.items():
        assert torch.equal(fresh.masks[name], mask.cpu())


def test_state_from_other_recipe_rejected(make_config):
    _, pruner, _, _ = fit_with_pruner(make_config, [])
    other = Recipe(name="gmp_90", final_sparsity=0.9)
    with pytest.raises(ValueError, match="resume with the same recipe"):
        NativeGMP(other).load_state_dict(pruner.state_dict())
