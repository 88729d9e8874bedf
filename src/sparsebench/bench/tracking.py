"""One experiment-tracker run per measurement, through the loggers the ``logger`` group builds.

With ``logger=wandb`` (offline by default) each measurement becomes a W&B run named
``<model>-<engine>-b<batch>``, grouped by sweep, with the full config, the engine settings read
back, the machine facts, one history step per repeat and the aggregate metrics in its summary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from sparsebench.trainer import build_loggers, finish_loggers

log = logging.getLogger(__name__)


def log_measurement(cfg: DictConfig, record: dict[str, Any], output_dir: Path) -> None:
    """Log ``record`` as one run of the configured logger; a logger error is logged, not raised.

    The record is already in the results store when this runs, so a tracker failure loses no
    measurement.
    """
    if cfg.logger.kind == "none":
        return
    measurement = record["measurement"]
    name = f"{measurement['model']}-{measurement['engine']}-b{measurement['batch_size']}"
    with open_dict(cfg):
        if cfg.logger.get("group") is None:
            cfg.logger.group = record["sweep"]
    try:
        loggers = build_loggers(cfg, output_dir, name)
        for logger in loggers:
            logger.log_hyperparams({
                "measurement_key": record["key"],
                "engine_settings": record.get("engine_settings"),
                "machine": record["machine"],
                "model_facts": {k: v for k, v in (record.get("model_facts") or {}).items() if k != "sparsity/layers"},
            })
            for step, repeat in enumerate(record.get("repeats") or []):
                logger.log_metrics({f"repeat/{key}": value for key, value in repeat.items()}, step=step)
            logger.save()
        finish_loggers(loggers, summary_metrics(record))
    except Exception as error:  # the tracker is optional; the results store already has the record
        log.error("logging measurement %s to logger=%s failed: %s", record["key"], cfg.logger.kind, error)


def summary_metrics(record: dict[str, Any]) -> dict[str, Any]:
    """Return the run summary: status, aggregate metrics and the model's scalar facts."""
    summary: dict[str, Any] = {"status": record["status"]}
    if record["error"]:
        summary["error"] = f"{record['error']['type']}: {record['error']['message']}"[:1000]
    summary.update(record.get("metrics") or {})
    for key, value in (record.get("model_facts") or {}).items():
        if isinstance(value, (int, float)):
            summary[key] = value
    return summary
