from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from sparsebench.data import ImageDataModule, build_datamodule, check_imagefolder, write_digits_tree


def imagefolder_config(root: Path, **overrides):
    return OmegaConf.create({
        "kind": "imagefolder", "root": str(root), "image_size": 32, "batch_size": 4,
        "num_workers": 0, "augment": False, "hflip": 0.0, **overrides,
    })


def make_tree(root: Path, classes=("a", "b"), images_per_class=2) -> Path:
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(images_per_class):
                Image.new("RGB", (8, 8), color=(index * 40, 0, 0)).save(folder / f"{index}.png")
    return root


def test_digits_tree_holds_all_digits(data_dir):
    root = write_digits_tree(data_dir / "digits")
    train = sorted((root / "train").rglob("*.png"))
    val = sorted((root / "val").rglob("*.png"))
    assert len(train) + len(val) == 1797
    assert len(val) == pytest.approx(0.2 * 1797, abs=2)
    assert check_imagefolder(root) == [str(digit) for digit in range(10)]
    assert not {p.name for p in train} & {p.name for p in val}


def test_digits_tree_reused(data_dir):
    root = write_digits_tree(data_dir / "digits")
    marker = root / "train" / "0" / "marker.txt"
    marker.write_text("kept")
    assert write_digits_tree(root) == root
    assert marker.exists()
    marker.unlink()


def test_digits_images_are_real_pixels(data_dir):
    root = write_digits_tree(data_dir / "digits")
    image = Image.open(next((root / "train" / "0").glob("*.png")))
    assert image.size == (8, 8)
    pixels = list(image.getdata())
    assert max(pixels) > 200
    assert min(pixels) == 0


def test_datamodule_batches_use_model_size(data_dir):
    cfg = imagefolder_config(write_digits_tree(data_dir / "digits"), batch_size=8)
    module = ImageDataModule(cfg, Path(cfg.root))
    module.configure_transforms({"mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}, 40)
    module.setup()
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (8, 3, 40, 40)
    assert module.num_classes == 10
    assert labels.max() < 10


def test_missing_root_names_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.root=.*nowhere.*does not exist"):
        build_datamodule(imagefolder_config(tmp_path / "nowhere"))


def test_missing_val_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no val/ folder"):
        check_imagefolder(tmp_path)


def test_empty_class_folder_named(tmp_path):
    root = make_tree(tmp_path)
    (root / "train" / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train/empty contains no images"):
        check_imagefolder(root)


def test_class_mismatch_between_splits(tmp_path):
    root = make_tree(tmp_path)
    folder = root / "train" / "extra"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "0.png")
    with pytest.raises(ValueError, match="different classes"):
        check_imagefolder(root)


def test_unreadable_image_named(tmp_path):
    root = make_tree(tmp_path)
    broken = root / "train" / "a" / "broken.png"
    broken.write_bytes(b"not a png")
    module = ImageDataModule(imagefolder_config(root), root)
    module.configure_transforms({}, 32)
    module.setup()
    index = module.train_set.samples.index((str(broken), 0))
    with pytest.raises(ValueError, match="unreadable image .*broken.png"):
        module.train_set[index]


def test_synthetic_is_deterministic():
    cfg = OmegaConf.create({"kind": "synthetic", "num_classes": 3, "train_size": 5, "val_size": 2,
                            "image_size": None, "batch_size": 2, "num_workers": 0, "augment": False})
    module = build_datamodule(cfg)
    module.configure_transforms({}, 24)
    module.setup()
    first, label = module.train_set[4]
    again, label_again = module.train_set[4]
    assert first.shape == (3, 24, 24)
    assert label == label_again
    assert first.equal(again)
    assert module.num_classes == 3


def test_bad_batch_size_rejected(tmp_path):
    with pytest.raises(ValueError, match="data.batch_size=0"):
        build_datamodule(imagefolder_config(tmp_path, batch_size=0))
