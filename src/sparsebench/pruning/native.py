"""Native gradual magnitude pruning as a Lightning callback, with no reparametrization.

The callback keeps the masks itself and multiplies them into the weights, so checkpoints hold
plain ``weight`` tensors with real zeros (no ``weight_orig``/``weight_mask`` pairs) that any
other code can load.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from sparsebench.pruning.base import Pruner
from sparsebench.pruning.masks import magnitude_masks
from sparsebench.pruning.recipe import Recipe, ResolvedGroup
from sparsebench.pruning.schedule import Window, target_sparsity
from sparsebench.trainer import optimizer_steps_per_epoch

log = logging.getLogger(__name__)


class NativeGMP(Pruner):
    """Prune ``pl_module.model`` by magnitude following a recipe's cubic or linear schedule.

    When it acts:
      - ``on_train_start``: resolves layers, groups and windows in optimizer steps and
        re-applies masks restored from a checkpoint.
      - ``on_train_batch_start``: when a group's target for the current global step is above
        the sparsity it has, recomputes that group's masks from the weight magnitudes.
      - ``on_train_batch_end`` (after the optimizer step): zeros pruned weights again, since
        momentum and weight decay move them. Gradients are left alone, because this re-zeroing
        alone keeps the weights exact zeros and a second pass over the weights costs time.
      - ``on_train_epoch_end`` and ``on_train_end``: apply a window's final update when the
        window ends with the epoch (no batch follows to apply it), then log the sparsity.

    What it keeps (saved in checkpoints): the mask of every pruned layer, the sparsity applied
    to each group and the recipe, so a resumed run continues to the same final sparsity.
    """

    kind = "native"

    def __init__(self, recipe: Recipe, model_attribute: str = "model") -> None:
        super().__init__(recipe, model_attribute)
        self.groups: list[ResolvedGroup] = recipe.resolved_groups()
        self.masks: dict[str, torch.Tensor] = {}
        self.applied: dict[str, float] = {group.name: 0.0 for group in self.groups}
        self.windows: dict[str, Window] = {}
        self._weights: list[torch.Tensor] = []
        self._pruned: list[torch.Tensor] = []

    @property
    def state_key(self) -> str:
        return "NativeGMP"

    def apply_oneshot(self, pl_module: pl.LightningModule) -> None:
        """Prune every group to its final sparsity at once, without training."""
        self.setup(None, pl_module, "fit")
        self.windows = {group.name: Window(start=0, end=0, every=1) for group in self.groups}
        self._update(0)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps_per_epoch = optimizer_steps_per_epoch(trainer)
        self.windows = {
            group.name: Window.from_epochs(
                group.start_epoch, group.end_epoch, self.recipe.update_frequency, self.steps_per_epoch
            )
            for group in self.groups
        }
        for group in self.groups:
            window = self.windows[group.name]
            log.info(
                "group %r: %d layers, sparsity %.1f%% -> %.1f%% over steps %d-%d, update every %d steps",
                group.name, len(self.members[group.name]), 100 * group.init_sparsity,
                100 * group.final_sparsity, window.start, window.end, window.every,
            )
        self._move_masks_to(next(pl_module.parameters()).device)
        self._collect_masked_weights()
        self._apply_to_weights()
        self._update(trainer.global_step)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._update(trainer.global_step)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._apply_to_weights()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer.global_step, ended_only=True)
        super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._update(trainer.global_step, ended_only=True)
        super().on_train_end(trainer, pl_module)

    def targets(self, step: int) -> dict[str, float]:
        """Return each group's scheduled sparsity once ``step`` optimizer steps are done."""
        return {
            group.name: target_sparsity(
                step, self.windows[group.name], group.init_sparsity, group.final_sparsity,
                self.recipe.interpolation,
            )
            for group in self.groups
        }

    def applied_targets(self, step: int) -> dict[str, float]:
        # An update due at an epoch boundary is applied at the next batch, so the schedule's
        # value for ``step`` can be ahead of the masks. Report what the masks were made for.
        return dict(self.applied)

    def state_dict(self) -> dict[str, Any]:
        return {
            "masks": {name: mask.bool().cpu() for name, mask in self.masks.items()},
            "applied": dict(self.applied),
            "recipe": self.recipe.to_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict["recipe"] != self.recipe.to_dict():
            raise ValueError(
                f"the checkpoint was pruned with recipe {state_dict['recipe'].get('name')!r} "
                f"and other settings than recipe {self.recipe.name!r}; resume with the same "
                "recipe overrides, or start a new run from it with checkpoint=<path>."
            )
        self.masks = {name: mask.float() for name, mask in state_dict["masks"].items()}
        self.applied = dict(state_dict["applied"])

    def _update(self, step: int, ended_only: bool = False) -> None:
        """Recompute the masks of groups whose target rose; with ``ended_only``, only of ended windows."""
        changed = False
        for group_name, target in self.targets(step).items():
            if target <= self.applied[group_name] + 1e-12:
                continue
            if ended_only and step < self.windows[group_name].end:
                continue
            names = self.members[group_name]
            weights = {name: self.layers[name].weight for name in names}
            masks = magnitude_masks(weights, target, self.recipe.scope)
            self.masks.update(masks)
            self.applied[group_name] = target
            changed = True
            log.debug("step %d: group %r pruned to %.2f%%", step, group_name, 100 * target)
        if changed:
            self._collect_masked_weights()
            self._apply_to_weights()

    def _collect_masked_weights(self) -> None:
        names = [name for name in self.masks if name in self.layers]
        self._weights = [self.layers[name].weight for name in names]
        # masked_fill_ reads a 1-byte bool per weight where multiplying by a float mask reads
        # 4 bytes, and this runs after every optimizer step.
        self._pruned = [self.masks[name] == 0 for name in names]

    @torch.no_grad()
    def _apply_to_weights(self) -> None:
        for weight, pruned in zip(self._weights, self._pruned):
            weight.masked_fill_(pruned, 0.0)

    def _move_masks_to(self, device: torch.device) -> None:
        self.masks = {name: mask.to(device) for name, mask in self.masks.items()}
        unknown = sorted(set(self.masks) - set(self.layers))
        if unknown:
            raise ValueError(
                f"the checkpoint has masks for layers this model lacks: {unknown[:3]}; "
                "it was pruned with another model or recipe."
            )
