"""The LightningModule: a timm classifier with its loss, accuracy, optimizer and LR schedule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from sparsebench.pruning.schedule import epochs_to_steps
from sparsebench.trainer import optimizer_steps_per_epoch

OptimizerFactory = Callable[..., torch.optim.Optimizer]


def step_decay(step: int, milestones: Sequence[int], gamma: float) -> float:
    """Return the LR factor after ``step`` optimizer steps: ``gamma`` per milestone passed."""
    return gamma ** sum(step >= milestone for milestone in milestones)


class ClassificationModule(pl.LightningModule):
    """Train ``model`` with cross-entropy; log ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``lr``.

    The LR starts at the optimizer's value and is multiplied by ``lr_gamma`` at each epoch in
    ``lr_milestones``. Milestones may be fractional, because the schedule steps per optimizer step.
    With ``lr_milestones=None`` no LR scheduler is configured, so a pruner may set the LR.
    With ``optimizer=None`` the module can only be validated, not trained.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None,
        lr_milestones: Sequence[float] | None = (),
        lr_gamma: float = 0.1,
        model_name: str = "",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"model_name": model_name, "num_classes": num_classes})
        self.model = model
        self.optimizer_factory = optimizer
        self.lr_milestones = None if lr_milestones is None else list(lr_milestones)
        self.lr_gamma = lr_gamma
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = self.loss(logits, labels)
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.model(images)
        self.val_acc(logits, labels)
        self.log("val/loss", self.loss(logits, labels), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's documented return forms
        if self.optimizer_factory is None:
            raise ValueError(
                "this ClassificationModule was built without an optimizer, for validation only; "
                "pass optimizer=... to train it."
            )
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.lr_milestones is None:
            return optimizer
        steps_per_epoch = optimizer_steps_per_epoch(self.trainer)
        milestones = [epochs_to_steps(epoch, steps_per_epoch) for epoch in self.lr_milestones]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(step_decay, milestones=milestones, gamma=self.lr_gamma)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
