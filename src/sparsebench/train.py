"""Dense training of a timm classifier: ``train(cfg)`` is what ``train.py`` runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import timm.data
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from sparsebench.config import image_size, lr_milestones, resolve_paths, validate_common
from sparsebench.data import ImageDataModule, build_datamodule
from sparsebench.export import export_and_verify
from sparsebench.models import create_model, load_checkpoint_weights
from sparsebench.module import ClassificationModule
from sparsebench.pruning.recipe import Recipe
from sparsebench.trainer import build_loggers, build_trainer, evaluate, finish_loggers

log = logging.getLogger(__name__)


def build_model_and_data(cfg: DictConfig) -> tuple[torch.nn.Module, ImageDataModule]:
    """Create the timm model and the data module with its transforms, loading ``cfg.checkpoint`` if set."""
    datamodule = build_datamodule(cfg.data)
    model = create_model(cfg.model, datamodule.num_classes)
    if cfg.checkpoint:
        load_checkpoint_weights(model, Path(cfg.checkpoint), cfg.model.name)
    datamodule.configure_transforms(timm.data.resolve_model_data_config(model), image_size(cfg))
    return model, datamodule


def build_components(
    cfg: DictConfig, recipe: Recipe | None = None, schedule_lr: bool = True
) -> tuple[ClassificationModule, ImageDataModule]:
    """Create the data module and the LightningModule, loading ``cfg.checkpoint`` if set.

    With ``schedule_lr=False`` the module keeps the optimizer's LR, for pruners that set it.
    """
    model, datamodule = build_model_and_data(cfg)
    module = ClassificationModule(
        model,
        num_classes=datamodule.num_classes,
        optimizer=instantiate(cfg.optimizer),
        lr_milestones=lr_milestones(cfg, recipe) if schedule_lr else None,
        lr_gamma=cfg.lr_schedule.gamma,
        model_name=cfg.model.name,
    )
    return module, datamodule


def run_name(cfg: DictConfig, recipe_name: str | None = None) -> str:
    """Return the W&B run name: task, model and, for prune runs, recipe and pruner."""
    parts = [cfg.task_name, cfg.model.name]
    if recipe_name is not None:
        parts += [recipe_name, cfg.pruner.kind]
    return "-".join(parts)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file, so a killed run never leaves half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    partial.replace(path)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train ``cfg.model`` densely on ``cfg.data``, export it to ONNX and return its metrics."""
    resolve_paths(cfg)
    validate_common(cfg)
    if cfg.epochs < 1:
        raise ValueError(f"epochs={cfg.epochs} must be >= 1.")
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    module, datamodule = build_components(cfg)
    loggers = build_loggers(cfg, output_dir, run_name(cfg))
    trainer = build_trainer(cfg, output_dir, cfg.epochs, callbacks=[], loggers=loggers)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.resume)

    metrics = evaluate(module, datamodule, cfg)
    summary: dict[str, Any] = {
        "model": cfg.model.name,
        "timm_name": cfg.model.timm_name,
        "val/acc": metrics["val/acc"],
        "checkpoint": str(output_dir / "checkpoints" / "last.ckpt"),
    }
    if cfg.export:
        facts = export_and_verify(module.model, output_dir / "dense.onnx", image_size(cfg))
        summary["onnx"] = {key: facts[key] for key in ("path", "bytes", "gzip_bytes", "gzip_ratio")}
    write_json(output_dir / "summary.json", summary)
    finish_loggers(loggers, {"val/acc": summary["val/acc"]})
    log.info("val/acc %.2f%%; checkpoint %s", 100 * summary["val/acc"], summary["checkpoint"])
    return summary
