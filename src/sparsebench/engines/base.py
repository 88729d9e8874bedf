"""The interface every inference engine implements for the benchmark runner.

An engine is created from an :class:`EngineRequest`, compiled once for a static input shape,
then run one batch at a time. After compiling, :meth:`Engine.describe` reads back the settings
the runtime really applied, so a result never reports a setting that was only requested.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

PRECISIONS = ("fp32", "bf16", "fp16")


def effective_precision(layer_precisions: dict[str, int]) -> str:
    """Name the precision of the compute layers: one precision, ``mixed``, or ``none`` without layers."""
    present = [precision for precision, count in layer_precisions.items() if count]
    if not present:
        return "none"
    if len(present) == 1:
        return present[0]
    return "mixed"


class EngineUnavailableError(RuntimeError):
    """The engine's runtime package cannot be imported on this machine."""


@dataclass(frozen=True)
class EngineRequest:
    """The settings the runner requests for one measurement.

    ``input_shape`` is static and batch first, ``threads`` counts all threads of the process
    and ``streams`` is 1 in the sync scenario. ``options`` contains the engine's own config keys.
    """

    onnx_path: str
    input_name: str
    input_shape: tuple[int, ...]
    threads: int
    precision: str = "fp32"
    streams: int = 1
    options: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """One inference runtime: compile a file for a static shape, run batches, report settings."""

    kind: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    install_hint: ClassVar[str]

    def __init__(self, request: EngineRequest) -> None:
        if request.precision not in self.precisions:
            raise ValueError(
                f"precision={request.precision!r} is not supported by engine={self.kind}; "
                f"it runs {', '.join(self.precisions)}. Set precision=fp32 to compare engines."
            )
        self.request = request

    @classmethod
    def import_runtime(cls, module_name: str) -> ModuleType:
        """Import the runtime package, or raise EngineUnavailableError saying how to install it."""
        try:
            return importlib.import_module(module_name)
        except ImportError as error:
            raise EngineUnavailableError(
                f"engine={cls.kind}: cannot import {module_name!r} ({error}). {cls.install_hint}"
            ) from error

    @abstractmethod
    def compile(self) -> None:
        """Load the ONNX file and compile it for ``request.input_shape``; called once, untimed by the engine."""

    @abstractmethod
    def run(self, batch: np.ndarray, stream: int = 0) -> np.ndarray:
        """Run one batch on ``stream`` (0 in the sync scenario) and return the first output."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Return the settings read back from the compiled runtime.

        Every engine reports at least ``precision``, ``threads``, ``streams`` and
        ``optimization``, plus its runtime ``version``. ``precision`` is the float precision
        the engine was set to. ``effective_precision`` is the precision its Conv, Gemm and
        MatMul layers run in (``int8``, ``fp32``, ``mixed``), read back where the runtime
        reports it, else ``unknown`` with ``effective_precision_source`` giving the reason.
        """
