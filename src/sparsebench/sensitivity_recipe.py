"""Turn measured layer sensitivities into a recipe that ``prune.py recipe=<path>`` can load."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sparsebench.pruning.recipe import Recipe

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"


def max_safe_sparsity(sparsities: Sequence[float], drop_points: Sequence[float], tolerance_points: float) -> float:
    """Return the highest sparsity up to which every mean val/acc drop stays within the tolerance.

    A noisy curve can recover above a sparsity that already failed. That recovery is ignored,
    so the result is the last sparsity before the first drop above ``tolerance_points``.
    ``sparsities`` are ascending and start at 0.0, whose drop is 0, so the result is >= 0.0.
    """
    safe = 0.0
    for sparsity, drop in zip(sparsities, drop_points):
        if drop > tolerance_points:
            break
        safe = sparsity
    return safe


def layer_pattern(name: str) -> str:
    """Return a group pattern that matches exactly the module ``name``, escaping glob characters."""
    if any(character in name for character in "*?[]"):
        return "re:" + re.escape(name)
    return name


def suggest_recipe(
    base: Recipe, safe_sparsity: Mapping[str, float], default_sparsity: float, name: str
) -> Recipe:
    """Build a recipe with one group per analysed layer at its safe sparsity and the rest at a default.

    Phases, schedule and layer selection (exclude, first conv, classifier) come from ``base``;
    its groups do not, since every analysed layer gets its own. The last group, ``*``, takes
    the layers not analysed. A group's ``init_sparsity`` is capped at its ``final_sparsity``.
    """
    if base.scope != "layer":
        log.warning(
            "recipe.scope=%r: the suggested recipe uses scope=layer, because a per-layer "
            "sparsity only holds when each layer is pruned to its own count", base.scope,
        )
    groups: list[dict[str, Any]] = [
        {"name": layer, "patterns": [layer_pattern(layer)], "final_sparsity": sparsity,
         "init_sparsity": min(base.init_sparsity, sparsity)}
        for layer, sparsity in safe_sparsity.items()
    ]
    groups.append({"name": DEFAULT_GROUP, "patterns": ["*"], "final_sparsity": default_sparsity,
                   "init_sparsity": min(base.init_sparsity, default_sparsity)})
    values = base.to_dict()
    values.update(name=name, final_sparsity=default_sparsity, scope="layer", groups=groups)
    return Recipe.from_config(values)


def write_recipe(recipe: Recipe, path: Path, header: Sequence[str] = ()) -> None:
    """Write ``recipe`` as YAML with ``header`` lines as comments, through a temporary file."""
    values = recipe.to_dict()
    # Leave out group fields that stay None, so the file reads like the hand-written recipes.
    values["groups"] = [{key: value for key, value in group.items() if value is not None}
                        for group in values["groups"]]
    text = "".join(f"# {line}\n" for line in header) + OmegaConf.to_yaml(values)
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)
