"""The results store: a JSON-lines file with one complete record per measurement.

Each record is appended with one ``write`` on a file opened with O_APPEND, and followed by
fsync, so concurrent jobs never interleave records and a killed process leaves at most one
torn last line. Readers skip torn or foreign lines with a warning and keep the rest.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = "sparsebench.benchmark/1"


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line, starting a new line first if the file ends in a torn one."""
    line = json.dumps(record, sort_keys=False, default=str) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and not _ends_with_newline(path, size):
            line = "\n" + line
        data = line.encode()
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"{path}: short write of {written} of {len(data)} bytes; the last line is torn")
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path, size: int) -> bool:
    with path.open("rb") as file:
        file.seek(size - 1)
        return file.read(1) == b"\n"


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Read every valid record from ``paths`` in file order, skipping bad lines with a warning.

    A line is skipped when it is not JSON (a torn write) or is JSON without this store's
    ``schema`` field (a foreign line). Missing files are skipped with a warning too.
    """
    records: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            log.warning("results file %s does not exist; skipped", path)
            continue
        skipped: list[int] = []
        with path.open(encoding="utf-8", errors="replace") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    skipped.append(number)
                    continue
                if not isinstance(record, dict) or record.get("schema") != SCHEMA:
                    skipped.append(number)
                    continue
                record["source_file"] = str(path)
                records.append(record)
        if skipped:
            log.warning(
                "%s: skipped %d torn or foreign line(s) (line %s); kept %d record(s) from it",
                path, len(skipped), ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else ""),
                sum(1 for record in records if record["source_file"] == str(path)),
            )
    return records


def completed_keys(records: Iterable[dict[str, Any]]) -> set[str]:
    """Return the keys of successful measurements; failed ones are retried on a rerun."""
    return {record["key"] for record in records if record.get("status") == "ok"}


def latest_by_key(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return the last record of each key, so a forced rerun replaces the older result."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        latest[record["key"]] = record
    return latest
