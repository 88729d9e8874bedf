"""SparseML as a pruner: the same recipe, translated to SparseML modifiers and driven by Lightning.

The translated recipe (or a hand-written SparseML recipe, used as it is) is written into the
run folder. SparseML's modifier log goes to ``sparseml/modifiers.log`` in the run folder
instead of ``sparse_logs/`` in the working directory. Export stays with sparsebench's exporter,
because SparseML 1.8's own exporter takes torch's dynamo path, which fails with onnx 1.14.
"""

from __future__ import annotations

import logging
import math
import platform
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import yaml

from sparsebench.pruning.base import Pruner
from sparsebench.pruning.recipe import Recipe
from sparsebench.trainer import optimizer_steps_per_epoch

log = logging.getLogger(__name__)

RECIPE_FILE = "sparseml_recipe.yaml"
SUPPORTED_PLATFORM = "Python 3.11 (or older) on x86-64 Linux"


def import_sparseml() -> Any:
    """Import SparseML's torch API, or raise ImportError saying how to install it."""
    try:
        from sparseml.pytorch.optim import ScheduledModifierManager  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"pruner=sparseml needs SparseML 1.8.0, which installs only on {SUPPORTED_PLATFORM}; "
            f"this is Python {platform.python_version()} on {platform.machine()}. Install it with "
            "`pip install sparseml==1.8.0 'numpy<2' 'onnx<1.15' 'protobuf<=3.20.3' 'setuptools<81'`, "
            f"or use pruner=native, which runs everywhere. ({error})"
        ) from error
    import sparseml.pytorch.optim

    return sparseml.pytorch.optim


def translate_recipe(
    recipe: Recipe, members: dict[str, list[str]], lr: float, lr_milestones: list[float], lr_gamma: float
) -> str:
    """Write ``recipe`` as a SparseML recipe in YAML.

    Each layer group becomes one magnitude pruning modifier over its layers' weights, named
    exactly, so both pruners prune the same tensors. The LR schedule becomes one
    SetLearningRateModifier per milestone, because SparseML then owns the LR.
    """
    modifier = "GMPruningModifier" if recipe.scope == "layer" else "GlobalMagnitudePruningModifier"
    modifiers: list[tuple[str, dict[str, Any]]] = [
        ("EpochRangeModifier", {"start_epoch": 0.0, "end_epoch": float(max(recipe.total_epochs, 1))}),
    ]
    for group in recipe.resolved_groups():
        if not members.get(group.name):
            continue
        # SparseML divides by the window's length, so a window of no length (one-shot, or a
        # group pruned at once) becomes one update period that starts at the final sparsity.
        instant = group.end_epoch <= group.start_epoch
        modifiers.append((modifier, {
            "params": [f"{name}.weight" for name in members[group.name]],
            "init_sparsity": group.final_sparsity if instant else group.init_sparsity,
            "final_sparsity": group.final_sparsity,
            "start_epoch": float(group.start_epoch),
            "end_epoch": float(group.start_epoch + recipe.update_frequency if instant else group.end_epoch),
            "update_frequency": float(recipe.update_frequency),
            "inter_func": recipe.interpolation,
            "leave_enabled": True,
        }))
    for index, epoch in enumerate(sorted(lr_milestones)):
        modifiers.append(("SetLearningRateModifier", {
            "start_epoch": float(epoch), "learning_rate": lr * lr_gamma ** (index + 1),
        }))

    lines = [f"# SparseML recipe translated from sparsebench recipe {recipe.name!r}.", "version: 1.1.0", "modifiers:"]
    for name, args in modifiers:
        lines.append(f"  - !{name}")
        body = yaml.safe_dump(args, sort_keys=False, default_flow_style=False)
        lines.extend(f"    {line}" for line in body.splitlines())
    return "\n".join(lines) + "\n"


class SparseMLPruner(Pruner):
    """Drive SparseML's ScheduledModifierManager from Lightning hooks.

    When it acts:
      - ``setup``: resolves layers and groups, writes the SparseML recipe into the run folder
        and builds the manager from it.
      - ``on_train_start``: initializes the manager at the current epoch with the real
        number of optimizer steps per epoch, restoring the manager's state on resume.
      - ``on_train_batch_start``: ``manager.update`` (masks change at update steps).
      - ``on_before_optimizer_step``: ``manager.optimizer_pre_step``.
      - ``on_train_batch_end``: ``manager.optimizer_post_step`` (masks re-applied).
      - ``on_train_end``: ``manager.finalize``, which removes SparseML's hooks and keeps the zeros.

    What it keeps (saved in checkpoints): the manager's state and the recipe text.
    """

    kind = "sparseml"

    def __init__(
        self,
        recipe: Recipe,
        output_dir: Path,
        lr: float,
        lr_milestones: list[float],
        lr_gamma: float,
        recipe_file: Path | None = None,
        model_attribute: str = "model",
    ) -> None:
        super().__init__(recipe, model_attribute)
        self.optim = import_sparseml()
        self.output_dir = output_dir
        self.lr, self.lr_milestones, self.lr_gamma = lr, lr_milestones, lr_gamma
        self.recipe_file = recipe_file
        self.recipe_text = ""
        self.manager: Any = None
        self._restored_state: dict | None = None
        self._model: torch.nn.Module | None = None
        if recipe_file is not None:
            self.recipe_text = recipe_file.read_text()
            self.manager = self._load_manager(self.recipe_text, recipe_file)

    @property
    def total_epochs(self) -> int:
        if self.recipe_file is None:
            return self.recipe.total_epochs
        return max(1, math.ceil(self.manager.max_epochs))

    @property
    def pruning_start_epoch(self) -> float:
        if self.recipe_file is None:
            return super().pruning_start_epoch
        return min((m.start_epoch for m in self._pruning_modifiers()), default=0.0)

    def setup(self, trainer: pl.Trainer | None, pl_module: pl.LightningModule, stage: str) -> None:
        self._model = getattr(pl_module, self.model_attribute)
        if self.recipe_file is None:
            super().setup(trainer, pl_module, stage)
            self.recipe_text = translate_recipe(
                self.recipe, self.members, self.lr, self.lr_milestones, self.lr_gamma
            )
            self.manager = self._load_manager(self.recipe_text, None)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / RECIPE_FILE).write_text(self.recipe_text)

    def apply_oneshot(self, pl_module: pl.LightningModule) -> None:
        """Prune to the final sparsity at once with ``manager.apply``, without training."""
        self.setup(None, pl_module, "fit")
        self.manager.apply(self._model, loggers=self._loggers())
        if self.recipe_file is not None:
            self._members_from_modifiers()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.steps_per_epoch = optimizer_steps_per_epoch(trainer)
        self.manager.initialize(self._model, epoch=self._epoch(trainer), loggers=self._loggers())
        if self._restored_state is not None:
            self.manager.load_state_dict(self._restored_state, strict=False)
        if self.recipe_file is not None:
            self._members_from_modifiers()
        log.info("SparseML recipe %s, %d optimizer steps per epoch", self.output_dir / RECIPE_FILE, self.steps_per_epoch)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        self.manager.update(self._model, trainer.optimizers[0], self._epoch(trainer), self.steps_per_epoch)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        self.manager.optimizer_pre_step(self._model, optimizer, self._epoch(trainer), self.steps_per_epoch)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        # global_step already counts this step; SparseML expects the epoch of the step just taken.
        epoch = (trainer.global_step - 1) / self.steps_per_epoch
        self.manager.optimizer_post_step(self._model, trainer.optimizers[0], epoch, self.steps_per_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.manager.finalize(self._model)
        super().on_train_end(trainer, pl_module)

    def targets(self, step: int) -> dict[str, float]:
        """Return the sparsity SparseML last applied to each group."""
        targets = {}
        for group, modifier in zip(self.members, self._pruning_modifiers()):
            applied = modifier.applied_sparsity
            if isinstance(applied, (list, tuple)):
                applied = max(applied) if applied else 0.0
            targets[group] = float(applied or 0.0)
        return targets

    def state_dict(self) -> dict[str, Any]:
        # A pruning modifier has no masks (and its own state_dict fails) until it has started.
        state = {}
        if self.manager is not None:
            started = set(map(id, self._pruning_modifiers()))
            for modifier in self.manager.iter_modifiers():
                if id(modifier) not in started or modifier.module_masks is not None:
                    state[modifier.identifier()] = modifier.state_dict()
        return {"manager": state, "recipe_text": self.recipe_text}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.recipe_text and state_dict["recipe_text"] != self.recipe_text:
            raise ValueError(
                "the checkpoint was pruned with another SparseML recipe; resume with the same "
                "recipe, or start a new run from it with checkpoint=<path>."
            )
        self._restored_state = state_dict["manager"]

    def _epoch(self, trainer: pl.Trainer) -> float:
        return trainer.global_step / self.steps_per_epoch

    def _pruning_modifiers(self) -> list[Any]:
        from sparseml.pytorch.sparsification.pruning.modifier_pruning_base import BasePruningModifier

        return [m for m in self.manager.iter_modifiers() if isinstance(m, BasePruningModifier)]

    def _members_from_modifiers(self) -> None:
        """Take layers and groups from a hand-written recipe: one group per pruning modifier."""
        modules = dict(self._model.named_modules())
        self.layers, self.members = {}, {}
        for index, modifier in enumerate(self._pruning_modifiers()):
            names = list(modifier.module_masks.layer_names)
            self.members[f"modifier_{index}"] = names
            self.layers.update({name: modules[name] for name in names})

    def _loggers(self) -> Any:
        from sparseml.pytorch.utils.logger import LoggerManager, PythonLogger

        log_dir = self.output_dir / "sparseml"
        log_dir.mkdir(parents=True, exist_ok=True)
        file_logger = logging.getLogger(f"sparsebench.sparseml.{id(self)}")
        file_logger.propagate = False
        file_logger.setLevel(logging.DEBUG)
        if not file_logger.handlers:
            file_logger.addHandler(logging.FileHandler(log_dir / "modifiers.log"))
        return LoggerManager([PythonLogger(logger=file_logger)], log_python=False)

    def _load_manager(self, text: str, source: Path | None) -> Any:
        try:
            return self.optim.ScheduledModifierManager.from_yaml(text)
        except Exception as error:  # SparseML raises many types for a bad recipe
            where = str(source) if source else "the translated recipe"
            raise ValueError(f"SparseML could not parse {where}: {type(error).__name__}: {error}") from error

