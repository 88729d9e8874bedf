"""Static post-training INT8 quantization of ONNX files: ``quantize(cfg)`` is what ``quantize.py`` runs.

Flow: check the file is float and the settings valid -> build the data module at the file's
input size -> calibrate on ``quantization.calibration_batches`` batches and write a QDQ file
with ONNX Runtime -> check every zero of the float weights is an integer zero of the INT8
weights -> measure top-1 of both files through ONNX Runtime -> write summary.json and
sparsity.json. ``prune.py quantize=int8`` runs the same steps on its pruned.onnx.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import timm
import timm.data
from omegaconf import DictConfig, OmegaConf, open_dict

from sparsebench.bench.onnx_file import inspect_input, prune_run_layers, run_summary
from sparsebench.calibration import check_calibration_size, onnx_top1
from sparsebench.config import absolute_path, set_on_command_line
from sparsebench.data import ImageDataModule, build_datamodule
from sparsebench.export import file_facts
from sparsebench.int8 import check_float_file, quantize_file, validate_quantization
from sparsebench.models import check_model_name
from sparsebench.train import write_json

log = logging.getLogger(__name__)


def int8_path(float_path: Path, folder: Path) -> Path:
    """Return where the INT8 copy of ``float_path`` goes: ``<stem>.int8.onnx`` in ``folder``."""
    return folder / f"{float_path.stem}.int8.onnx"


def quantize_and_measure(
    float_path: Path, target: Path, datamodule: ImageDataModule, settings: DictConfig,
    layer_names: list[str] | None = None,
) -> dict[str, Any]:
    """Quantize ``float_path`` into ``target`` and measure both files' top-1 and sparsity.

    Top-1 of both files is measured through ONNX Runtime on the whole validation split, so
    the two figures differ only by quantization. Sparsity covers ``layer_names`` when given
    (the recipe's pruned layers), else every Conv, Gemm and MatMul weight.
    """
    file_input = inspect_input(float_path, datamodule.cfg.batch_size)
    check_float_file(float_path)
    check_calibration_size(datamodule, settings)

    sparsity = quantize_file(float_path, target, datamodule, settings, file_input, layer_names)
    val_loader = datamodule.val_dataloader()
    float_acc = onnx_top1(float_path, val_loader, file_input["shape"])
    int8_acc = onnx_top1(target, val_loader, file_input["shape"])
    log.info(
        "top-1 through ONNX Runtime on %d validation images: float %.2f%%, INT8 %.2f%% (%+.2f points)",
        len(datamodule.val_set), 100 * float_acc, 100 * int8_acc, 100 * (int8_acc - float_acc),  # type: ignore[arg-type]
    )
    return {
        "path": str(target),
        "source": str(float_path),
        "float/val_acc": float_acc,
        "int8/val_acc": int8_acc,
        "delta/val_acc_points": 100 * (int8_acc - float_acc),
        "sparsity": sparsity,
        "settings": OmegaConf.to_container(settings, resolve=True),
        **file_facts(target),
    }


def quantize(cfg: DictConfig) -> dict[str, Any]:
    """Quantize ``cfg.onnx`` to INT8 into the run folder and return the run's summary."""
    with open_dict(cfg):
        if cfg.onnx:
            cfg.onnx = absolute_path(str(cfg.onnx))
        if cfg.data.get("root"):
            cfg.data.root = absolute_path(str(cfg.data.root))
    validate_quantization(cfg.quantization)
    source = check_source(cfg)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    source_summary = run_summary(source) or {}

    datamodule = build_datamodule(cfg.data)
    file_size = inspect_input(source, 1)["shape"][-1]
    configure_for_file(cfg, datamodule, file_size)
    check_classes(source, datamodule)
    layer_names = prune_run_layers(source)

    facts = quantize_and_measure(source, int8_path(source, output_dir), datamodule, cfg.quantization, layer_names)
    write_json(output_dir / "sparsity.json", {"source": str(source), "layers": layer_names, **facts["sparsity"]})
    summary = {
        "model": source_summary.get("model", cfg.model.name),
        "timm_name": source_summary.get("timm_name", cfg.model.timm_name),
        "recipe": source_summary.get("recipe"),
        "image_size": file_size,
        "data": cfg.data.kind,
        **{key: facts[key] for key in ("float/val_acc", "int8/val_acc", "delta/val_acc_points")},
        "sparsity/float": facts["sparsity"]["float"]["overall"],
        "sparsity/int8": facts["sparsity"]["int8"]["overall"],
        "quantization": facts["settings"],
        "onnx": {
            "float": {"path": str(source), "val_acc": facts["float/val_acc"], **file_facts(source)},
            "int8": {"path": facts["path"], "val_acc": facts["int8/val_acc"],
                     **{key: facts[key] for key in ("bytes", "gzip_bytes", "gzip_ratio")}},
        },
        "sparsity_report": str(output_dir / "sparsity.json"),
    }
    write_json(output_dir / "summary.json", summary)
    log.info("INT8 ONNX file: %s", facts["path"])
    return summary


def check_source(cfg: DictConfig) -> Path:
    """Return ``cfg.onnx`` as a path, raising when it is unset or missing or names another model.

    When the file's run folder names its model in ``summary.json`` and ``model=`` is not on the
    command line, ``cfg.model`` takes that model's name and timm name, which set the normalization.
    """
    if not cfg.onnx:
        raise ValueError("onnx is not set; give the float file to quantize, e.g. onnx=outputs/prune/runs/<run>/pruned.onnx.")
    path = Path(cfg.onnx)
    if not path.is_file():
        raise FileNotFoundError(f"onnx={cfg.onnx!r} does not exist or is not a file; give the path of a float ONNX file.")
    summary = run_summary(path) or {}
    saved_model = summary.get("model")
    if saved_model and saved_model != cfg.model.name:
        if set_on_command_line("model") or not summary.get("timm_name"):
            raise ValueError(
                f"onnx={str(path)!r} was exported from model {saved_model!r} (see {path.parent / 'summary.json'}), "
                f"but model={cfg.model.name!r}; set model={saved_model} so the images get that model's normalization."
            )
        log.info("onnx=%s was exported from model %s (timm %s, its summary.json); quantizing it as that model",
                 path, saved_model, summary["timm_name"])
        with open_dict(cfg):
            cfg.model.name = saved_model
            cfg.model.timm_name = summary["timm_name"]
    check_model_name(cfg.model.timm_name)
    return path


def configure_for_file(cfg: DictConfig, datamodule: ImageDataModule, file_size: int) -> None:
    """Give the data module the model's normalization at the file's input size.

    Raises ValueError when ``data.image_size`` is set to another size than the file takes.
    """
    requested = cfg.data.get("image_size")
    if requested is not None and int(requested) != file_size:
        raise ValueError(
            f"data.image_size={requested} differs from the {file_size} px input of onnx={cfg.onnx!r}; "
            f"set data.image_size={file_size}, or leave it unset to take the file's size."
        )
    pretrained_cfg = timm.get_pretrained_cfg(cfg.model.timm_name)
    data_config = timm.data.resolve_data_config(pretrained_cfg=pretrained_cfg.to_dict() if pretrained_cfg else {})
    datamodule.configure_transforms(data_config, file_size)


def check_classes(path: Path, datamodule: ImageDataModule) -> None:
    """Raise ValueError when the file's class count differs from the data's, since top-1 would mean nothing."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.get_outputs()[0].shape
    classes = outputs[-1] if outputs and isinstance(outputs[-1], int) else None
    if classes is not None and classes != datamodule.num_classes:
        raise ValueError(
            f"onnx={str(path)!r} has {classes} outputs, but data={datamodule.cfg.kind} has {datamodule.num_classes} "
            "classes; quantize with the data the model was trained on (data=..., data.root=...)."
        )
