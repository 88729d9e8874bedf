from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf

from sparsebench.models import check_model_name, create_model, load_checkpoint_weights, native_input_size

CONF_MODELS = sorted((Path(__file__).resolve().parents[1] / "conf" / "model").glob("*.yaml"))


def model_config(**overrides):
    return OmegaConf.create({"name": "resnet10t", "timm_name": "resnet10t", "input_size": 176,
                             "min_input_size": 32, "pretrained": False, "pretrained_file": None,
                             "drop_rate": 0.0, **overrides})


@pytest.mark.parametrize("path", CONF_MODELS, ids=lambda p: p.stem)
def test_model_config_matches_timm(path):
    cfg = OmegaConf.load(path)
    assert timm.is_model(cfg.timm_name)
    assert cfg.input_size == native_input_size(cfg.timm_name)


def test_study_networks_have_configs():
    names = {path.stem for path in CONF_MODELS}
    study = {"efficientnet_b0", "efficientnet_b2", "mobilevit_xs", "resnet50", "mobilenet_v1", "vgg19", "inception_v3"}
    assert study <= names


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="efficientnet_b9.*Close timm names:.*efficientnet_b"):
        check_model_name("efficientnet_b9")


def test_pretrained_offline_fails_fast(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="model.pretrained=true.*not in the Hugging Face cache.*pretrained_file"):
        create_model(model_config(pretrained=True), num_classes=10)


def test_pretrained_file_loads_body_weights(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet10t")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    model = create_model(model_config(pretrained_file=str(path)), num_classes=10)
    body = [key for key in source.state_dict() if not key.startswith("fc.")]
    for key in body:
        assert torch.equal(model.state_dict()[key], source.state_dict()[key]), key
    # timm re-initializes a classifier whose class count differs from the weights' 1,000.
    assert model.fc.weight.shape == (10, 512)


def test_missing_pretrained_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pretrained_file=.*missing.pth"):
        create_model(model_config(pretrained_file=str(tmp_path / "missing.pth")), num_classes=10)


def test_checkpoint_of_other_architecture_rejected(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(timm.create_model("resnet10t", num_classes=10).state_dict(), path)
    model = timm.create_model("efficientnet_b0", num_classes=10)
    with pytest.raises(ValueError, match="does not fit model='efficientnet_b0'.*missing keys"):
        load_checkpoint_weights(model, path, "efficientnet_b0")


def test_checkpoint_records_its_model(tmp_path):
    path = tmp_path / "last.ckpt"
    state = {f"model.{k}": v for k, v in timm.create_model("resnet10t", num_classes=10).state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"model_name": "resnet10t"}}, path)
    model = timm.create_model("resnet18", num_classes=10)
    with pytest.raises(ValueError, match="trained as model='resnet10t', but model='resnet18'"):
        load_checkpoint_weights(model, path, "resnet18")


def test_checkpoint_loads_lightning_format(tmp_path):
    source = timm.create_model("resnet10t", num_classes=10)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
                "hyper_parameters": {"model_name": "resnet10t"}}, path)
    model = timm.create_model("resnet10t", num_classes=10)
    load_checkpoint_weights(model, path, "resnet10t")
    assert torch.equal(model.fc.weight, source.fc.weight)
