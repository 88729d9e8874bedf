"""Images for INT8 quantization: the calibration reader, its data checks, and top-1 through ONNX Runtime.

The calibration images and the validation images go through the same data module, timm
transforms and image size as training, so the INT8 scales are fitted to the inputs the model gets.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from sparsebench.data import ImageDataModule

log = logging.getLogger(__name__)

SPLITS = ("train", "val")


def calibration_loader(datamodule: ImageDataModule, split: str) -> DataLoader:
    """Return an unshuffled loader over ``split``, so calibration uses the same images every run."""
    datamodule.setup()
    dataset = datamodule.train_set if split == "train" else datamodule.val_set
    return DataLoader(dataset, batch_size=datamodule.cfg.batch_size, shuffle=False, num_workers=datamodule.cfg.num_workers)


def check_calibration_size(datamodule: ImageDataModule, settings: DictConfig) -> None:
    """Raise ValueError when the split has fewer images than ``calibration_batches`` full batches."""
    datamodule.setup()
    split = settings.calibration_split
    dataset = datamodule.train_set if split == "train" else datamodule.val_set
    available = len(dataset)  # type: ignore[arg-type]
    batch_size = datamodule.cfg.batch_size
    needed = settings.calibration_batches * batch_size
    if available < needed:
        raise ValueError(
            f"quantization.calibration_batches={settings.calibration_batches} with data.batch_size={batch_size} "
            f"needs {needed} images, but the {split} split has {available}; set "
            f"quantization.calibration_batches={max(1, available // batch_size)} or less, or lower data.batch_size."
        )


def check_image_shape(images: torch.Tensor, file_shape: list[int], onnx_path: Path) -> None:
    """Raise ValueError when a batch's (channels, height, width) differs from the file's input."""
    if list(images.shape[1:]) != list(file_shape[1:]):
        raise ValueError(
            f"data.image_size: the data module gives images of shape {list(images.shape[1:])}, but "
            f"onnx={str(onnx_path)!r} takes {list(file_shape[1:])}; set data.image_size={file_shape[-1]} "
            "(or leave it unset for quantize.py, which takes the file's size)."
        )


class LoaderCalibrationReader:
    """ONNX Runtime calibration data: the first ``batches`` batches of a loader, one per call.

    ``get_next`` returns ``{input_name: images}`` as float32 NCHW arrays, and None once the
    batches are used up. ``rewind`` starts again from the first batch.
    """

    def __init__(self, loader: DataLoader, input_name: str, batches: int, file_shape: list[int], onnx_path: Path) -> None:
        self.loader, self.input_name, self.batches = loader, input_name, batches
        self.file_shape, self.onnx_path = file_shape, onnx_path
        self.given = 0
        self._iterator: Iterator[Any] | None = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.given >= self.batches:
            return None
        if self._iterator is None:
            self._iterator = iter(self.loader)
        images, _ = next(self._iterator)
        check_image_shape(images, self.file_shape, self.onnx_path)
        self.given += 1
        return {self.input_name: images.numpy().astype(np.float32, copy=False)}

    def rewind(self) -> None:
        self.given, self._iterator = 0, None


def onnx_top1(path: Path, loader: DataLoader, file_shape: list[int]) -> float:
    """Return the top-1 accuracy of an ONNX file on every batch of ``loader``, run by ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    correct = total = 0
    for images, labels in loader:
        check_image_shape(images, file_shape, path)
        logits = session.run(None, {input_name: images.numpy()})[0]
        correct += int((np.argmax(logits, axis=1) == labels.numpy()).sum())
        total += len(labels)
    if total == 0:
        raise ValueError(f"the validation split is empty, so the top-1 of {path} cannot be measured; check data.root.")
    return correct / total
