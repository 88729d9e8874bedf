"""What every pruner callback shares: its layers and groups, and how it measures and logs sparsity."""

from __future__ import annotations

import pytorch_lightning as pl
from torch import nn

from sparsebench.pruning.masks import assign_groups, prunable_layers, sparsity_report
from sparsebench.pruning.recipe import PHASES, Recipe


class Pruner(pl.Callback):
    """Base class of the pruner callbacks; subclasses decide when and how masks change.

    ``setup`` resolves the recipe's layers and groups on ``pl_module.<model_attribute>``.
    ``on_train_epoch_end`` logs ``sparsity/overall`` (measured from the weights),
    ``sparsity/target``, ``sparsity/<group>``, ``sparsity_target/<group>`` and ``pruning/phase``.
    """

    kind = "base"

    def __init__(self, recipe: Recipe, model_attribute: str = "model") -> None:
        self.recipe = recipe
        self.model_attribute = model_attribute
        self.layers: dict[str, nn.Module] = {}
        self.members: dict[str, list[str]] = {}
        self.steps_per_epoch = 0

    @property
    def total_epochs(self) -> int:
        return self.recipe.total_epochs

    @property
    def pruning_start_epoch(self) -> float:
        return min(group.start_epoch for group in self.recipe.resolved_groups())

    def setup(self, trainer: pl.Trainer | None, pl_module: pl.LightningModule, stage: str) -> None:
        model = getattr(pl_module, self.model_attribute)
        self.layers = prunable_layers(model, self.recipe)
        self.members = assign_groups(self.layers, self.recipe.resolved_groups())

    def apply_oneshot(self, pl_module: pl.LightningModule) -> None:
        """Prune ``pl_module``'s model to the final sparsity at once, without training."""
        raise NotImplementedError

    def targets(self, step: int) -> dict[str, float]:
        """Return each group's target sparsity once ``step`` optimizer steps are done."""
        raise NotImplementedError

    def measured(self) -> dict:
        """Measure the sparsity of the grouped layers' weights, overall, per layer and per group."""
        grouped = [name for names in self.members.values() for name in names]
        report = sparsity_report({name: self.layers[name].weight for name in grouped})
        report["groups"] = {}
        for group, names in self.members.items():
            zeros = sum(report["layers"][n]["zeros"] for n in names)
            numel = sum(report["layers"][n]["numel"] for n in names)
            report["groups"][group] = zeros / numel if numel else 0.0
        return report

    def phase(self, step: int) -> str:
        """Return the recipe phase that optimizer step ``step`` belongs to."""
        return self.recipe.phase_at(step / max(self.steps_per_epoch, 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        measured = self.measured()
        targets = self.targets(trainer.global_step)
        numel = {g: sum(self.layers[n].weight.numel() for n in names) for g, names in self.members.items()}
        total = sum(numel.values()) or 1
        metrics = {
            "sparsity/overall": measured["overall"],
            "sparsity/target": sum(targets[g] * numel[g] for g in targets) / total,
            "pruning/phase": float(PHASES.index(self.phase(max(trainer.global_step - 1, 0)))),
        }
        for group in self.members:
            metrics[f"sparsity/{group}"] = measured["groups"][group]
            metrics[f"sparsity_target/{group}"] = targets[group]
        pl_module.log_dict(metrics, on_step=False, on_epoch=True)
