"""Compose the entry points' Hydra configs in tests, as ``python <task>.py`` would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from presets import CONF_DIR


def compose_config(task: str, overrides: list[str], folder: Path, data_dir: Path) -> DictConfig:
    """Compose ``conf/<task>.yaml`` as its entry point would, launched in ``folder`` with its run in ``folder/run``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=task, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.cwd = str(folder)
        cfg.hydra.runtime.output_dir = str(folder / "run")
        cfg.paths.data_dir = str(data_dir)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    return cfg
