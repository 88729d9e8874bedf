"""Layer sensitivity analysis: ``sensitivity(cfg)`` is what ``sensitivity.py`` runs.

Flow: build the model and its validation data -> rank the prunable layers by weight count and
keep the top k -> mask each layer alone at each sparsity and seed, validate, restore its
weights -> write ``sensitivity.json``, two figures and ``suggested_recipe.yaml`` in the run
folder. Nothing is trained, so each point shows what pruning one layer costs before finetuning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import Logger, WandbLogger
from torch import nn

from sparsebench.config import image_size, resolve_paths, validate_model_and_data
from sparsebench.data import ImageDataModule
from sparsebench.module import ClassificationModule
from sparsebench.pruning.masks import magnitude_masks, prunable_layers, random_mask, zero_count
from sparsebench.prune import load_recipe
from sparsebench.pruning.recipe import Recipe
from sparsebench.sensitivity_plots import plot_curves, plot_ranking
from sparsebench.sensitivity_recipe import max_safe_sparsity, suggest_recipe, write_recipe
from sparsebench.train import build_model_and_data, write_json
from sparsebench.trainer import build_loggers, evaluate, finish_loggers

log = logging.getLogger(__name__)

METHODS = ("random", "magnitude")


@dataclass
class SensitivitySettings:
    """The validated ``sensitivity`` config section; ``sparsities`` is the curve, 0.0 first."""

    top_k: int | None
    sparsities: list[float]
    method: str
    seeds: list[int]
    tolerance_points: float
    default_sparsity: float

    @property
    def runs(self) -> list[str]:
        """Labels of the masks drawn per layer and sparsity: one per seed, or one magnitude mask."""
        if self.method == "magnitude":
            return ["magnitude"]
        return [f"seed={seed}" for seed in self.seeds]


def read_settings(section: DictConfig) -> SensitivitySettings:
    """Check the ``sensitivity`` section, raising ValueError naming the key, the value and the fix."""
    top_k = section.top_k
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(
            f"sensitivity.top_k={top_k!r} must be a whole number >= 1, or null to analyse every "
            "prunable layer."
        )

    sparsities = section.sparsities
    if not isinstance(sparsities, (list, ListConfig)) or not sparsities:
        raise ValueError(
            f"sensitivity.sparsities={sparsities!r} must be a non-empty list, e.g. [0.1, 0.5, 0.9]."
        )
    for value in sparsities:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(
                f"sensitivity.sparsities contains {value!r}, outside [0, 1); sparsity is the "
                "fraction of zero weights, so write 90% as 0.9."
            )

    method = section.method
    if method not in METHODS:
        raise ValueError(f"sensitivity.method={method!r} is unknown; use one of {METHODS}.")
    seeds = section.seeds
    if method == "random" and (
        not isinstance(seeds, (list, ListConfig)) or not seeds
        or any(isinstance(seed, bool) or not isinstance(seed, int) for seed in seeds)
    ):
        raise ValueError(
            f"sensitivity.seeds={seeds!r} must be a non-empty list of whole numbers for "
            "sensitivity.method=random, e.g. [0, 1, 2]."
        )

    tolerance = section.tolerance_points
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(
            f"sensitivity.tolerance_points={tolerance!r} must be >= 0 percentage points of "
            "val/acc, e.g. 1.0."
        )
    default = section.default_sparsity
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not 0.0 <= default < 1.0:
        raise ValueError(
            f"sensitivity.default_sparsity={default!r} is outside [0, 1); it is the sparsity "
            "suggested for the layers not analysed, e.g. 0.62."
        )

    return SensitivitySettings(
        top_k=top_k,
        sparsities=sorted({0.0, *(float(value) for value in sparsities)}),
        method=method,
        seeds=[int(seed) for seed in seeds] if method == "random" else [],
        tolerance_points=float(tolerance),
        default_sparsity=float(default),
    )


def largest_layers(layers: dict[str, nn.Module], top_k: int | None, model_name: str) -> list[str]:
    """Return the names of the ``top_k`` layers with the most weights, largest first.

    Layers of equal size keep their order in the model. Raises ValueError when ``top_k``
    exceeds the number of prunable layers, since a smaller analysis than requested would
    pass unnoticed in a sweep.
    """
    if top_k is not None and top_k > len(layers):
        raise ValueError(
            f"sensitivity.top_k={top_k} is larger than the {len(layers)} prunable layers of "
            f"model {model_name!r} (the recipe's prune_first_conv, prune_classifier and exclude "
            f"decide which are prunable); set sensitivity.top_k={len(layers)} or less, or "
            "sensitivity.top_k=null to analyse all of them."
        )
    ranked = sorted(layers, key=lambda name: -layers[name].weight.numel())
    return ranked if top_k is None else ranked[:top_k]


def layer_mask(weight: torch.Tensor, sparsity: float, method: str, seed: int | None) -> torch.Tensor:
    """Return the mask that prunes one weight tensor to ``sparsity`` by ``method``."""
    if method == "magnitude":
        return magnitude_masks({"weight": weight}, sparsity, scope="layer")["weight"]
    generator = torch.Generator().manual_seed(seed)
    return random_mask(weight, sparsity, generator)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's info lines (accelerator, tips), printed for every Trainer, inside the block."""
    lightning_log = logging.getLogger("pytorch_lightning")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lightning_log.setLevel(level)


def sweep_layer(
    module: ClassificationModule,
    datamodule: ImageDataModule,
    cfg: DictConfig,
    name: str,
    settings: SensitivitySettings,
    baseline: float,
) -> dict[str, Any]:
    """Validate the model with one layer masked at every sparsity and seed, then restore the layer.

    The 0.0 point is the baseline, not validated again. Returns the layer's entry of
    ``sensitivity.json``: val/acc and measured zeros, one row per run and one column per sparsity.
    """
    weight = dict(module.model.named_modules())[name].weight
    original = weight.detach().clone()
    seeds: list[int | None] = list(settings.seeds) if settings.method == "random" else [None]
    accuracy = np.full((len(seeds), len(settings.sparsities)), baseline)
    zeros = np.full((len(seeds), len(settings.sparsities)), zero_count(original), dtype=np.int64)

    try:
        for row, seed in enumerate(seeds):
            for column, sparsity in enumerate(settings.sparsities):
                if sparsity == 0.0:
                    continue
                with torch.no_grad():
                    weight.copy_(original * layer_mask(original, sparsity, settings.method, seed))
                zeros[row, column] = zero_count(weight)
                accuracy[row, column] = evaluate(module, datamodule, cfg)["val/acc"]
    finally:
        with torch.no_grad():
            weight.copy_(original)

    mean = accuracy.mean(axis=0)
    drop_points = 100.0 * (baseline - mean)
    return {
        "numel": int(original.numel()),
        "shape": list(original.shape),
        "val_acc": accuracy.tolist(),
        "val_acc_mean": mean.tolist(),
        "val_acc_std": accuracy.std(axis=0).tolist(),
        "drop_points": drop_points.tolist(),
        "zeros": zeros.tolist(),
        "max_safe_sparsity": max_safe_sparsity(settings.sparsities, drop_points, settings.tolerance_points),
    }


def sensitivity(cfg: DictConfig) -> dict[str, Any]:
    """Measure how val/acc falls as each of the largest layers is pruned alone; write the report.

    Returns the content of ``sensitivity.json``.
    """
    resolve_paths(cfg)
    validate_model_and_data(cfg)
    settings = read_settings(cfg.sensitivity)
    base_recipe = load_recipe(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.checkpoint:
        log.warning(
            "checkpoint=null: %s has no weights trained on this data (at most timm's pretrained "
            "backbone under a new classifier), so its sensitivity means little; pass "
            "checkpoint=path/to/last.ckpt", cfg.model.name,
        )
    if settings.method == "magnitude" and cfg.sensitivity.seeds:
        log.info("sensitivity.method=magnitude draws no random masks, so sensitivity.seeds is not used")

    # 1. Build the model and pick the largest prunable layers.
    model, datamodule = build_model_and_data(cfg)
    module = ClassificationModule(model, datamodule.num_classes, optimizer=None, model_name=cfg.model.name)
    layers = prunable_layers(model, base_recipe)
    names = largest_layers(layers, settings.top_k, cfg.model.name)
    runs = len(settings.runs) * (len(settings.sparsities) - 1)
    log.info(
        "analysing %d of %d prunable layers of %s: %d sparsities x %d %s masks = %d validation runs per layer",
        len(names), len(layers), cfg.model.name, len(settings.sparsities) - 1, len(settings.runs),
        settings.method, runs,
    )

    # 2. Validate the unpruned model, then each layer masked alone.
    with quiet_lightning():
        baseline = evaluate(module, datamodule, cfg)["val/acc"]
        log.info("baseline val/acc %.2f%% at 0%% sparsity", 100 * baseline)
        results = {}
        for index, name in enumerate(names, start=1):
            started = time.perf_counter()
            results[name] = sweep_layer(module, datamodule, cfg, name, settings, baseline)
            seconds = time.perf_counter() - started
            entry = results[name]
            log.info(
                "layer %d/%d %s (%s weights): val/acc %.2f%% at %.0f%% sparsity, max safe sparsity "
                "%.0f%%; %d runs in %.1f s (%.2f s/run)",
                index, len(names), name, f"{entry['numel']:,}", 100 * entry["val_acc_mean"][-1],
                100 * settings.sparsities[-1], 100 * entry["max_safe_sparsity"], runs, seconds,
                seconds / max(runs, 1),
            )

    # 3. Suggest a recipe and write the report.
    sizes = {name: int(layer.weight.numel()) for name, layer in layers.items()}
    safe = {name: entry["max_safe_sparsity"] for name, entry in results.items()}
    recipe = suggest_recipe(base_recipe, safe, settings.default_sparsity, f"sensitivity_{cfg.model.name}")
    expected = (
        sum(safe.get(name, settings.default_sparsity) * size for name, size in sizes.items())
        / sum(sizes.values())
    )
    recipe_path = output_dir / "suggested_recipe.yaml"
    write_recipe(recipe, recipe_path, header=[
        f"Suggested by sensitivity.py for {cfg.model.name} from checkpoint={cfg.checkpoint or 'null'}.",
        f"Each analysed layer gets the highest sparsity that cost at most {settings.tolerance_points:.1f} "
        "points of mean val/acc,",
        f"the other prunable layers {100 * settings.default_sparsity:.0f}%; "
        f"{100 * expected:.1f}% of the prunable weights in all.",
    ])
    report = {
        "model": cfg.model.name,
        "timm_name": cfg.model.timm_name,
        "checkpoint": cfg.checkpoint,
        "image_size": image_size(cfg),
        "method": settings.method,
        "seeds": settings.seeds,
        "runs": settings.runs,
        "sparsities": settings.sparsities,
        "tolerance_points": settings.tolerance_points,
        "default_sparsity": settings.default_sparsity,
        "baseline/val_acc": baseline,
        "prunable_layers": len(layers),
        "layers": results,
        "ranking": ranking(results),
        "suggested_recipe": str(recipe_path),
        "suggested_sparsity/overall": expected,
        "figures": {"curves": str(output_dir / "sensitivity_curves.png"),
                    "ranking": str(output_dir / "sensitivity_ranking.png")},
    }
    plot_curves(report, Path(report["figures"]["curves"]))
    plot_ranking(report, Path(report["figures"]["ranking"]))
    write_json(output_dir / "sensitivity.json", report)
    log_to_loggers(cfg, output_dir, report)
    log.info("most sensitive layers first: %s", ", ".join(report["ranking"][:5]))
    log.info("suggested recipe (%.1f%% of the prunable weights): %s", 100 * expected, recipe_path)
    return report


def ranking(results: dict[str, dict[str, Any]]) -> list[str]:
    """Order layers from most to least sensitive: lowest max safe sparsity, then largest final drop."""
    return sorted(results, key=lambda name: (results[name]["max_safe_sparsity"], -results[name]["drop_points"][-1]))


def log_to_loggers(cfg: DictConfig, output_dir: Path, report: dict[str, Any]) -> None:
    """Send the baseline and each layer's max safe sparsity to the configured logger, figures to W&B."""
    loggers: list[Logger] = build_loggers(cfg, output_dir, f"{cfg.task_name}-{cfg.model.name}")
    metrics = {"baseline/val_acc": report["baseline/val_acc"],
               "suggested_sparsity/overall": report["suggested_sparsity/overall"]}
    for name, entry in report["layers"].items():
        metrics[f"max_safe_sparsity/{name}"] = entry["max_safe_sparsity"]
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg.sensitivity, resolve=True))
        logger.log_metrics(metrics)
        if isinstance(logger, WandbLogger):
            logger.log_image("sensitivity/figures", list(report["figures"].values()),
                             caption=list(report["figures"]))
        logger.save()
    finish_loggers(loggers, metrics)
