"""The hash-chained, append-only audit log of the mint (JSON lines).

Each line is one record, a JSON object with exactly these members::

    {"index": 0, "time": 1767225600, "event": "token_minted", "fields": {...},
     "prev": "<hex SHA-256 of the previous record, 64 zeros for the first>",
     "hash": "<hex SHA-256 of this record's canonical form without the hash member>"}

The canonical form is the JSON text with keys sorted, no insignificant whitespace and
non-ASCII characters unescaped, encoded as UTF-8. Values are strings, integers, booleans,
lists and objects only (no floats), so every JSON library produces the same bytes.

A record is written and fsync'd before ``append`` returns, so the mint returns a token only
after its record is on disk. Appends are serialised by a lock inside the process and an
``fcntl.flock`` on the file across processes.

Limitations:
    A hash chain detects edits, reordering and removal at the front or in the middle, but not
    removal of records at the end: ``verify`` can prove that only when given a checkpoint
    (an earlier count and head hash) kept elsewhere. Signed checkpoints and a Merkle tree
    are not built yet.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
_RECORD_KEYS = {"index", "time", "event", "fields", "prev", "hash"}
_TAIL_CHUNK = 4096


class AuditError(Exception):
    """The audit log cannot be appended to."""


class AuditProblem(StrEnum):
    """Reason that ``verify`` stopped at a record."""

    MALFORMED_RECORD = "malformed_record"
    TORN_LAST_LINE = "torn_last_line"
    BAD_INDEX = "bad_index"
    CHAIN_BREAK = "chain_break"
    HASH_MISMATCH = "hash_mismatch"
    TRUNCATED = "truncated"
    HEAD_MISMATCH = "head_mismatch"


@dataclass(frozen=True)
class Checkpoint:
    """A record count and the hash of the last record, kept apart from the log."""

    count: int
    head: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of ``verify``.

    Attributes:
        count: records that verified, from the start of the file.
        head: hash of the last verified record, or ``GENESIS_HASH`` when none.
        broken_index: 0-based line number of the first broken record, or None when intact.
        problem: why that record is broken, or None when intact.
        detail: a sentence describing the problem.
    """

    count: int
    head: str
    broken_index: int | None = None
    problem: AuditProblem | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when every record verified."""
        return self.problem is None


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Serialise ``value`` in the canonical form the record hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """Compute the hex SHA-256 of a record's canonical form without its ``hash`` member."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class AuditLog:
    """Appender of one audit log file.

    Args:
        path: the JSON-lines file; created on first append.
        clock: returns the current time in seconds since the epoch.
    """

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    def append(self, event: str, fields: Mapping[str, Any]) -> int:
        """Append one record, fsync it, and return its index.

        Raises:
            AuditError: when the last line is torn or not a record, so the chain cannot be
                continued; run ``ztmint audit verify`` on the file.
        """
        with self._lock:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                index, prev = _read_head(fd, self._path)
                record: dict[str, Any] = {
                    "index": index,
                    "time": int(self._clock()),
                    "event": event,
                    "fields": dict(fields),
                    "prev": prev,
                }
                record["hash"] = record_hash(record)
                os.write(fd, canonical_json(record) + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        return index


def _read_head(fd: int, path: Path) -> tuple[int, str]:
    """Return the next index and the hash of the last record of the open log."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return 0, GENESIS_HASH
    last_byte = os.pread(fd, 1, size - 1)
    if last_byte != b"\n":
        raise AuditError(f"last line of {path} is torn (no newline); run `ztmint audit verify`")
    # Read backwards until the newline before the last line is in the buffer.
    buffer = b""
    offset = size
    while offset > 0 and buffer.count(b"\n") < 2:
        start = max(0, offset - _TAIL_CHUNK)
        buffer = os.pread(fd, offset - start, start) + buffer
        offset = start
    last_line = buffer.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        record = json.loads(last_line)
        return int(record["index"]) + 1, str(record["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(
            f"last line of {path} is not an audit record; run `ztmint audit verify`"
        ) from exc


def verify(path: Path, checkpoint: Checkpoint | None = None) -> VerifyResult:
    """Check every record of the log and report the first broken one.

    With a ``checkpoint``, also report a log that is shorter than the checkpoint
    (``TRUNCATED``) or whose record at the checkpoint's count has another hash
    (``HEAD_MISMATCH``).
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    complete = lines[:-1]
    prev = GENESIS_HASH
    heads: list[str] = []

    for index, line in enumerate(complete):
        problem, detail = _check_line(line, index, prev)
        if problem is not None:
            return VerifyResult(index, prev, index, problem, detail)
        prev = json.loads(line)["hash"]
        heads.append(prev)

    count = len(complete)
    if torn:
        detail = f"line {count} has no newline: a write was interrupted"
        return VerifyResult(count, prev, count, AuditProblem.TORN_LAST_LINE, detail)
    if checkpoint is not None:
        if count < checkpoint.count:
            detail = f"log has {count} records; the checkpoint recorded {checkpoint.count}"
            return VerifyResult(count, prev, count, AuditProblem.TRUNCATED, detail)
        if checkpoint.count > 0 and heads[checkpoint.count - 1] != checkpoint.head:
            broken = checkpoint.count - 1
            detail = f"record {broken} does not have the checkpoint's head hash"
            return VerifyResult(count, prev, broken, AuditProblem.HEAD_MISMATCH, detail)
    return VerifyResult(count, prev)


def _check_line(line: bytes, index: int, prev: str) -> tuple[AuditProblem | None, str]:
    try:
        record = json.loads(line)
    except ValueError:
        return AuditProblem.MALFORMED_RECORD, f"line {index} is not JSON"
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        return AuditProblem.MALFORMED_RECORD, f"line {index} does not have the record members"
    if record["index"] != index:
        return AuditProblem.BAD_INDEX, f"line {index} carries index {record['index']!r}"
    if record["prev"] != prev:
        expected = "the genesis hash" if index == 0 else f"the hash of record {index - 1}"
        return AuditProblem.CHAIN_BREAK, f"record {index} does not point at {expected}"
    if record["hash"] != record_hash(record):
        return AuditProblem.HASH_MISMATCH, f"record {index} was changed after it was written"
    return None, ""
