"""Keep the dense weights that pruning starts from, as the baseline of a prune run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from sparsebench.pruning.schedule import epochs_to_steps
from sparsebench.trainer import optimizer_steps_per_epoch

log = logging.getLogger(__name__)


class DenseSnapshot(pl.Callback):
    """Save ``pl_module.model``'s weights when the global step reaches the start of pruning.

    It checks in ``on_train_start``, ``on_train_batch_start`` and ``on_train_epoch_end``, the
    hooks in which a pruner may apply its first mask, and in ``on_train_end`` if pruning never
    started. List it before the pruner callback so that it runs first in each hook and saves
    the unmasked weights. It writes the file once: a resumed run keeps it.
    """

    def __init__(self, path: Path, pruning_start_epoch: float, model_attribute: str = "model") -> None:
        self.path = path
        self.pruning_start_epoch = pruning_start_epoch
        self.model_attribute = model_attribute
        self.start_step = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_step = epochs_to_steps(self.pruning_start_epoch, optimizer_steps_per_epoch(trainer))
        if not self.path.exists() and trainer.global_step > self.start_step:
            log.warning(
                "resumed at step %d, after pruning started at step %d, without %s: "
                "the dense baseline cannot be reported",
                trainer.global_step, self.start_step, self.path,
            )
        self._save_at_start(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._save_at_start(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save_at_start(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step <= self.start_step:
            self._save(trainer, pl_module)

    def _save_at_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step == self.start_step:
            self._save(trainer, pl_module)

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path.exists() or not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in getattr(pl_module, self.model_attribute).state_dict().items()}
        partial = self.path.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.path)
        log.info("saved the dense weights at step %d to %s", trainer.global_step, self.path)
