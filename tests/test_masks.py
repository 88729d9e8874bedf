import pytest
import timm
import torch
from torch import nn

from sparsebench.pruning.masks import (
    assign_groups,
    classifier_name,
    first_conv_name,
    magnitude_masks,
    prunable_layers,
    sparsity_report,
    zero_count,
)
from sparsebench.pruning.recipe import Recipe


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet10t", num_classes=10)


def recipe(**overrides) -> Recipe:
    return Recipe.from_config({"name": "test", "final_sparsity": 0.5, **overrides})


def test_layer_masks_hit_exact_count():
    torch.manual_seed(0)
    weights = {"a": torch.randn(64, 32, 3, 3), "b": torch.randn(10, 7)}
    masks = magnitude_masks(weights, 0.62)
    for name, weight in weights.items():
        assert zero_count(masks[name]) == round(0.62 * weight.numel())


def test_layer_masks_remove_smallest_magnitudes():
    weight = torch.tensor([[0.5, -0.1, 3.0], [-2.0, 0.05, 1.0]])
    mask = magnitude_masks({"w": weight}, 0.5)["w"]
    assert mask.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]


def test_masks_with_ties_do_not_overshoot():
    weight = torch.ones(100)
    mask = magnitude_masks({"w": weight}, 0.3)["w"]
    assert zero_count(mask) == 30


def test_global_masks_exact_overall_count():
    torch.manual_seed(0)
    weights = {"small": torch.randn(100) * 0.1, "large": torch.randn(300)}
    masks = magnitude_masks(weights, 0.5, scope="global")
    zeros = {name: zero_count(mask) for name, mask in masks.items()}
    assert sum(zeros.values()) == 200
    assert zeros["small"] / 100 > zeros["large"] / 300


def test_masks_keep_earlier_zeros():
    torch.manual_seed(0)
    weight = torch.randn(1000)
    first = magnitude_masks({"w": weight}, 0.3)["w"]
    second = magnitude_masks({"w": weight * first}, 0.6)["w"]
    assert torch.all(second[first == 0] == 0)


def test_prunable_layers_skip_norms_biases_stem_and_head(model):
    layers = prunable_layers(model, recipe())
    assert first_conv_name(model) == "conv1.0"
    assert classifier_name(model) == "fc"
    assert "conv1.0" not in layers
    assert "fc" not in layers
    assert all(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layers.values())
    assert not any("bn" in name for name in layers)


def test_prunable_layers_include_stem_and_head_when_asked(model):
    layers = prunable_layers(model, recipe(prune_first_conv=True, prune_classifier=True))
    assert "conv1.0" in layers
    assert "fc" in layers


def test_exclude_patterns(model):
    layers = prunable_layers(model, recipe(exclude=["layer4.*", "re:.*downsample.*"]))
    assert not any(name.startswith("layer4.") for name in layers)
    assert not any("downsample" in name for name in layers)
    assert "layer1.0.conv1" in layers


def test_groups_take_first_matching_pattern(model):
    layers = prunable_layers(model, recipe())
    r = recipe(groups=[
        {"name": "late", "patterns": ["layer4.*"], "final_sparsity": 0.8},
        {"name": "rest", "patterns": ["*"]},
    ])
    groups = assign_groups(layers, r.resolved_groups())
    assert groups["late"] == [n for n in layers if n.startswith("layer4.")]
    assert set(groups["late"]) | set(groups["rest"]) == set(layers)
    assert not set(groups["late"]) & set(groups["rest"])


def test_pattern_matching_nothing_rejected(model):
    layers = prunable_layers(model, recipe())
    r = recipe(groups=[{"name": "typo", "patterns": ["layr4.*"]}])
    with pytest.raises(ValueError, match="pattern 'layr4.\\*' matches no prunable layer"):
        assign_groups(layers, r.resolved_groups())


def test_sparsity_report_weights_by_numel():
    report = sparsity_report({"a": torch.zeros(10), "b": torch.ones(30)})
    assert report["overall"] == pytest.approx(0.25)
    assert report["layers"]["a"]["sparsity"] == 1.0
    assert report["layers"]["b"]["zeros"] == 0
    assert report["numel"] == 40


def test_sparsity_report_accepts_numpy():
    import numpy as np

    report = sparsity_report({"a": np.array([0.0, 1.0, 0.0, 2.0])})
    assert report["overall"] == 0.5
