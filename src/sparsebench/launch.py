"""Checks on the Hydra launcher before a multirun submits anything."""

from __future__ import annotations

import logging
import shutil
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

SLURM_COMMANDS = ("sbatch", "srun")


class LauncherCheck(Callback):
    """Stop a multirun at its start when its launcher cannot work on this machine.

    submitit's SLURM launcher needs SLURM's commands on PATH; without them it fails deep in
    submitit with a traceback, so this callback names what is missing and the alternatives.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = str(config.hydra.launcher.get("_target_", ""))
        if "SlurmLauncher" not in target:
            return
        missing = [command for command in SLURM_COMMANDS if shutil.which(command) is None]
        if missing:
            log.error(
                "hydra/launcher=submitit_slurm needs SLURM's %s, which this machine lacks on PATH; "
                "submit from a SLURM login node, or use hydra/launcher=submitit_local to run the "
                "jobs here",
                " and ".join(missing),
            )
            sys.exit(2)
