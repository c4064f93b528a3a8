"""Tests of ``mint.audit``: appending, and detecting every kind of tampering."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from mint_testkit import FakeClock

from mint.audit import (
    GENESIS_HASH,
    AuditError,
    AuditLog,
    AuditProblem,
    Checkpoint,
    record_hash,
    verify,
)


def _write_log(path: Path, count: int) -> AuditLog:
    log = AuditLog(path, FakeClock())
    for number in range(count):
        log.append("token_minted", {"jti": f"jti-{number}", "scopes": ["read"], "ttl": 900})
    return log


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_append_returns_consecutive_indexes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock())
    assert log.append("a", {}) == 0
    assert log.append("b", {}) == 1


def test_append_chains_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    first, second = (json.loads(line) for line in _lines(path))
    assert first["prev"] == GENESIS_HASH
    assert second["prev"] == first["hash"]
    assert second["hash"] == record_hash(second)


def test_append_continues_chain_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    assert AuditLog(path, FakeClock()).append("c", {}) == 2
    assert verify(path).ok


def test_append_from_many_threads_keeps_chain_intact(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FakeClock())
    threads = [
        threading.Thread(target=log.append, args=("e", {"n": number})) for number in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = verify(path)
    assert result.ok
    assert result.count == 20


def test_verify_reports_count_of_intact_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    result = verify(path)
    assert result.ok
    assert result.count == 3


def test_verify_names_edited_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    lines = _lines(path)
    lines[1] = lines[1].replace(b"jti-1", b"jti-X")
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert result.problem is AuditProblem.HASH_MISMATCH
    assert result.broken_index == 1


def test_verify_names_record_after_rehashed_edit(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    lines = _lines(path)
    record = json.loads(lines[1])
    record["fields"]["jti"] = "jti-X"
    record["hash"] = record_hash(record)
    lines[1] = json.dumps(record).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert result.problem is AuditProblem.CHAIN_BREAK
    assert result.broken_index == 2


def test_verify_names_reordered_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert result.problem is AuditProblem.BAD_INDEX
    assert result.broken_index == 1


def test_verify_names_removed_first_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    path.write_bytes(b"".join(_lines(path)[1:]))
    result = verify(path)
    assert result.problem is AuditProblem.BAD_INDEX
    assert result.broken_index == 0


def test_verify_detects_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    result = verify(path)
    assert result.problem is AuditProblem.TORN_LAST_LINE
    assert result.broken_index == 2
    assert result.count == 2


def test_verify_detects_tail_truncation_with_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    checkpoint = Checkpoint(count=3, head=verify(path).head)
    path.write_bytes(b"".join(_lines(path)[:2]))
    result = verify(path, checkpoint)
    assert result.problem is AuditProblem.TRUNCATED
    assert result.count == 2


def test_verify_detects_rewritten_history_with_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    checkpoint = Checkpoint(count=2, head=verify(path).head)
    path.unlink()
    log = AuditLog(path, FakeClock())
    log.append("forged", {})
    log.append("forged", {})
    result = verify(path, checkpoint)
    assert result.problem is AuditProblem.HEAD_MISMATCH
    assert result.broken_index == 1


def test_verify_accepts_longer_log_than_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 2)
    checkpoint = Checkpoint(count=2, head=verify(path).head)
    log.append("later", {})
    assert verify(path, checkpoint).ok


def test_verify_names_malformed_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    path.write_bytes(path.read_bytes() + b"not json\n")
    result = verify(path)
    assert result.problem is AuditProblem.MALFORMED_RECORD
    assert result.broken_index == 2


def test_append_rejects_log_with_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 2)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(AuditError, match="torn"):
        log.append("next", {})
