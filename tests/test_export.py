import gzip

import numpy as np
import onnx
import pytest
import timm
import torch

from sparsebench.export import (
    compare_with_torch,
    export_onnx,
    file_facts,
    module_name_from_node,
    onnx_sparsity,
    onnx_weights,
)
from sparsebench.pruning.masks import magnitude_masks, prunable_layers, sparsity_report
from sparsebench.pruning.recipe import Recipe

# The seven networks of the reproduced study, at the smallest input each exports at.
STUDY_NETWORKS = [
    ("efficientnet_b0", 64),
    ("efficientnet_b2", 64),
    ("mobilevit_xs", 64),
    ("resnet50", 64),
    ("mobilenetv1_100", 64),
    ("inception_v3", 96),
    ("vgg19", 224),
]


def randomize_norms(model: torch.nn.Module) -> None:
    """Give BatchNorm layers non-trivial statistics, as training would."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data = torch.rand(module.weight.shape, generator=generator) + 0.5
            module.bias.data = torch.randn(module.bias.shape, generator=generator) * 0.1
            module.running_mean = torch.randn(module.running_mean.shape, generator=generator) * 0.1
            module.running_var = torch.rand(module.running_var.shape, generator=generator) + 0.5


def pruned_model(name: str, sparsity: float) -> tuple[torch.nn.Module, list[str]]:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    randomize_norms(model)
    recipe = Recipe(name="test", final_sparsity=sparsity)
    layers = prunable_layers(model, recipe)
    masks = magnitude_masks({n: m.weight for n, m in layers.items()}, sparsity)
    with torch.no_grad():
        for name_, layer in layers.items():
            layer.weight.mul_(masks[name_])
    return model, list(layers)


@pytest.mark.parametrize(("timm_name", "image_size"), STUDY_NETWORKS)
def test_study_network_exports_and_matches_ort(tmp_path, timm_name, image_size):
    model, layer_names = pruned_model(timm_name, 0.5)
    path = export_onnx(model, tmp_path / "model.onnx", image_size)
    errors = compare_with_torch(model, path, image_size, batch_sizes=(1, 3))
    assert set(errors) == {1, 3}
    onnx_report = onnx_sparsity(path, layer_names)
    torch_report = sparsity_report({n: m.weight for n, m in model.named_modules() if n in layer_names})
    assert onnx_report["overall"] == pytest.approx(torch_report["overall"], abs=1e-9)
    assert onnx_report["overall"] == pytest.approx(0.5, abs=1e-3)


def test_batch_axis_is_dynamic(tmp_path):
    model, _ = pruned_model("resnet10t", 0.0)
    path = export_onnx(model, tmp_path / "model.onnx", 32)
    graph = onnx.load(str(path)).graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch"
    assert not batch.HasField("dim_value")
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 32, 32]


def test_sparsity_survives_batchnorm_folding_per_layer(tmp_path):
    model, layer_names = pruned_model("efficientnet_b0", 0.62)
    path = export_onnx(model, tmp_path / "model.onnx", 64)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" not in ops
    onnx_report = onnx_sparsity(path, layer_names)
    modules = dict(model.named_modules())
    for name in layer_names:
        zeros = int((modules[name].weight == 0).sum())
        assert onnx_report["layers"][name]["zeros"] == zeros, name


def test_export_with_masks_leaves_model_untouched(tmp_path):
    model, _ = pruned_model("resnet10t", 0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = prunable_layers(model, Recipe(name="test", final_sparsity=0.5))
    masks = magnitude_masks({n: m.weight for n, m in layers.items()}, 0.5)
    path = export_onnx(model, tmp_path / "model.onnx", 32, masks=masks)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert onnx_sparsity(path, list(layers))["overall"] == pytest.approx(0.5, abs=1e-6)


def test_onnx_weights_keyed_by_module_name(tmp_path):
    model, _ = pruned_model("resnet10t", 0.0)
    path = export_onnx(model, tmp_path / "model.onnx", 32)
    weights = onnx_weights(path)
    modules = dict(model.named_modules())
    assert "layer2.0.downsample.1" in weights
    for name, array in weights.items():
        assert array.size == modules[name].weight.numel(), name


@pytest.mark.parametrize(("node", "module"), [
    ("/conv1/conv1.0/Conv", "conv1.0"),
    ("/layer2/layer2.0/downsample/downsample.1/Conv", "layer2.0.downsample.1"),
    ("/blocks/blocks.0/blocks.0.0/conv_dw/Conv", "blocks.0.0.conv_dw"),
    ("/fc/Gemm", "fc"),
])
def test_module_name_from_node(node, module):
    assert module_name_from_node(node) == module


def test_file_facts_measure_gzip(tmp_path):
    path = tmp_path / "blob.bin"
    data = np.zeros(100_000, dtype=np.float32).tobytes() + np.random.default_rng(0).bytes(50_000)
    path.write_bytes(data)
    facts = file_facts(path)
    assert facts["bytes"] == len(data)
    assert facts["gzip_bytes"] == len(gzip.compress(data, compresslevel=9))
    assert facts["gzip_ratio"] == pytest.approx(facts["bytes"] / facts["gzip_bytes"])


def test_onnx_sparsity_names_missing_layer(tmp_path):
    model, _ = pruned_model("resnet10t", 0.0)
    path = export_onnx(model, tmp_path / "model.onnx", 32)
    with pytest.raises(ValueError, match="no_such_layer"):
        onnx_sparsity(path, ["no_such_layer"])
