"""Entry-point helper that reports bad input as one clear error line."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

Result = TypeVar("Result")

# Errors that sparsebench raises for bad input, with a message that names the key and the fix.
INPUT_ERRORS = (ValueError, FileNotFoundError, ImportError)


def run_task(task: Callable[[], Result]) -> Result:
    """Run ``task``; report an input error as one logged line and exit with status 2.

    In a multirun the error is raised after it is logged, so the other jobs still run. The
    traceback is kept when HYDRA_FULL_ERROR=1, as Hydra does for its own errors.
    """
    try:
        return task()
    except INPUT_ERRORS as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s: %s (set HYDRA_FULL_ERROR=1 for the traceback)", type(error).__name__, error)
        if in_multirun():
            # Hydra records a job's exception and goes on with the next job; an exit would end the sweep.
            raise
        sys.exit(2)


def in_multirun() -> bool:
    """Return whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
