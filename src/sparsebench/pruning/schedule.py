"""Pure functions that map an optimizer step to a target sparsity.

Gradual magnitude pruning follows Zhu & Gupta, "To prune, or not to prune" (2017), eq. 1:

    s_t = s_f + (s_i - s_f) * (1 - (t - t_0) / (n * dt)) ** 3,  t in {t_0, t_0 + dt, ..., t_0 + n*dt}

The target is held constant between updates, is 0 before the window opens, and is exactly
``final`` from the last step of the window on. Steps count completed optimizer steps, so the
value for ``step`` is the sparsity the weights must have before optimizer step ``step + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INTERPOLATIONS = ("cubic", "linear")


@dataclass(frozen=True)
class Window:
    """A pruning window in optimizer steps: masks change at ``start + k * every`` and at ``end``."""

    start: int
    end: int
    every: int

    @classmethod
    def from_epochs(
        cls, start_epoch: float, end_epoch: float, update_epochs: float, steps_per_epoch: int
    ) -> Window:
        """Convert a window given in (possibly fractional) epochs to optimizer steps."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {steps_per_epoch}")
        start = epochs_to_steps(start_epoch, steps_per_epoch)
        end = epochs_to_steps(end_epoch, steps_per_epoch)
        every = max(1, epochs_to_steps(update_epochs, steps_per_epoch))
        return cls(start=start, end=max(start, end), every=every)


def interpolate(progress: float, init: float, final: float, interpolation: str = "cubic") -> float:
    """Return the sparsity at ``progress`` in [0, 1] of the way from ``init`` to ``final``."""
    progress = min(max(progress, 0.0), 1.0)
    if interpolation == "cubic":
        return final + (init - final) * (1.0 - progress) ** 3
    if interpolation == "linear":
        return init + (final - init) * progress
    raise ValueError(f"unknown interpolation {interpolation!r}; use one of {INTERPOLATIONS}")


def target_sparsity(
    step: int, window: Window, init: float, final: float, interpolation: str = "cubic"
) -> float:
    """Return the sparsity required once ``step`` optimizer steps have been taken."""
    if step < window.start:
        return 0.0
    if step >= window.end:
        return final
    updates_done = (step - window.start) // window.every
    progress = updates_done * window.every / (window.end - window.start)
    return interpolate(progress, init, final, interpolation)


def update_steps(window: Window) -> list[int]:
    """Return every step at which the target changes: the updates and the window's end."""
    steps = list(range(window.start, window.end, window.every))
    if not steps or steps[-1] != window.end:
        steps.append(window.end)
    return steps


def epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    """Convert a (possibly fractional) number of epochs to whole optimizer steps."""
    return int(math.floor(epochs * steps_per_epoch + 0.5))
