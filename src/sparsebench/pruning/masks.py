"""Select prunable layers, compute magnitude masks and measure sparsity.

This module is the one home of sparsity: ``zero_count`` and ``sparsity_report`` are what every
other part of sparsebench (callbacks, exporter, reports) uses to measure it.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from sparsebench.pruning.recipe import Recipe, ResolvedGroup

log = logging.getLogger(__name__)

# Only weight tensors of these layers are pruned: normalization layers and biases never are.
PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def zero_count(tensor: torch.Tensor | np.ndarray) -> int:
    """Count the exact zeros in a tensor or array."""
    if isinstance(tensor, np.ndarray):
        return int(tensor.size - np.count_nonzero(tensor))
    return int(tensor.numel() - torch.count_nonzero(tensor).item())


def sparsity_report(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> dict:
    """Measure each tensor's sparsity and the numel-weighted sparsity over all of them.

    Returns ``{"overall": float, "zeros": int, "numel": int, "layers": {name: {...}}}``.
    """
    layers = {}
    for name, tensor in tensors.items():
        zeros = zero_count(tensor)
        numel = int(tensor.numel() if isinstance(tensor, torch.Tensor) else tensor.size)
        layers[name] = {"sparsity": zeros / numel if numel else 0.0, "zeros": zeros, "numel": numel}
    zeros = sum(layer["zeros"] for layer in layers.values())
    numel = sum(layer["numel"] for layer in layers.values())
    return {"overall": zeros / numel if numel else 0.0, "zeros": zeros, "numel": numel, "layers": layers}


def matches(name: str, pattern: str) -> bool:
    """Match a module name against a glob, or a full regular expression after ``re:``."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def first_conv_name(model: nn.Module) -> str | None:
    """Return the stem convolution's module name, from timm's config when it has one."""
    name = getattr(model, "pretrained_cfg", {}).get("first_conv")
    modules = dict(model.named_modules())
    if isinstance(name, str) and isinstance(modules.get(name), PRUNABLE_TYPES):
        return name
    return next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)


def classifier_name(model: nn.Module) -> str | None:
    """Return the classifier's module name, from timm's config when it has one."""
    name = getattr(model, "pretrained_cfg", {}).get("classifier")
    modules = dict(model.named_modules())
    if isinstance(name, str) and isinstance(modules.get(name), PRUNABLE_TYPES):
        return name
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def prunable_layers(model: nn.Module, recipe: Recipe) -> dict[str, nn.Module]:
    """Return the layers whose weights the recipe may prune, by module name."""
    skipped = set()
    if not recipe.prune_first_conv:
        skipped.add(first_conv_name(model))
    if not recipe.prune_classifier:
        skipped.add(classifier_name(model))
    layers = {}
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES) or name in skipped:
            continue
        if any(matches(name, pattern) for pattern in recipe.exclude):
            continue
        layers[name] = module
    if not layers:
        raise ValueError(
            f"recipe {recipe.name!r} leaves no prunable layer in this model; "
            f"check recipe.exclude={recipe.exclude}."
        )
    return layers


def assign_groups(
    layer_names: Iterable[str], groups: list[ResolvedGroup]
) -> dict[str, list[str]]:
    """Assign each layer to the first group with a matching pattern.

    Raises ValueError when a pattern matches no prunable layer, since that is almost always
    a typo or a recipe written for another model.
    """
    names = list(layer_names)
    for group in groups:
        for pattern in group.patterns:
            if not any(matches(name, pattern) for name in names):
                raise ValueError(
                    f"recipe group {group.name!r}: pattern {pattern!r} matches no prunable layer "
                    f"of this model. Prunable layers look like {names[:4]}; "
                    "prefix a pattern with 're:' for a regular expression."
                )
    assigned: dict[str, list[str]] = {group.name: [] for group in groups}
    unassigned = []
    for name in names:
        group = next((g for g in groups if any(matches(name, p) for p in g.patterns)), None)
        if group is None:
            unassigned.append(name)
        else:
            assigned[group.name].append(name)
    empty = [name for name, members in assigned.items() if not members]
    if empty:
        raise ValueError(
            f"recipe groups {empty} get no layers: earlier groups take every layer their patterns "
            "match. Reorder the groups, narrow the earlier patterns, or remove the empty groups."
        )
    if unassigned:
        log.info("%d prunable layers match no recipe group and stay dense", len(unassigned))
    return assigned


def magnitude_masks(
    weights: Mapping[str, torch.Tensor], sparsity: float, scope: str = "layer"
) -> dict[str, torch.Tensor]:
    """Return masks (1 keeps, 0 prunes) that zero the smallest-magnitude weights.

    With ``scope="layer"`` every tensor gets exactly ``round(sparsity * numel)`` zeros; with
    ``scope="global"`` the count is taken over all tensors together, so layers differ.
    Weights that are already zero have the smallest magnitude, so masks only ever grow.
    """
    if scope == "layer":
        return {name: _smallest_zeroed(w.detach().abs().flatten(), sparsity).view_as(w)
                for name, w in weights.items()}
    if scope != "global":
        raise ValueError(f"unknown mask scope {scope!r}; use 'layer' or 'global'")
    magnitudes = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    flat = _smallest_zeroed(magnitudes, sparsity)
    masks, offset = {}, 0
    for name, w in weights.items():
        masks[name] = flat[offset : offset + w.numel()].view_as(w)
        offset += w.numel()
    return masks


def _smallest_zeroed(magnitudes: torch.Tensor, sparsity: float) -> torch.Tensor:
    mask = torch.ones_like(magnitudes)
    count = int(round(sparsity * magnitudes.numel()))
    if count > 0:
        # topk on indices, not a threshold, so ties cannot overshoot the count.
        mask[torch.topk(magnitudes, count, largest=False, sorted=False).indices] = 0.0
    return mask


def random_mask(weight: torch.Tensor, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """Return a mask (1 keeps, 0 prunes) that zeros ``round(sparsity * numel)`` weights drawn uniformly.

    The positions come from ``generator`` alone, so one seed gives one mask. Weights that are
    already zero may be drawn, so the zeros in the masked tensor can exceed the count.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity={sparsity} is outside [0, 1); write 62% as 0.62.")
    mask = torch.ones(weight.numel(), dtype=weight.dtype, device=weight.device)
    count = int(round(sparsity * weight.numel()))
    # randperm on the CPU, where the generator lives, so a seed gives the same mask on any device.
    mask[torch.randperm(weight.numel(), generator=generator)[:count].to(weight.device)] = 0.0
    return mask.view_as(weight)
