"""Recipes: what to prune, how much and when, shared by every pruner.

A recipe has three phases measured in (possibly fractional) epochs: stabilization (dense
training), pruning (the sparsity rises from ``init_sparsity`` to ``final_sparsity``) and
finetuning (masks fixed). Layer groups may override the sparsity and the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sparsebench.pruning.schedule import INTERPOLATIONS

PHASES = ("stabilization", "pruning", "finetuning")
SCOPES = ("layer", "global")


@dataclass
class LayerGroup:
    """Layers matched by name patterns, pruned to their own sparsity in their own window.

    Patterns are shell-style globs over module names (``blocks.*.conv_pw``) or, with a
    ``re:`` prefix, regular expressions that must match the whole name. ``None`` fields take
    the recipe's value.
    """

    name: str = "all"
    patterns: List[str] = field(default_factory=lambda: ["*"])
    final_sparsity: Optional[float] = None
    init_sparsity: Optional[float] = None
    start_epoch: Optional[float] = None
    end_epoch: Optional[float] = None


@dataclass
class ResolvedGroup:
    """A layer group with every value filled in from its recipe."""

    name: str
    patterns: List[str]
    init_sparsity: float
    final_sparsity: float
    start_epoch: float
    end_epoch: float


@dataclass
class Recipe:
    """A gradual magnitude pruning recipe (Zhu & Gupta 2017), in epochs."""

    name: str
    final_sparsity: float
    stabilization_epochs: float = 1.0
    pruning_epochs: float = 5.0
    finetuning_epochs: float = 2.0
    init_sparsity: float = 0.05
    update_frequency: float = 0.5
    interpolation: str = "cubic"
    scope: str = "layer"
    groups: List[LayerGroup] = field(default_factory=lambda: [LayerGroup()])
    exclude: List[str] = field(default_factory=list)
    prune_first_conv: bool = False
    prune_classifier: bool = False

    @classmethod
    def from_config(cls, cfg: DictConfig | dict[str, Any]) -> Recipe:
        """Build and validate a recipe from its config section, naming any bad key."""
        try:
            merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
            recipe = cast(Recipe, OmegaConf.to_object(merged))
        except OmegaConfBaseException as error:
            raise ValueError(f"invalid recipe config: {error}".replace("\n", " ")) from error
        recipe.validate()
        return recipe

    @property
    def pruning_start(self) -> float:
        return self.stabilization_epochs

    @property
    def pruning_end(self) -> float:
        return self.stabilization_epochs + self.pruning_epochs

    @property
    def total_epochs(self) -> int:
        return round(self.stabilization_epochs + self.pruning_epochs + self.finetuning_epochs)

    @property
    def oneshot(self) -> bool:
        """Whether the recipe prunes straight to its final sparsity, with no training."""
        return self.total_epochs == 0

    def phase_at(self, epoch: float) -> str:
        """Return the phase that a (fractional) epoch position falls in."""
        if epoch < self.pruning_start:
            return "stabilization"
        if epoch < self.pruning_end:
            return "pruning"
        return "finetuning"

    def resolved_groups(self) -> list[ResolvedGroup]:
        """Return the groups with the recipe's values filled in where a group gives none."""
        return [
            ResolvedGroup(
                name=group.name,
                patterns=list(group.patterns),
                init_sparsity=_first_set(group.init_sparsity, self.init_sparsity),
                final_sparsity=_first_set(group.final_sparsity, self.final_sparsity),
                start_epoch=_first_set(group.start_epoch, self.pruning_start),
                end_epoch=_first_set(group.end_epoch, self.pruning_end),
            )
            for group in self.groups
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise ValueError naming the key, the value and the fix for any inconsistency."""
        for key in ("stabilization_epochs", "pruning_epochs", "finetuning_epochs"):
            if getattr(self, key) < 0:
                raise ValueError(f"recipe.{key}={getattr(self, key)} must be >= 0 epochs.")
        total = self.stabilization_epochs + self.pruning_epochs + self.finetuning_epochs
        if not math.isclose(total, round(total), abs_tol=1e-9):
            raise ValueError(
                f"recipe phases add up to {total} epochs; the sum of stabilization_epochs, "
                "pruning_epochs and finetuning_epochs must be a whole number of epochs "
                "(0 for one-shot pruning)."
            )
        if self.update_frequency <= 0:
            raise ValueError(
                f"recipe.update_frequency={self.update_frequency} must be > 0 epochs "
                "(fractions such as 0.25 update the masks four times per epoch)."
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"recipe.interpolation={self.interpolation!r}; use one of {INTERPOLATIONS}.")
        if self.scope not in SCOPES:
            raise ValueError(f"recipe.scope={self.scope!r}; use one of {SCOPES}.")
        _check_sparsity("recipe.final_sparsity", self.final_sparsity)
        _check_sparsity("recipe.init_sparsity", self.init_sparsity)
        if not self.groups:
            raise ValueError("recipe.groups is empty; give at least one group, e.g. patterns: ['*'].")

        names = [group.name for group in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe.groups have duplicate names {names}; give each group its own name.")
        for index, group in enumerate(self.resolved_groups()):
            key = f"recipe.groups[{index}] ({group.name!r})"
            if not group.patterns:
                raise ValueError(f"{key}: patterns is empty; give at least one module name pattern.")
            _check_sparsity(f"{key}.final_sparsity", group.final_sparsity)
            _check_sparsity(f"{key}.init_sparsity", group.init_sparsity)
            if group.init_sparsity > group.final_sparsity:
                raise ValueError(
                    f"{key}: init_sparsity={group.init_sparsity} is above "
                    f"final_sparsity={group.final_sparsity}; sparsity can only rise."
                )
            if group.end_epoch < group.start_epoch:
                raise ValueError(
                    f"{key}: the window ends at epoch {group.end_epoch} before it starts at "
                    f"epoch {group.start_epoch}; set end_epoch >= start_epoch."
                )
            if group.start_epoch < 0 or group.end_epoch > total:
                raise ValueError(
                    f"{key}: the window [{group.start_epoch}, {group.end_epoch}] lies outside "
                    f"the recipe's {total:g} epochs."
                )


def _first_set(value: float | None, default: float) -> float:
    return default if value is None else value


def _check_sparsity(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{key}={value} is outside [0, 1); sparsity is the fraction of zero weights, "
            "so write 62% as 0.62."
        )
