"""Shared fixtures: Hydra configs composed as the entry points would, on small real data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from presets import CONF_DIR


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One digits tree for the whole session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_config(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<task>.yaml`` with overrides, writing into this test's tmp folder."""

    def compose_task(task: str, overrides: list[str] | None = None) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=task, overrides=overrides or [], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.cwd = str(tmp_path)
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.paths.data_dir = str(data_dir)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg.hydra
        return cfg

    yield compose_task
    GlobalHydra.instance().clear()
