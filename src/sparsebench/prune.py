"""Gradual magnitude pruning runs: ``prune(cfg)`` is what ``prune.py`` runs.

Flow: build model and data -> fit with the pruner callback (stabilization, pruning,
finetuning), or prune at once for a one-shot recipe -> validate the dense and the pruned model
-> export both to ONNX -> write ``sparsity.json`` and ``summary.json`` in the run folder.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from sparsebench.config import image_size, lr_milestones, resolve_paths, validate_common
from sparsebench.calibration import check_calibration_size
from sparsebench.export import export_and_verify
from sparsebench.int8 import import_ort_quantization, validate_quantization
from sparsebench.module import ClassificationModule
from sparsebench.pruning.base import Pruner
from sparsebench.pruning.native import NativeGMP
from sparsebench.pruning.recipe import Recipe
from sparsebench.pruning.snapshot import DenseSnapshot
from sparsebench.quantize import quantize_and_measure
from sparsebench.train import build_components, run_name, write_json
from sparsebench.trainer import build_loggers, build_trainer, evaluate, finish_loggers

log = logging.getLogger(__name__)

PRUNERS = ("native", "sparseml")
QUANTIZE_OPTIONS = (None, "int8")
DENSE_SNAPSHOT = "dense.pt"


def load_recipe(cfg: DictConfig) -> Recipe:
    """Build the recipe from its config group, or from ``recipe.path`` with the other keys on top."""
    section = OmegaConf.to_container(cfg.recipe, resolve=True)
    path = section.pop("path", None)
    if path is None:
        return Recipe.from_config(section)
    if not Path(path).is_file():
        raise FileNotFoundError(f"recipe={path!r} does not exist; give a recipe YAML file or a name from conf/recipe/.")
    overrides = {key: value for key, value in section.items() if value is not None}
    return Recipe.from_config(OmegaConf.merge(OmegaConf.load(path), overrides))


def build_pruner(cfg: DictConfig, recipe: Recipe, output_dir: Path) -> Pruner:
    """Create the pruner callback that ``cfg.pruner.kind`` names."""
    kind = cfg.pruner.kind
    if kind == "native":
        return NativeGMP(recipe)
    if kind == "sparseml":
        from sparsebench.pruning.sparseml import SparseMLPruner

        recipe_file = cfg.pruner.get("recipe_file")
        return SparseMLPruner(
            recipe, output_dir, lr=cfg.optimizer.lr, lr_milestones=lr_milestones(cfg, recipe),
            lr_gamma=cfg.lr_schedule.gamma, recipe_file=Path(recipe_file) if recipe_file else None,
        )
    raise ValueError(f"pruner={kind!r} is unknown; use one of {PRUNERS}.")


def resume_checkpoint(value: str | None) -> Path | None:
    """Return the checkpoint to resume from: a .ckpt file, or a run folder's last.ckpt."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={value!r}: {path} does not exist; give a run folder or its checkpoints/last.ckpt."
        )
    return path


def prune(cfg: DictConfig) -> dict[str, Any]:
    """Prune ``cfg.model`` with ``cfg.recipe``, export dense and pruned ONNX files, return the summary."""
    resolve_paths(cfg)
    validate_common(cfg)
    validate_quantize(cfg)
    recipe = load_recipe(cfg)
    resume = resume_checkpoint(cfg.resume)
    pl.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)

    # SparseML sets the LR itself from the translated recipe, so Lightning must not.
    own_lr = cfg.pruner.kind != "sparseml"
    module, datamodule = build_components(cfg, recipe, schedule_lr=own_lr)
    if cfg.quantize:
        check_calibration_size(datamodule, cfg.quantization)
    pruner = build_pruner(cfg, recipe, output_dir)
    # Resolve layers and groups now, so a recipe that does not fit the model fails before
    # any logger starts a run.
    pruner.setup(None, module, "fit")
    loggers = build_loggers(cfg, output_dir, run_name(cfg, recipe.name))
    if pruner.total_epochs == 0 and recipe.oneshot:
        dense_model, steps = prune_oneshot(module, pruner), 0
    else:
        dense_model, steps = prune_gradually(cfg, module, datamodule, pruner, loggers, output_dir, resume)
    if dense_model is None:
        # Under DistributedDataParallel only rank 0 measures, exports and writes reports.
        return {"rank": int(os.environ.get("LOCAL_RANK", 0))}

    summary = report(cfg, recipe, pruner, module, dense_model, datamodule, output_dir, steps)
    finish_loggers(loggers, flat_metrics(summary))
    print_summary(summary)
    return summary


def validate_quantize(cfg: DictConfig) -> None:
    """Check ``quantize`` and, when it is set, the quantization settings and tools, before any training."""
    if cfg.quantize not in QUANTIZE_OPTIONS:
        raise ValueError(f"quantize={cfg.quantize!r} is unknown; use quantize=int8, or quantize=null for float files only.")
    if cfg.quantize:
        validate_quantization(cfg.quantization)
        import_ort_quantization()


def prune_gradually(
    cfg: DictConfig, module: ClassificationModule, datamodule: pl.LightningDataModule, pruner: Pruner,
    loggers: list, output_dir: Path, resume: Path | None,
) -> tuple[torch.nn.Module | None, int]:
    """Fit through stabilization, pruning and finetuning; return the dense snapshot and the steps taken.

    Ranks other than 0 get no dense model, because only rank 0 reports.
    """
    snapshot_path = output_dir / "checkpoints" / DENSE_SNAPSHOT
    if resume is not None and not snapshot_path.exists() and (resume.parent / DENSE_SNAPSHOT).exists():
        snapshot_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(resume.parent / DENSE_SNAPSHOT, snapshot_path)

    trainer = build_trainer(
        cfg, output_dir, pruner.total_epochs,
        callbacks=[DenseSnapshot(snapshot_path, pruner.pruning_start_epoch), pruner], loggers=loggers,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Rank 0 measures alone from here; metrics must not wait for ranks that have left.
        torch.distributed.destroy_process_group()
    if not trainer.is_global_zero:
        return None, trainer.global_step

    dense_model = copy.deepcopy(module.model)
    dense_model.load_state_dict(torch.load(snapshot_path, map_location="cpu", weights_only=True))
    return dense_model, trainer.global_step


def prune_oneshot(module: ClassificationModule, pruner: Pruner) -> torch.nn.Module:
    """Prune to the final sparsity at once, with no training; return a copy of the dense model."""
    dense_model = copy.deepcopy(module.model)
    pruner.apply_oneshot(module)
    log.info("one-shot pruning with %s: no training", pruner.kind)
    return dense_model


def report(
    cfg: DictConfig, recipe: Recipe, pruner: Pruner, module: ClassificationModule, dense_model: torch.nn.Module,
    datamodule: pl.LightningDataModule, output_dir: Path, steps: int,
) -> dict[str, Any]:
    """Validate both models, export both to ONNX, and write sparsity.json and summary.json."""
    pruned_metrics = evaluate(module, datamodule, cfg)
    dense_module = ClassificationModule(dense_model, datamodule.num_classes, module.optimizer_factory)
    dense_metrics = evaluate(dense_module, datamodule, cfg)
    weights = pruner.measured()
    layer_names = list(weights["layers"])

    size = image_size(cfg)
    dense_onnx = export_and_verify(dense_model, output_dir / "dense.onnx", size, layer_names)
    pruned_onnx = export_and_verify(module.model, output_dir / "pruned.onnx", size, layer_names)
    check_onnx_matches_weights(weights, pruned_onnx["sparsity"])

    sparsity = {
        "pruner": pruner.kind,
        "ranks_agree": pruner.ranks_agree,
        "recipe": recipe.to_dict(),
        "target": pruner.targets(steps),
        "checkpoint": weights,
        "onnx": pruned_onnx["sparsity"],
    }
    int8 = None
    if cfg.quantize:
        int8 = quantize_and_measure(Path(pruned_onnx["path"]), output_dir / "pruned.int8.onnx", datamodule,
                                    cfg.quantization, layer_names)
        sparsity["int8"] = int8["sparsity"]["int8"]
        sparsity["int8_rounded_to_zero"] = int8["sparsity"]["rounded_to_zero"]
    write_json(output_dir / "sparsity.json", sparsity)
    summary = {
        "model": cfg.model.name,
        "timm_name": cfg.model.timm_name,
        "recipe": recipe.name,
        "pruner": pruner.kind,
        "oneshot": recipe.oneshot,
        "image_size": size,
        "dense/baseline": dense_baseline(cfg, recipe),
        "dense/val_acc": dense_metrics["val/acc"],
        "pruned/val_acc": pruned_metrics["val/acc"],
        "delta/val_acc_points": 100 * (pruned_metrics["val/acc"] - dense_metrics["val/acc"]),
        "sparsity/checkpoint": weights["overall"],
        "sparsity/onnx": pruned_onnx["sparsity"]["overall"],
        "onnx": {
            name: {key: facts[key] for key in ("path", "bytes", "gzip_bytes", "gzip_ratio")}
            for name, facts in (("dense", dense_onnx), ("pruned", pruned_onnx))
        },
        "checkpoint": None if recipe.oneshot else str(output_dir / "checkpoints" / "last.ckpt"),
        "sparsity_report": str(output_dir / "sparsity.json"),
    }
    if int8 is not None:
        add_int8(summary, int8)
    write_json(output_dir / "summary.json", summary)
    return summary


def add_int8(summary: dict[str, Any], int8: dict[str, Any]) -> None:
    """Add the INT8 file's top-1 and sparsity, next to the float file's top-1 through ONNX Runtime."""
    summary["pruned_onnx/val_acc"] = int8["float/val_acc"]
    summary["int8/val_acc"] = int8["int8/val_acc"]
    summary["delta/int8_val_acc_points"] = int8["delta/val_acc_points"]
    summary["sparsity/int8"] = int8["sparsity"]["int8"]["overall"]
    summary["quantization"] = int8["settings"]
    summary["onnx"]["pruned"]["val_acc"] = int8["float/val_acc"]
    summary["onnx"]["int8"] = {
        "path": int8["path"], "val_acc": int8["int8/val_acc"],
        **{key: int8[key] for key in ("bytes", "gzip_bytes", "gzip_ratio")},
    }


def dense_baseline(cfg: DictConfig, recipe: Recipe) -> str:
    """Say where the dense weights that pruning started from came from."""
    if cfg.checkpoint:
        return f"checkpoint {cfg.checkpoint}"
    if cfg.model.pretrained or cfg.model.pretrained_file:
        return "pretrained weights"
    if recipe.oneshot:
        return "random initialization"
    return f"random initialization trained for recipe.stabilization_epochs={recipe.stabilization_epochs:g}"


def check_onnx_matches_weights(weights: dict, onnx_report: dict) -> None:
    """Warn, naming the layers, where the ONNX file has other zeros than the trained weights.

    Folding a BatchNorm whose scale is exactly zero (timm zero-initializes some of them)
    zeros a whole convolution, so an untrained model can be sparser in ONNX than in torch.
    """
    differing = [
        name for name, layer in weights["layers"].items()
        if onnx_report["layers"][name]["zeros"] != layer["zeros"]
    ]
    if differing:
        log.warning(
            "ONNX sparsity %.2f%% differs from the weights' %.2f%% in %d layers, e.g. %s; "
            "a BatchNorm scale of exactly zero folds into an all-zero convolution",
            100 * onnx_report["overall"], 100 * weights["overall"], len(differing), differing[:3],
        )


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Return the summary's numbers with slash-separated keys, for W&B's run summary."""
    metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    for name, facts in summary["onnx"].items():
        for key in ("bytes", "gzip_bytes", "gzip_ratio"):
            metrics[f"onnx_{name}/{key}"] = facts[key]
    return metrics


def print_summary(summary: dict[str, Any]) -> None:
    """Log dense vs pruned accuracy, the sparsity and where the files are."""
    log.info(
        "%s %s (%s): val/acc dense %.2f%% -> pruned %.2f%% (%+.2f points); sparsity %.2f%% in "
        "the weights, %.2f%% in ONNX",
        summary["model"], summary["recipe"], summary["pruner"], 100 * summary["dense/val_acc"],
        100 * summary["pruned/val_acc"], summary["delta/val_acc_points"],
        100 * summary["sparsity/checkpoint"], 100 * summary["sparsity/onnx"],
    )
    if "random initialization" in summary["dense/baseline"]:
        log.warning(
            "the dense baseline is %s, so the accuracy delta does not measure the effect of pruning; "
            "give checkpoint=<trained dense checkpoint> for a meaningful one",
            summary["dense/baseline"],
        )
    log.info("pruned ONNX file: %s", summary["onnx"]["pruned"]["path"])
    if "int8" in summary["onnx"]:
        log.info(
            "INT8 ONNX file: %s; top-1 through ONNX Runtime float %.2f%% -> INT8 %.2f%%, INT8 sparsity %.2f%%",
            summary["onnx"]["int8"]["path"], 100 * summary["pruned_onnx/val_acc"], 100 * summary["int8/val_acc"],
            100 * summary["sparsity/int8"],
        )
    log.info("sparsity report: %s", summary["sparsity_report"])
    run_folder = Path(summary["sparsity_report"]).parent
    log.info("run folder: %s (benchmark its files with `python benchmark.py -m onnx=%s,%s`)",
             run_folder, run_folder / "dense.onnx", run_folder / "pruned.onnx")
