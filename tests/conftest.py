"""Shared fixtures: Hydra configs composed as the entry points would, on small real data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from compose import compose_config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One digits tree for the whole session."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_config(tmp_path: Path, data_dir: Path) -> Callable[..., DictConfig]:
    """Compose ``conf/<task>.yaml`` with overrides, writing into this test's tmp folder."""

    def compose_task(task: str, overrides: list[str] | None = None) -> DictConfig:
        return compose_config(task, overrides or [], tmp_path, data_dir)

    yield compose_task
    GlobalHydra.instance().clear()
