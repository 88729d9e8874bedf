"""Overrides and paths shared by the tests."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# Small and quick: 4 batches of 32 digits per epoch, 32 px, four epochs in all.
FAST_PRUNE = [
    "model=resnet10t",
    "data.image_size=32",
    "data.batch_size=32",
    "trainer.limit_train_batches=4",
    "trainer.enable_progress_bar=false",
    "recipe.stabilization_epochs=1",
    "recipe.pruning_epochs=2",
    "recipe.finetuning_epochs=1",
    "recipe.update_frequency=0.5",
    "logger=csv",
]
# timm's 0.4M-parameter ResNet made for tests: the layer names of resnet10t, a tenth of the size.
TINY_MODEL = ["model.name=test_resnet", "model.timm_name=test_resnet"]
