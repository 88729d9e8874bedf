"""INT8 quantization of a pruned digits model: sparsity kept, accuracy kept, every engine runs it, bad input named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import timm.data
import torch
from omegaconf import OmegaConf

from sparsebench.bench.runner import benchmark
from sparsebench.data import build_datamodule
from sparsebench.export import onnx_weights
from sparsebench.prune import prune
from sparsebench.pruning.masks import magnitude_masks, prunable_layers
from sparsebench.pruning.recipe import Recipe
from sparsebench.quantize import check_source, quantize

from compose import compose_config
from presets import CONF_DIR, TINY_MODEL

IMAGE_SIZE = 32
RECIPE = "oneshot_50"
PRUNE = [*TINY_MODEL, f"data.image_size={IMAGE_SIZE}", f"recipe={RECIPE}", "logger=none",
         "trainer.enable_progress_bar=false"]
# One short repeat per engine: enough to show the file compiles and runs, not to rank engines.
QUICK_BENCH = ["bench=quick", "bench.duration_s=0.3", "bench.repeats=1", "bench.warmup_s=0.1", "bench.warmup_calls=1",
               "logger=none", *TINY_MODEL]
ENGINES = ("ort", "openvino", "deepsparse")


def fit(model: torch.nn.Module, batches: list, masks: dict[str, torch.Tensor] | None = None) -> None:
    """Run one epoch of AdamW over ``batches``, multiplying ``masks`` into the weights after every step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    modules = dict(model.named_modules())
    model.train()
    for images, labels in batches:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if masks:
            with torch.no_grad():
                for name, mask in masks.items():
                    modules[name].weight.mul_(mask)


@pytest.fixture(scope="module")
def pruned_weights(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Train test_resnet on digits for one epoch, prune it to 50% as the recipe would, finetune one epoch.

    A plain loop is several times quicker than a Lightning prune run and ends near 95% top-1,
    so the INT8 accuracy check compares against a model that has learned something.
    """
    torch.manual_seed(0)
    data = OmegaConf.load(CONF_DIR / "data" / "digits.yaml")
    data.root, data.image_size, data.batch_size = str(data_dir / "digits"), IMAGE_SIZE, 32
    datamodule = build_datamodule(data)
    model = timm.create_model("test_resnet", num_classes=datamodule.num_classes)
    datamodule.configure_transforms(timm.data.resolve_model_data_config(model), IMAGE_SIZE)
    batches = list(datamodule.train_dataloader())

    fit(model, batches)
    layers = prunable_layers(model, Recipe.from_config(OmegaConf.load(CONF_DIR / "recipe" / f"{RECIPE}.yaml")))
    masks = magnitude_masks({name: layer.weight for name, layer in layers.items()}, 0.5)
    with torch.no_grad():
        for name, mask in masks.items():
            layers[name].weight.mul_(mask)
    fit(model, batches, masks)

    path = tmp_path_factory.mktemp("weights") / "pruned.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, pruned_weights: Path) -> tuple[Path, dict]:
    """Run prune.py's one-shot recipe with quantize=int8 on the pruned weights; return the run folder and summary."""
    folder = tmp_path_factory.mktemp("prune")
    summary = prune(compose_config("prune", [*PRUNE, f"checkpoint={pruned_weights}", "quantize=int8"], folder, data_dir))
    return folder / "run", summary


def test_int8_file_written(int8_run: tuple[Path, dict]) -> None:
    run, summary = int8_run
    assert (run / "pruned.int8.onnx").is_file()
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["onnx"]["int8"]["path"] == str(run / "pruned.int8.onnx")
    assert summary["onnx"]["int8"]["gzip_bytes"] < summary["onnx"]["pruned"]["gzip_bytes"]
    assert summary["quantization"]["per_channel"] is True


def test_int8_sparsity_matches_float(int8_run: tuple[Path, dict]) -> None:
    """Every pruned zero stays; the only extra zeros are weights below half a quantization step."""
    run, summary = int8_run
    report = json.loads((run / "sparsity.json").read_text())
    rounded = report["int8_rounded_to_zero"]
    for name, layer in report["onnx"]["layers"].items():
        assert report["int8"]["layers"][name]["zeros"] == layer["zeros"] + rounded.get(name, 0), name
    assert sum(rounded.values()) < 0.001 * report["int8"]["numel"]
    assert summary["sparsity/int8"] == pytest.approx(summary["sparsity/onnx"], abs=0.001)
    assert summary["sparsity/onnx"] == pytest.approx(0.5, abs=0.005)


def test_int8_zeros_are_stored_zeros(int8_run: tuple[Path, dict]) -> None:
    run, _ = int8_run
    float_weights = onnx_weights(run / "pruned.onnx")
    int8_weights = onnx_weights(run / "pruned.int8.onnx")
    assert set(int8_weights) == set(float_weights)
    for name, weight in float_weights.items():
        assert int8_weights[name].shape == weight.shape, name
        assert not int8_weights[name][weight == 0].any(), name


def test_int8_accuracy_within_two_points(int8_run: tuple[Path, dict]) -> None:
    _, summary = int8_run
    assert summary["pruned_onnx/val_acc"] > 0.8
    assert summary["pruned_onnx/val_acc"] == pytest.approx(summary["pruned/val_acc"], abs=0.01)
    assert abs(summary["delta/int8_val_acc_points"]) <= 2.0
    assert summary["delta/int8_val_acc_points"] == pytest.approx(
        100 * (summary["int8/val_acc"] - summary["pruned_onnx/val_acc"])
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_int8_file_runs_on_engine(int8_run: tuple[Path, dict], data_dir: Path, tmp_path: Path, engine: str) -> None:
    run, summary = int8_run
    int8_file = run / "pruned.int8.onnx"
    written = int8_file.read_bytes()
    cfg = compose_config("benchmark", [*QUICK_BENCH, f"onnx={int8_file}", f"engine={engine}"], tmp_path, data_dir)
    record = benchmark(cfg)
    assert record["status"] == "ok", record["error"]
    assert record["model_facts"]["weights/precision"] == "int8"
    assert record["model_facts"]["sparsity/prunable"] == pytest.approx(summary["sparsity/int8"])
    assert record["accuracy"]["val/acc"] == summary["int8/val_acc"]
    assert record["metrics"]["throughput/items_per_s"] > 0
    settings = record["engine_settings"]
    assert settings["precision"] == "fp32"
    if engine == "deepsparse":
        assert settings["effective_precision"] == "unknown"
        assert "fraction_of_supported_ops" in settings["effective_precision_source"]
    else:
        assert settings["effective_precision"] == "int8", settings["layer_precisions"]
    assert int8_file.read_bytes() == written


def test_standalone_quantize_run(int8_run: tuple[Path, dict], make_config, tmp_path: Path) -> None:
    run, prune_summary = int8_run
    summary = quantize(make_config("quantize", [*TINY_MODEL, f"onnx={run / 'pruned.onnx'}",
                                                "quantization.calibration_batches=2"]))
    written = tmp_path / "run" / "pruned.int8.onnx"
    assert written.is_file()
    assert summary["onnx"]["int8"]["path"] == str(written)
    assert summary == json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "test_resnet"
    assert summary["image_size"] == IMAGE_SIZE
    assert summary["float/val_acc"] == prune_summary["pruned_onnx/val_acc"]
    assert abs(summary["delta/val_acc_points"]) <= 2.0
    assert summary["sparsity/int8"] == pytest.approx(summary["sparsity/float"], abs=0.001)
    report = json.loads((tmp_path / "run" / "sparsity.json").read_text())
    assert report["layers"] == list(json.loads((run / "sparsity.json").read_text())["checkpoint"]["layers"])


def test_quantized_file_rejected(int8_run: tuple[Path, dict], make_config) -> None:
    run, _ = int8_run
    cfg = make_config("quantize", [*TINY_MODEL, f"onnx={run / 'pruned.int8.onnx'}"])
    with pytest.raises(ValueError, match=r"is quantized already \(nodes \['DequantizeLinear', 'QuantizeLinear'\]\)"):
        quantize(cfg)


def test_other_image_size_rejected(int8_run: tuple[Path, dict], make_config) -> None:
    run, _ = int8_run
    cfg = make_config("quantize", [*TINY_MODEL, f"onnx={run / 'pruned.onnx'}", "data.image_size=48"])
    with pytest.raises(ValueError, match="data.image_size=48 differs from the 32 px input.*set data.image_size=32"):
        quantize(cfg)


def test_too_few_images_rejected(int8_run: tuple[Path, dict], make_config) -> None:
    run, _ = int8_run
    cfg = make_config("quantize", [*TINY_MODEL, f"onnx={run / 'pruned.onnx'}", "quantization.calibration_batches=100"])
    with pytest.raises(ValueError, match=r"quantization.calibration_batches=100 with data.batch_size=64 needs 6400 "
                                         r"images, but the train split has 1437; set quantization.calibration_batches=22"):
        quantize(cfg)


def test_wrong_batch_shape_rejected(int8_run: tuple[Path, dict]) -> None:
    """A file whose input differs from the images is named at the first calibration batch."""
    from sparsebench.calibration import LoaderCalibrationReader

    run, _ = int8_run
    loader = [(torch.zeros(2, 3, 48, 48), torch.zeros(2))]
    reader = LoaderCalibrationReader(loader, "input", 1, [2, 3, 32, 32], run / "pruned.onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"images of shape \[3, 48, 48\].*takes \[3, 32, 32\]; set data.image_size=32"):
        reader.get_next()


def test_prune_rejects_unknown_quantize(make_config) -> None:
    with pytest.raises(ValueError, match="quantize='fp8' is unknown; use quantize=int8"):
        prune(make_config("prune", [*PRUNE, "quantize=fp8"]))


def test_bad_calibration_method_rejected(make_config) -> None:
    with pytest.raises(ValueError, match="quantization.calibration_method='Mean' is unknown"):
        prune(make_config("prune", [*PRUNE, "quantize=int8", "quantization.calibration_method=Mean"]))


def resnet50_run_file(folder: Path) -> Path:
    """Write a placeholder float file whose summary.json names resnet50 as its model."""
    path = folder / "pruned.onnx"
    path.write_bytes(b"placeholder")
    (folder / "summary.json").write_text(json.dumps({"model": "resnet50", "timm_name": "resnet50"}))
    return path


def test_model_taken_from_run_summary(make_config, tmp_path: Path) -> None:
    path = resnet50_run_file(tmp_path)
    cfg = make_config("quantize", [f"onnx={path}"])
    assert check_source(cfg) == path
    assert cfg.model.name == "resnet50"
    assert cfg.model.timm_name == "resnet50"


def test_model_mismatch_on_command_line(make_config, tmp_path: Path) -> None:
    cfg = make_config("quantize", [f"onnx={resnet50_run_file(tmp_path)}", "model=efficientnet_b0"])
    with pytest.raises(ValueError, match="set model=resnet50"):
        check_source(cfg)
