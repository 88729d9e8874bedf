"""Inference engines behind one interface, looked up by the ``engine.kind`` config key."""

from __future__ import annotations

import importlib

from sparsebench.engines.base import Engine, EngineRequest, EngineUnavailableError

ENGINES = {
    "ort": "sparsebench.engines.ort:OrtEngine",
    "openvino": "sparsebench.engines.openvino:OpenVinoEngine",
    "deepsparse": "sparsebench.engines.deepsparse:DeepSparseEngine",
}

__all__ = ["ENGINES", "Engine", "EngineRequest", "EngineUnavailableError", "engine_class"]


def engine_class(kind: str) -> type[Engine]:
    """Return the engine class for ``kind`` without importing its runtime package."""
    if kind not in ENGINES:
        raise ValueError(f"engine.kind={kind!r} is unknown; use one of {sorted(ENGINES)}, e.g. engine=ort.")
    module_name, _, class_name = ENGINES[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
