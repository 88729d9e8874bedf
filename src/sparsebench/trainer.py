"""Build Lightning trainers and loggers from config, shared by every entry point."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, cast

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from sparsebench.pruning.recipe import PHASES

log = logging.getLogger(__name__)

LOGGER_KINDS = ("wandb", "csv", "none")


def optimizer_steps_per_epoch(trainer: pl.Trainer) -> int:
    """Return the optimizer steps in one epoch on this rank, loading the train data if needed."""
    _ = trainer.estimated_stepping_batches  # makes Lightning load the train dataloader
    batches = trainer.num_training_batches
    if batches == float("inf"):
        raise ValueError("the train dataloader has no length, so epochs cannot be converted to steps.")
    return max(1, math.ceil(batches / trainer.accumulate_grad_batches))


def build_loggers(cfg: DictConfig, output_dir: Path, run_name: str) -> list[Logger]:
    """Create the logger that ``cfg.logger.kind`` names, writing under ``output_dir``."""
    kind = cfg.logger.kind
    if kind == "none":
        return []
    if kind == "csv":
        return [CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    if kind == "wandb":
        wandb_cfg = cfg.logger
        return [
            WandbLogger(
                project=wandb_cfg.project,
                entity=wandb_cfg.entity,
                name=run_name,
                group=wandb_cfg.group,
                job_type=cfg.task_name,
                tags=list(wandb_cfg.tags),
                save_dir=str(output_dir),
                offline=wandb_cfg.mode == "offline",
                mode=wandb_cfg.mode,
                config=OmegaConf.to_container(cfg, resolve=True),
            )
        ]
    raise ValueError(f"logger.kind={kind!r} is unknown; use one of {LOGGER_KINDS}.")


def finish_loggers(loggers: list[Logger], summary: dict[str, Any] | None = None) -> None:
    """Write ``summary`` to W&B and close its run, so the next job of a multirun gets its own."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if summary:
                logger.experiment.summary.update(summary)
            logger.experiment.finish()


def build_trainer(
    cfg: DictConfig, output_dir: Path, max_epochs: int, callbacks: list[pl.Callback], loggers: list[Logger]
) -> pl.Trainer:
    """Create a Trainer from ``cfg.trainer`` that checkpoints every epoch to ``last.ckpt``."""
    # save_top_k=1 without a monitor keeps the latest epoch; Lightning writes last.ckpt only
    # alongside a top-k save, so save_top_k=0 would leave no checkpoint until training ends.
    checkpoint = ModelCheckpoint(
        dirpath=output_dir / "checkpoints", filename="epoch{epoch:03d}", auto_insert_metric_name=False,
        save_last=True, save_top_k=1, every_n_epochs=1,
    )
    options = cast(dict, OmegaConf.to_container(cfg.trainer, resolve=True))
    try:
        return pl.Trainer(
            **options,
            max_epochs=max_epochs,
            default_root_dir=str(output_dir),
            logger=loggers or False,
            callbacks=[*callbacks, EpochSummary(), checkpoint],
        )
    except TypeError as error:
        raise ValueError(f"invalid trainer config {options}: {error}") from error


class EpochSummary(pl.Callback):
    """Log one line per epoch with the phase, LR, loss, accuracy and sparsity, on rank 0."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if "pruning/phase" in metrics:
            parts.append(f"phase {PHASES[int(metrics['pruning/phase'])]}")
        for key, fmt in (("lr", "lr {:.2e}"), ("train/loss", "train/loss {:.4f}"),
                         ("val/loss", "val/loss {:.4f}"), ("val/acc", "val/acc {:.2%}"),
                         ("sparsity/target", "sparsity target {:.2%}"),
                         ("sparsity/overall", "measured {:.2%}")):
            if key in metrics:
                parts.append(fmt.format(metrics[key]))
        log.info(", ".join(parts))


def evaluate(module: pl.LightningModule, datamodule: pl.LightningDataModule, cfg: DictConfig) -> dict[str, float]:
    """Run the validation split once with a bare trainer (no loggers, no checkpoints)."""
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=cfg.trainer.get("enable_progress_bar", True),
        limit_val_batches=cfg.trainer.get("limit_val_batches", 1.0),
    )
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    return {key: float(value) for key, value in results[0].items()}
