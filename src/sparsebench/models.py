"""timm model factory: names, native input sizes, pretrained weights and checkpoints."""

from __future__ import annotations

import difflib
import logging
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import timm
import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)

HUB_CONNECT_TIMEOUT_S = 5.0


def check_model_name(timm_name: str) -> None:
    """Raise ValueError naming close timm models when ``timm_name`` is not one."""
    if timm.is_model(timm_name):
        return
    close = difflib.get_close_matches(timm_name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close timm names: {', '.join(close)}." if close else ""
    raise ValueError(
        f"model.timm_name={timm_name!r} is not a timm model.{hint} "
        "List them with `python -c 'import timm; print(timm.list_models())'`."
    )


def native_input_size(timm_name: str) -> int:
    """Return the square input side that timm's default pretrained config uses."""
    return int(timm.get_pretrained_cfg(timm_name).input_size[-1])


def create_model(cfg: DictConfig, num_classes: int) -> torch.nn.Module:
    """Build ``cfg.timm_name`` with ``num_classes`` outputs, loading weights if asked.

    ``cfg.pretrained`` loads timm's pretrained weights from the Hugging Face cache, or
    downloads them when the hub is reachable; ``cfg.pretrained_file`` loads a local file.
    """
    check_model_name(cfg.timm_name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": cfg.drop_rate}
    if cfg.pretrained_file:
        path = Path(cfg.pretrained_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"model.pretrained_file={cfg.pretrained_file!r} does not exist; "
                "give the path of a timm weights file (.pth, .bin or .safetensors)."
            )
        kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        return timm.create_model(cfg.timm_name, pretrained=True, **kwargs)
    if cfg.pretrained:
        return _create_pretrained(cfg.timm_name, kwargs)
    return timm.create_model(cfg.timm_name, pretrained=False, **kwargs)


def _create_pretrained(timm_name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """Load pretrained weights from the local cache first, then from the hub when it can be reached."""
    from huggingface_hub import constants as hub_constants

    try:
        with _hub_offline():
            return timm.create_model(timm_name, pretrained=True, **kwargs)
    except (OSError, RuntimeError) as cached_error:
        log.debug("pretrained weights for %s not in the local cache: %s", timm_name, cached_error)

    host = urlparse(hub_constants.ENDPOINT).hostname or "huggingface.co"
    if hub_constants.HF_HUB_OFFLINE or not _reachable(host):
        raise RuntimeError(
            f"model.pretrained=true: weights for {timm_name!r} are not in the Hugging Face "
            f"cache ({hub_constants.HF_HUB_CACHE}) and {host} cannot be reached. Download them "
            "on a connected machine into that cache, set model.pretrained_file=/path/to/weights, "
            "or set model.pretrained=false."
        )
    log.info("downloading pretrained weights for %s from %s", timm_name, host)
    return timm.create_model(timm_name, pretrained=True, **kwargs)


class _hub_offline:
    """Context manager that makes huggingface_hub read its cache only."""

    def __enter__(self) -> None:
        from huggingface_hub import constants as hub_constants

        self._previous = hub_constants.HF_HUB_OFFLINE
        hub_constants.HF_HUB_OFFLINE = True

    def __exit__(self, *exc_info: object) -> None:
        from huggingface_hub import constants as hub_constants

        hub_constants.HF_HUB_OFFLINE = self._previous


def _reachable(host: str) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=HUB_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def load_checkpoint_weights(model: torch.nn.Module, path: Path, model_name: str) -> None:
    """Load a Lightning checkpoint or a plain state dict into ``model``, strictly.

    Raises ValueError naming both architectures when the checkpoint belongs to another model.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r} does not exist; give a .ckpt or .pt file.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved_name = None
    if isinstance(state, dict) and "state_dict" in state:
        saved_name = state.get("hyper_parameters", {}).get("model_name")
        state = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint={str(path)!r} contains no state dict ({type(state).__name__}).")

    if saved_name is not None and saved_name != model_name:
        raise ValueError(
            f"checkpoint={str(path)!r} was trained as model={saved_name!r}, but model={model_name!r} "
            f"was requested; run with model={saved_name} or pick a checkpoint of {model_name}."
        )
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"checkpoint={str(path)!r} does not fit model={model_name!r}: "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:3]}, {len(wrong_shape)} with another shape {wrong_shape[:3]}. "
            "It was probably made for another architecture or number of classes."
        )
    model.load_state_dict(state)
    log.info("loaded weights from %s", path)
