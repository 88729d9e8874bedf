"""LightningDataModules: the bundled digits, any ImageFolder tree, and synthetic images.

Every image data module reads an ImageFolder tree with ``train/`` and ``val/`` folders through
timm's transforms for the model, so digits and ImageNet go through the same code path.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from timm.data import create_transform
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
DATA_KINDS = ("digits", "imagefolder", "synthetic")


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, naming the file when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"unreadable image {path}: {error}. Remove or replace the file.") from error


def write_digits_tree(root: Path, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write scikit-learn's 1,797 8x8 handwritten digits as PNG files in an ImageFolder tree.

    The tree is built in a temporary folder and renamed into place, so a killed run or a
    concurrent job never leaves a half-written tree behind. An existing tree is reused.
    """
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are 0..16 ink levels; scale them to 8-bit gray.
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    indices = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        indices, test_size=val_fraction, stratify=digits.target, random_state=seed
    )
    partial = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    for split, split_idx in (("train", train_idx), ("val", val_idx)):
        for index in split_idx:
            folder = partial / split / str(digits.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(folder / f"{index:04d}.png")
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.rename(root)
    except OSError:
        # Another job finished the same tree first; keep its copy.
        shutil.rmtree(partial, ignore_errors=True)
    log.info("wrote %d digit images to %s", len(images), root)
    return root


def check_imagefolder(root: Path, key: str = "data.root") -> list[str]:
    """Check an ImageFolder tree and return its class names, raising a clear error if broken."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{key}={str(root)!r} does not exist; point it at a folder with train/ and val/ "
            "subfolders that hold one folder of images per class."
        )
    for split in SPLITS:
        if not (root / split).is_dir():
            raise FileNotFoundError(f"{key}={str(root)!r} has no {split}/ folder; ImageFolder data needs train/ and val/.")
    classes_by_split = {}
    for split in SPLITS:
        split_dir = root / split
        classes = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
        if not classes:
            raise ValueError(f"{split_dir} has no class folders; put each class's images in its own folder.")
        for name in classes:
            if not any(f.suffix.lower() in IMG_EXTENSIONS for f in (split_dir / name).iterdir()):
                raise ValueError(
                    f"class folder {split_dir / name} contains no images ({', '.join(IMG_EXTENSIONS)}); "
                    "add images or remove the folder."
                )
        classes_by_split[split] = classes
    if classes_by_split["train"] != classes_by_split["val"]:
        only = sorted(set(classes_by_split["train"]) ^ set(classes_by_split["val"]))
        raise ValueError(f"{key}={str(root)!r}: train/ and val/ have different classes, e.g. {only[:5]}.")
    return classes_by_split["train"]


class SyntheticImages(Dataset):
    """Gaussian-noise images with random labels, generated per index so nothing is stored."""

    def __init__(self, size: int, num_classes: int, image_size: int, seed: int) -> None:
        self.size, self.num_classes, self.image_size, self.seed = size, num_classes, image_size, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = torch.randn(3, self.image_size, self.image_size, generator=generator)
        label = int(torch.randint(self.num_classes, (1,), generator=generator))
        return image, label


class ImageDataModule(pl.LightningDataModule):
    """Train and validation loaders over an ImageFolder tree or synthetic images.

    Call ``configure_transforms`` with the model's timm data config before ``setup``.
    """

    def __init__(self, cfg: DictConfig, root: Path | None) -> None:
        super().__init__()
        self.cfg = cfg
        self.root = root
        self.classes = check_imagefolder(root) if root is not None else [str(i) for i in range(cfg.num_classes)]
        self.image_size: int | None = None
        self.model_data_config: dict[str, Any] = {}
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def configure_transforms(self, model_data_config: dict[str, Any], image_size: int) -> None:
        """Use timm's mean, std, interpolation and crop for the model, at ``image_size`` pixels."""
        self.model_data_config = dict(model_data_config)
        self.image_size = image_size

    def transform(self, train: bool) -> Any:
        if self.image_size is None:
            raise RuntimeError("call configure_transforms(model data config, image size) before setup")
        config = self.model_data_config
        return create_transform(
            input_size=(3, self.image_size, self.image_size),
            is_training=train and self.cfg.augment,
            interpolation=config.get("interpolation", "bilinear"),
            mean=config.get("mean", (0.485, 0.456, 0.406)),
            std=config.get("std", (0.229, 0.224, 0.225)),
            crop_pct=config.get("crop_pct"),
            hflip=self.cfg.get("hflip", 0.5),
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.root is None:
            size = self.image_size or 224
            self.train_set = SyntheticImages(self.cfg.train_size, self.num_classes, size, seed=0)
            self.val_set = SyntheticImages(self.cfg.val_size, self.num_classes, size, seed=1)
            return
        self.train_set = ImageFolder(str(self.root / "train"), transform=self.transform(True), loader=load_rgb)
        self.val_set = ImageFolder(str(self.root / "val"), transform=self.transform(False), loader=load_rgb)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            self.setup()
            dataset = self.train_set if shuffle else self.val_set
        workers = self.cfg.num_workers
        return DataLoader(
            dataset, batch_size=self.cfg.batch_size, shuffle=shuffle, num_workers=workers,
            persistent_workers=workers > 0, drop_last=False,
        )


def build_datamodule(cfg: DictConfig) -> ImageDataModule:
    """Create the data module that ``cfg.kind`` names; digits are written on first use."""
    if cfg.batch_size < 1:
        raise ValueError(f"data.batch_size={cfg.batch_size} must be >= 1.")
    if cfg.num_workers < 0:
        raise ValueError(f"data.num_workers={cfg.num_workers} must be >= 0.")
    if cfg.kind == "digits":
        return ImageDataModule(cfg, write_digits_tree(Path(cfg.root), cfg.val_fraction, cfg.split_seed))
    if cfg.kind == "imagefolder":
        if not cfg.root:
            raise ValueError("data.root is not set; give data.root=/path/to/imagenet (with train/ and val/).")
        return ImageDataModule(cfg, Path(cfg.root))
    if cfg.kind == "synthetic":
        if cfg.num_classes < 2 or cfg.train_size < 1 or cfg.val_size < 1:
            raise ValueError(
                f"data.num_classes={cfg.num_classes}, data.train_size={cfg.train_size} and "
                f"data.val_size={cfg.val_size} must be >= 2, >= 1 and >= 1."
            )
        return ImageDataModule(cfg, None)
    raise ValueError(f"data.kind={cfg.kind!r} is unknown; use one of {DATA_KINDS}.")
