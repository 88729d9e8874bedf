"""The table a person reads at the end of a benchmark sweep, listing every failure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sparsebench.bench.store import read_records

log = logging.getLogger(__name__)


def summary_lines(records: list[dict[str, Any]]) -> list[str]:
    """Format one line per record: throughput and p99 latency, or the error."""
    lines = []
    for record in records:
        measurement = record["measurement"]
        label = (f"{measurement['model']:<16} {measurement['source'].get('label', ''):<8} "
                 f"{measurement['engine']:<10} b{measurement['batch_size']:<4}")
        if record["status"] == "ok":
            metrics = record["metrics"]
            lines.append(
                f"ok     {label} {metrics['throughput/items_per_s']:10.1f} ± {metrics['throughput/items_per_s_std']:.1f} "
                f"items/s  p99 {metrics['latency_ms/p99']:.2f} ms"
            )
        else:
            error = record["error"]
            lines.append(f"FAILED {label} in {error['phase']}: {error['type']}: {error['message'].splitlines()[0][:200]}")
    return lines


class SweepSummary(Callback):
    """Hydra callback: after a multirun, log every stored record of that sweep, failures included.

    Each job's end stores the resolved results file and sweep name, because the sweep-level
    config cannot resolve ``${hydra:...}`` paths any more once the jobs are done. With a
    launcher that runs jobs in other processes no summary can be built, and a log line reports that.
    """

    def __init__(self) -> None:
        self.results_file: Path | None = None
        self.sweep: str | None = None
        self.completed_jobs = 0

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.utils import JobStatus

        self.results_file = Path(config.results_file)
        self.sweep = Path(HydraConfig.get().sweep.dir).name
        if job_return.status == JobStatus.COMPLETED:
            self.completed_jobs += 1

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.results_file is None:
            log.info("no sweep summary: the jobs ran in other processes; run report.py for the tables")
            return
        records = read_records([self.results_file]) if self.results_file.is_file() else []
        records = [record for record in records if record.get("sweep") == self.sweep]
        failed = sum(record["status"] != "ok" for record in records)
        # A completed job that stored nothing in this sweep found its measurement stored already.
        skipped = max(0, self.completed_jobs - len(records))
        log.info("sweep %s: %d measurement(s) stored in %s, %d failed, %d skipped as stored before (force=true "
                 "measures them again)", self.sweep, len(records), self.results_file, failed, skipped)
        for line in summary_lines(records):
            log.info(line)
        if failed:
            log.warning("%d measurement(s) failed; rerun the same command to retry them (stored ones are skipped)", failed)
