"""The JSON-lines results store: whole records, torn and foreign lines, reruns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from sparsebench.bench.store import SCHEMA, append_record, completed_keys, latest_by_key, read_records


def record(key: str, status: str = "ok") -> dict:
    return {"schema": SCHEMA, "key": key, "status": status}


def test_append_then_read(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_record(path, record("a"))
    append_record(path, record("b", "failed"))
    records = read_records([path])
    assert [r["key"] for r in records] == ["a", "b"]
    assert path.read_text().count("\n") == 2


def test_torn_and_foreign_lines_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(
        json.dumps(record("a")) + "\n"
        + '{"some": "other tool"}\n'
        + "[1, 2]\n"
        + json.dumps(record("b")) + "\n"
        + json.dumps(record("c"))[:20]  # a write cut off by a kill
    )
    with caplog.at_level(logging.WARNING):
        records = read_records([path])
    assert [r["key"] for r in records] == ["a", "b"]
    assert "skipped 3 torn or foreign line(s) (line 2, 3, 5)" in caplog.text
    assert "kept 2 record(s)" in caplog.text


def test_append_after_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("a")) + "\n" + '{"schema": "sparse')
    append_record(path, record("b"))
    assert [r["key"] for r in read_records([path])] == ["a", "b"]


def test_missing_file_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert read_records([tmp_path / "absent.jsonl"]) == []
    assert "does not exist" in caplog.text


def test_only_successes_count_as_done() -> None:
    records = [record("a"), record("b", "failed")]
    assert completed_keys(records) == {"a"}


def test_latest_record_per_key_wins() -> None:
    first, second = record("a"), record("a")
    first["value"], second["value"] = 1, 2
    assert latest_by_key([first, second])["a"]["value"] == 2
