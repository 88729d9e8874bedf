"""Checks and path handling shared by the entry points, run before any work starts."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from sparsebench.models import check_model_name
from sparsebench.pruning.recipe import Recipe

# Config keys that hold file system paths given by the user.
PATH_KEYS = ("checkpoint", "resume", "data.root", "model.pretrained_file", "recipe.path", "pruner.recipe_file")


def absolute_path(value: str) -> str:
    """Resolve a path against the directory the command was started in.

    Hydra may change the working directory (``hydra.job.chdir=true``), so relative paths are
    taken from Hydra's original working directory when Hydra is running.
    """
    from hydra.core.hydra_config import HydraConfig

    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if HydraConfig.initialized():
        return str(Path(HydraConfig.get().runtime.cwd) / path)
    return str(path.resolve())


def set_on_command_line(key: str) -> bool:
    """Return whether the running Hydra job's overrides set ``key``, as ``key=``, ``+key=`` or ``++key=``."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(override.split("=", 1)[0].lstrip("+") == key for override in HydraConfig.get().overrides.task)


def expand_recipe_files(argv: list[str]) -> list[str]:
    """Turn ``recipe=path/to/file.yaml`` on the command line into ``recipe=file recipe.path=...``.

    Hydra only selects config group options by name, so a recipe written to a file (for
    example by the sensitivity analysis) is loaded through the ``file`` option. A
    comma-separated list of files becomes a sweep over ``recipe.path``.
    """
    expanded = []
    for argument in argv:
        key, _, value = argument.partition("=")
        values = value.split(",")
        if key == "recipe" and all(v.endswith((".yaml", ".yml")) for v in values):
            expanded += ["recipe=file", f"recipe.path={','.join(absolute_path(v) for v in values)}"]
        else:
            expanded.append(argument)
    return expanded


def resolve_paths(cfg: DictConfig) -> None:
    """Make every user-given path in ``cfg`` absolute, in place."""
    with open_dict(cfg):
        for key in PATH_KEYS:
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if parent is not None and parent.get(leaf):
                parent[leaf] = absolute_path(str(parent[leaf]))


def image_size(cfg: DictConfig) -> int:
    """Return ``data.image_size`` if set, else the model's native input size."""
    return int(cfg.data.image_size or cfg.model.input_size)


def validate_model_and_data(cfg: DictConfig) -> None:
    """Check the model name and the input size, naming the key, the value and the fix."""
    check_model_name(cfg.model.timm_name)
    size = image_size(cfg)
    if size < cfg.model.min_input_size:
        raise ValueError(
            f"data.image_size={size} is below model {cfg.model.name!r}'s minimum of "
            f"{cfg.model.min_input_size} pixels; set data.image_size={cfg.model.min_input_size} or more."
        )


def validate_common(cfg: DictConfig) -> None:
    """Check the model, data and optimizer sections, naming the key, the value and the fix."""
    validate_model_and_data(cfg)
    lr = cfg.optimizer.get("lr")
    if lr is None or lr <= 0:
        raise ValueError(f"optimizer.lr={lr} must be a positive number, e.g. optimizer.lr=0.01.")
    check_devices(cfg)
    gamma = cfg.lr_schedule.gamma
    if not 0 < gamma <= 1:
        raise ValueError(f"lr_schedule.gamma={gamma} must be in (0, 1]; 1 keeps the LR constant.")


def check_devices(cfg: DictConfig) -> None:
    """Reject ``trainer.devices`` above what this machine has, and DDP inside a basic multirun."""
    import os

    import torch
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    devices = cfg.trainer.get("devices", 1)
    if not isinstance(devices, int):
        return
    accelerator = cfg.trainer.get("accelerator", "cpu")
    available = torch.cuda.device_count() if accelerator in ("gpu", "cuda") else os.cpu_count() or 1
    if devices > available:
        raise ValueError(
            f"trainer.devices={devices} but this machine has {available} "
            f"{'GPUs' if accelerator in ('gpu', 'cuda') else 'CPU cores'}; lower trainer.devices, "
            "or run on more nodes with trainer.num_nodes and hydra/launcher=submitit_slurm."
        )
    strategy = str(cfg.trainer.get("strategy", ""))
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    launcher = str(HydraConfig.get().launcher.get("_target_", "")) if multirun else ""
    if devices > 1 and strategy.startswith("ddp") and "spawn" not in strategy and multirun and "submitit" not in launcher:
        raise ValueError(
            f"trainer.strategy={strategy} starts its other ranks by running the command line again, "
            "which would repeat the whole -m sweep; use hydra/launcher=submitit_local or "
            "submitit_slurm for sweeps of DDP jobs."
        )


def lr_milestones(cfg: DictConfig, recipe: Recipe | None = None) -> list[float]:
    """Return the LR milestones in epochs; ``phases`` means the recipe's phase boundaries."""
    milestones = cfg.lr_schedule.milestones
    if milestones == "phases":
        if recipe is None:
            raise ValueError("lr_schedule.milestones=phases needs a recipe; give a list of epochs instead.")
        return [recipe.pruning_start, recipe.pruning_end]
    if not isinstance(milestones, (list, ListConfig)) or any(
        not isinstance(m, (int, float)) or m < 0 for m in milestones
    ):
        raise ValueError(
            f"lr_schedule.milestones={milestones} must be a list of epochs >= 0"
            f"{' or phases' if recipe else ''}, e.g. lr_schedule.milestones=[5,8]."
        )
    return [float(m) for m in milestones]
