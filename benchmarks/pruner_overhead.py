"""Print the per-step cost of the pruner callbacks as ratios: native GMP to plain training
(target: at most 1.05) and SparseML to native GMP.

Every arm trains the same timm model on the bundled digits with the same optimizer, data and
seed, on this machine's CPU, through the same recipe (pruning over all but the last epoch).
A step is the time between two consecutive ``on_train_batch_end`` calls, so it covers data
loading, the pruner's hooks, forward, backward and the optimizer. Arms alternate so that drift
in the machine's speed hits all of them; ratios of the medians are printed.

    python benchmarks/pruner_overhead.py [--model resnet10t] [--image-size 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import timm
import torch
from omegaconf import OmegaConf

from sparsebench.data import build_datamodule
from sparsebench.module import ClassificationModule
from sparsebench.pruning.native import NativeGMP
from sparsebench.pruning.recipe import Recipe
from sparsebench.pruning.sparseml import SparseMLPruner


class StepTimer(pl.Callback):
    """Record seconds between consecutive batch ends within an epoch."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._last: float | None = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.durations.append(now - self._last)
        self._last = now


ARMS = ("plain", "native", "sparseml")


def run_arm(model_name: str, image_size: int, epochs: int, data_root: Path, arm: str) -> float:
    """Train one arm (plain, native or sparseml) and return its median step time in seconds."""
    pl.seed_everything(0, verbose=False)
    data_cfg = OmegaConf.create({
        "kind": "digits", "root": str(data_root), "image_size": image_size, "batch_size": 64,
        "num_workers": 0, "augment": False, "hflip": 0.0, "val_fraction": 0.2, "split_seed": 0,
    })
    datamodule = build_datamodule(data_cfg)
    model = timm.create_model(model_name, num_classes=datamodule.num_classes)
    datamodule.configure_transforms(timm.data.resolve_model_data_config(model), image_size)
    optimizer = lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)  # noqa: E731
    recipe = Recipe(name="overhead", final_sparsity=0.62, stabilization_epochs=0,
                    pruning_epochs=epochs - 1, finetuning_epochs=1, update_frequency=0.5)
    # SparseML sets the LR itself, so its arm gets no Lightning LR scheduler; neither do the others.
    module = ClassificationModule(model, datamodule.num_classes, optimizer, lr_milestones=None)
    timer = StepTimer()
    callbacks: list[pl.Callback] = [timer]
    if arm == "native":
        callbacks.insert(0, NativeGMP(recipe))
    elif arm == "sparseml":
        output_dir = Path(tempfile.mkdtemp(prefix="sparsebench-overhead-"))
        callbacks.insert(0, SparseMLPruner(recipe, output_dir, lr=0.01, lr_milestones=[], lr_gamma=1.0))
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=datamodule)
    return statistics.median(timer.durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10t", help="timm model name")
    parser.add_argument("--image-size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per arm (pruning spans all but the last)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each arm")
    args = parser.parse_args()
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

    data_root = Path(tempfile.gettempdir()) / "sparsebench-digits"
    steps: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for round_index in range(args.rounds):
        for arm in ARMS:
            steps[arm].append(run_arm(args.model, args.image_size, args.epochs, data_root, arm))
        print(f"round {round_index + 1}: " + ", ".join(f"{arm} {1e3 * steps[arm][-1]:.1f} ms/step" for arm in ARMS))
    median = {arm: statistics.median(values) for arm, values in steps.items()}
    print(f"{args.model} at {args.image_size} px, batch 64, {torch.get_num_threads()} threads:")
    print(f"  native GMP / plain training = {median['native'] / median['plain']:.3f} (target <= 1.05)")
    print(f"  SparseML / native GMP       = {median['sparseml'] / median['native']:.3f}")


if __name__ == "__main__":
    main()
