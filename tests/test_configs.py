from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sparsebench.config import absolute_path, lr_milestones, resolve_paths, validate_common
from sparsebench.pruning.recipe import Recipe

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TASK_GROUPS = {
    "train": ["model", "data", "optimizer", "trainer", "logger"],
    "prune": ["model", "data", "recipe", "pruner", "optimizer", "trainer", "logger", "quantization"],
}
OPTIONS = [
    (task, group, path.stem)
    for task, groups in TASK_GROUPS.items()
    for group in groups
    for path in sorted((CONF_DIR / group).glob("*.yaml"))
]


@pytest.mark.parametrize(("task", "group", "option"), OPTIONS, ids=lambda v: str(v))
def test_every_option_composes(make_config, task, group, option):
    cfg = make_config(task, [f"{group}={option}"])
    OmegaConf.resolve(cfg)
    assert cfg.task_name == task
    gpus_missing = cfg.trainer.accelerator == "gpu" and torch.cuda.device_count() < cfg.trainer.devices
    if gpus_missing:
        with pytest.raises(ValueError, match=r"trainer.devices=\d+ but this machine has \d+ GPUs"):
            validate_common(cfg)
    else:
        validate_common(cfg)
    if task == "prune" and option != "file":
        recipe = Recipe.from_config(cfg.recipe)
        assert recipe.total_epochs >= 0
        assert len(lr_milestones(cfg, recipe)) == 2


def test_quantize_config_composes(make_config):
    from sparsebench.int8 import validate_quantization

    cfg = make_config("quantize", ["onnx=model.onnx"])
    OmegaConf.resolve(cfg)
    assert cfg.data.image_size is None
    assert cfg.quantization.format == "QDQ"
    validate_quantization(cfg.quantization)


def test_default_data_is_digits_under_outputs(make_config, tmp_path):
    cfg = make_config("prune")
    assert cfg.data.kind == "digits"
    assert cfg.paths.output_root == str(tmp_path / "outputs")


def test_relative_paths_resolve_against_launch_dir(make_config, tmp_path):
    cfg = make_config("prune", ["checkpoint=runs/last.ckpt", "data.root=images"])
    resolve_paths(cfg)
    assert cfg.checkpoint == str(tmp_path / "runs" / "last.ckpt")
    assert cfg.data.root == str(tmp_path / "images")
    assert absolute_path("/already/absolute") == "/already/absolute"


def test_image_size_below_model_minimum_rejected(make_config):
    cfg = make_config("prune", ["model=vgg19", "data.image_size=32"])
    with pytest.raises(ValueError, match="data.image_size=32 is below model 'vgg19'.*224"):
        validate_common(cfg)


def test_bad_learning_rate_rejected(make_config):
    cfg = make_config("train", ["optimizer.lr=-1"])
    with pytest.raises(ValueError, match="optimizer.lr=-1"):
        validate_common(cfg)


def test_bad_milestones_rejected(make_config):
    cfg = make_config("train", ["lr_schedule.milestones=soon"])
    with pytest.raises(ValueError, match="lr_schedule.milestones=soon"):
        lr_milestones(cfg)


def test_unknown_model_option_fails_at_compose(make_config):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="efficientnet_b9"):
        make_config("prune", ["model=efficientnet_b9"])
