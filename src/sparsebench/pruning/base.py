"""Base class of the pruner callbacks: layers and groups, and the measuring and logging of sparsity."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
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
        self.ranks_agree: bool | None = None

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

    def applied_targets(self, step: int) -> dict[str, float]:
        """Return the target each group's current masks were made for, after ``step`` steps."""
        return self.targets(step)

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

    def check_ranks_agree(self, pl_module: pl.LightningModule) -> bool:
        """Compare every rank's zero count per layer; raise RuntimeError if ranks pruned differently.

        Under DistributedDataParallel the weights, and so the magnitude masks, must be the same
        on every rank. A mismatch means a rank trained on other weights, so the run stops.
        """
        zeros = [self.measured()["layers"][name]["zeros"] for names in self.members.values() for name in names]
        counts = torch.tensor(zeros, dtype=torch.float64, device=pl_module.device)
        gathered = pl_module.all_gather(counts)
        self.ranks_agree = bool(torch.all(gathered == gathered[0]))
        if not self.ranks_agree:
            raise RuntimeError("ranks hold different masks after pruning; their weights diverged")
        return self.ranks_agree

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            self.check_ranks_agree(pl_module)

    def phase(self, step: int) -> str:
        """Return the recipe phase that optimizer step ``step`` belongs to."""
        return self.recipe.phase_at(step / max(self.steps_per_epoch, 1))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        measured = self.measured()
        targets = self.applied_targets(trainer.global_step)
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
