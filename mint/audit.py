"""The audit log of the mint: hash-chained JSON lines that are also an RFC 9162 Merkle tree.

Each line is one record, a JSON object with exactly these members::

    {"index": 0, "time": 1767225600, "event": "token_minted", "fields": {...},
     "prev": "<hex SHA-256 of the previous record, 64 zeros for the first>",
     "hash": "<hex SHA-256 of this record's canonical form without the hash member>"}

The canonical form is the JSON text with keys sorted, no insignificant whitespace and
non-ASCII characters unescaped, encoded as UTF-8. Values are strings, integers, booleans,
lists and objects only (no floats), so every JSON library produces the same bytes. A line is
the canonical form of the whole record followed by a newline.

Two structures cover the same records:

- The hash chain (``prev``) names the first broken record by its index.
- The Merkle tree (RFC 9162 section 2.1) has one leaf per record, and the leaf is the exact
  line without its newline. A signed checkpoint (size, root hash) of the tree proves, offline,
  that a record is in the log (inclusion proof) and that a later log still starts with the
  records an earlier checkpoint covered (consistency proof).

``AuditLog`` writes and fsyncs a record before ``append`` returns, so the mint returns a token
only after its record is on disk. Appends are serialised by a lock inside the process and
an ``fcntl.flock`` on the file across processes. Under the lock each appender first reads
the records that other processes added, so several worker processes write one linear chain.

Crash safety: a write interrupted by a crash leaves bytes after the last newline (a torn
record). Opening the log moves those bytes to ``<log>.torn-<unix time>`` and truncates the
log to its last complete record. The records before it are kept. Opening fails when any
complete record does not verify, and the mint then does not start.

Limitations:
    The whole tree is rebuilt in memory from the file at open, which reads, parses and
    hashes every record, so startup time grows with the log. ``scripts/audit-rebuild-bench.py``
    measured 2.1 to 2.5 s for 100 000 records (42 MB) on a shared 2-core AMD EPYC VM. Each
    ``append_with_proof`` signs a checkpoint through the KMS while it holds the file lock,
    so mints are serialised by one KMS call each. Replicas that keep separate log files
    must use distinct checkpoint origins, or the KMS signs two different trees under one
    origin, which a monitor sees as a forked log.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from authz.jose import b64url_decode
from mint.kms import KmsError, ReceiptSigner
from mint.transparency.checkpoint import (
    Checkpoint,
    KmsNoteSigner,
    NoteSigner,
    sign_checkpoint,
)
from mint.transparency.merkle import MerkleTree, leaf_hash

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
CHECKPOINT_HISTORY_INTERVAL = 1000
"""Every checkpoint whose tree size is a multiple of this is also kept as ``<size>.txt``."""

_RECORD_KEYS = {"index", "time", "event", "fields", "prev", "hash"}


class AuditError(Exception):
    """The audit log cannot be opened or appended to."""


class AuditLogCorrupt(AuditError):
    """A complete record of the log does not verify, or the file shrank or was replaced.

    Attributes:
        index: the 0-based index of the first broken record, or None when the problem is
            the whole file (it shrank or was replaced).
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class AuditTornRecord(AuditError):
    """Another process left a torn record at the end of the log while this one was running."""


class AuditProblem(StrEnum):
    """Reason that verification stopped at a record."""

    MALFORMED_RECORD = "malformed_record"
    TORN_LAST_LINE = "torn_last_line"
    BAD_INDEX = "bad_index"
    CHAIN_BREAK = "chain_break"
    HASH_MISMATCH = "hash_mismatch"
    TRUNCATED = "truncated"
    HISTORY_REWRITTEN = "history_rewritten"


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


@dataclass(frozen=True)
class LogScan:
    """A log file read and checked record by record.

    Attributes:
        result: the hash chain verification result.
        records: the lines of the verified records, without their newlines.
        tree: the Merkle tree whose leaves are ``records``.
        torn_tail: bytes after the last newline, empty when the file ends with one.
    """

    result: VerifyResult
    records: list[bytes]
    tree: MerkleTree
    torn_tail: bytes = b""


@dataclass(frozen=True)
class InclusionEvidence:
    """Proof that one record is in the log, for the client to keep with its token.

    Attributes:
        index: the record's 0-based index, which is also its leaf index.
        record: the record line without its newline, the Merkle leaf.
        tree_size: the size of the tree the proof and the checkpoint are for.
        proof: the audit path from the leaf to the root (RFC 9162 section 2.1.3.1).
        checkpoint: the signed checkpoint text of ``tree_size``, or None when the log has no
            checkpoint signer.
    """

    index: int
    record: bytes
    tree_size: int
    proof: list[bytes]
    checkpoint: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        """Return the evidence as JSON values: hashes in standard base64, record as text."""
        return {
            "index": self.index,
            "record": self.record.decode("utf-8"),
            "tree_size": self.tree_size,
            "inclusion_proof": [base64.b64encode(node).decode("ascii") for node in self.proof],
            "checkpoint": self.checkpoint,
        }


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Serialise ``value`` in the canonical form the record hashes are computed over."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """Compute the hex SHA-256 of a record's canonical form without its ``hash`` member."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def scan(data: bytes) -> LogScan:
    """Verify the hash chain of a whole log and build its Merkle tree.

    Verification stops at the first broken record. The tree and ``records`` hold only the
    records before it.
    """
    lines = data.split(b"\n")
    torn_tail = lines[-1]
    complete = lines[:-1]
    prev = GENESIS_HASH
    tree = MerkleTree()
    records: list[bytes] = []

    for index, line in enumerate(complete):
        problem, detail, record_hash_hex = check_line(line, index, prev)
        if problem is not None:
            result = VerifyResult(index, prev, index, problem, detail)
            return LogScan(result, records, tree, torn_tail)
        prev = record_hash_hex
        records.append(line)
        tree.append(leaf_hash(line))

    count = len(complete)
    if torn_tail:
        detail = f"line {count} has no newline: a write was interrupted"
        result = VerifyResult(count, prev, count, AuditProblem.TORN_LAST_LINE, detail)
        return LogScan(result, records, tree, torn_tail)
    return LogScan(VerifyResult(count, prev), records, tree)


def verify(path: Path) -> VerifyResult:
    """Check every record of the log file and report the first broken one.

    A hash chain alone cannot show that records were removed from the end. Check the log
    against a signed checkpoint for that (``ztmint audit verify --checkpoint``).

    Raises:
        OSError: the file cannot be read.
    """
    return scan(path.read_bytes()).result


def check_line(line: bytes, index: int, prev: str) -> tuple[AuditProblem | None, str, str]:
    """Check one record line against its expected index and predecessor hash.

    Returns:
        The problem (None when the record is intact), a sentence describing it, and the
        record's hash, which is empty when there is a problem.
    """
    try:
        record = json.loads(line)
    except ValueError:
        return AuditProblem.MALFORMED_RECORD, f"line {index} is not JSON", ""
    if not isinstance(record, dict) or set(record) != _RECORD_KEYS:
        return AuditProblem.MALFORMED_RECORD, f"line {index} does not have the record members", ""
    if record["index"] != index:
        return AuditProblem.BAD_INDEX, f"line {index} carries index {record['index']!r}", ""
    if record["prev"] != prev:
        expected = "the genesis hash" if index == 0 else f"the hash of record {index - 1}"
        return AuditProblem.CHAIN_BREAK, f"record {index} does not point at {expected}", ""
    if record["hash"] != record_hash(record):
        detail = f"record {index} was changed after it was written"
        return AuditProblem.HASH_MISMATCH, detail, ""
    if canonical_json(record) != line:
        detail = f"record {index} is not in canonical form, so its Merkle leaf was changed"
        return AuditProblem.MALFORMED_RECORD, detail, ""
    return None, "", record["hash"]


def checkpoint_signer(receipt_signer: ReceiptSigner, origin: str) -> KmsNoteSigner:
    """Adapt the mint's receipt key into the signer of the audit log's checkpoints.

    Args:
        receipt_signer: the KMS key that signs receipts (ECDSA P-256, raw ``r || s``).
        origin: the checkpoint origin line, also used as the signature's key name.

    Raises:
        ValueError: the receipt key is not an EC P-256 key or the origin is invalid.
    """
    jwk = receipt_signer.public_jwk()
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ValueError("the receipt key is not an EC P-256 key, so it cannot sign checkpoints")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    )
    return KmsNoteSigner(receipt_signer, numbers.public_key(), origin)


class AuditLog:
    """Appender of one audit log file, with its Merkle tree and signed checkpoints.

    Opening recovers a torn last record (see the module docstring) and verifies every
    record, so a constructed ``AuditLog`` always continues a verified chain.

    Args:
        path: the JSON-lines file; created when absent.
        clock: returns the current time in seconds since the epoch.
        note_signer: signs the checkpoints of ``append_with_proof``; None leaves evidence
            without a checkpoint.
        checkpoint_dir: folder of ``latest.txt`` and the kept ``<size>.txt`` checkpoints;
            default ``checkpoints`` next to the log.
        on_append: called under the lock after each append by this process, with the
            record's index, its line and its signed checkpoint (or None), for example
            ``mint.shipping.AuditShipping.record_appended``. It must not raise.

    Raises:
        AuditLogCorrupt: a complete record does not verify; run ``ztmint audit verify``.
        OSError: the file cannot be created, read or truncated.
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float],
        *,
        note_signer: NoteSigner | None = None,
        checkpoint_dir: Path | None = None,
        on_append: Callable[[int, bytes, str | None], None] | None = None,
    ) -> None:
        self._path = path
        self._clock = clock
        self._note_signer = note_signer
        self._checkpoint_dir = checkpoint_dir or path.parent / "checkpoints"
        self._on_append = on_append
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tree = MerkleTree()
        self._head = GENESIS_HASH
        self._offset = 0
        self._inode = 0
        with self._lock, self._locked_file() as fd:
            self._load(fd)

    def __repr__(self) -> str:
        return f"AuditLog(path={str(self._path)!r}, size={self._tree.size})"

    @property
    def path(self) -> Path:
        """The log file."""
        return self._path

    @property
    def size(self) -> int:
        """Number of records this process has read or written."""
        return self._tree.size

    def root(self) -> bytes:
        """Return the Merkle root hash of the records this process has read or written."""
        return self._tree.root()

    def append(self, event: str, fields: Mapping[str, Any]) -> int:
        """Append one record, fsync it, and return its index.

        Raises:
            AuditTornRecord: another process left a torn record; restart the mint.
            AuditLogCorrupt: a record that another process appended does not verify.
            OSError: the write or fsync failed.
        """
        with self._lock, self._locked_file() as fd:
            index, line = self._append_locked(fd, event, fields)
            if self._on_append is not None:
                self._on_append(index, line, None)
        return index

    def append_with_proof(self, event: str, fields: Mapping[str, Any]) -> InclusionEvidence:
        """Append one record, sign a checkpoint that includes it, and return the evidence.

        The checkpoint is for the tree right after this record, signed and written to
        ``checkpoint_dir/latest.txt`` before the lock is released, so the checkpoints of
        concurrent appenders never go backwards.

        Raises:
            AuditTornRecord: another process left a torn record; restart the mint.
            AuditLogCorrupt: a record that another process appended does not verify.
            AuditError: the KMS failed to sign the checkpoint. The record stays in the log,
                so the log then names a token that the mint did not return.
            OSError: a write or fsync failed.
        """
        with self._lock, self._locked_file() as fd:
            index, line = self._append_locked(fd, event, fields)
            tree_size = self._tree.size
            proof = self._tree.inclusion_proof(index, tree_size)
            checkpoint_text = None
            if self._note_signer is not None:
                checkpoint_text = self._sign_checkpoint(self._note_signer, tree_size)
                self._store_checkpoint(tree_size, checkpoint_text)
            if self._on_append is not None:
                self._on_append(index, line, checkpoint_text)
        return InclusionEvidence(index, line, tree_size, proof, checkpoint_text)

    def _locked_file(self) -> _LockedFile:
        return _LockedFile(self._path)

    def _load(self, fd: int) -> None:
        """Recover a torn record, then verify every record and build the tree."""
        data = _read_from(fd, 0)
        tail_start = data.rfind(b"\n") + 1
        if tail_start < len(data):
            self._move_torn_record_aside(fd, data[tail_start:], tail_start)
            data = data[:tail_start]
        scanned = scan(data)
        if not scanned.result.ok:
            result = scanned.result
            raise AuditLogCorrupt(
                f"audit log {self._path} is broken at record {result.broken_index}: "
                f"{result.detail}. The mint does not start on a broken log; run "
                "`ztmint audit verify` and restore the log from a copy",
                result.broken_index,
            )
        self._tree = scanned.tree
        self._head = scanned.result.head
        self._offset = len(data)
        self._inode = os.fstat(fd).st_ino

    def _move_torn_record_aside(self, fd: int, torn: bytes, good_length: int) -> None:
        aside = self._path.with_name(f"{self._path.name}.torn-{int(self._clock())}")
        number = 0
        while aside.exists():
            number += 1
            aside = self._path.with_name(f"{self._path.name}.torn-{int(self._clock())}.{number}")
        _write_file_durably(aside, torn)
        os.ftruncate(fd, good_length)
        os.fsync(fd)
        log.warning(
            "event=audit_torn_record_moved path=%s moved_to=%s bytes=%d kept_bytes=%d",
            self._path,
            aside,
            len(torn),
            good_length,
        )

    def _catch_up(self, fd: int) -> None:
        """Read and verify the records other processes appended since this one last looked."""
        status = os.fstat(fd)
        if status.st_ino != self._inode:
            raise AuditLogCorrupt(
                f"audit log {self._path} was replaced by another file while the mint ran; "
                "restart the mint so that it verifies the new file"
            )
        if status.st_size < self._offset:
            raise AuditLogCorrupt(
                f"audit log {self._path} shrank from {self._offset} to {status.st_size} bytes "
                "while the mint ran, so records were removed; run `ztmint audit verify`"
            )
        if status.st_size == self._offset:
            return
        data = _read_from(fd, self._offset)
        if not data.endswith(b"\n"):
            raise AuditTornRecord(
                f"audit log {self._path} ends in a torn record written by another process; "
                "restart the mint to move it aside"
            )
        for line in data[:-1].split(b"\n"):
            index = self._tree.size
            problem, detail, hash_hex = check_line(line, index, self._head)
            if problem is not None:
                raise AuditLogCorrupt(f"audit log {self._path}: {detail}", index)
            self._tree.append(leaf_hash(line))
            self._head = hash_hex
        self._offset += len(data)

    def _append_locked(self, fd: int, event: str, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        self._catch_up(fd)
        index = self._tree.size
        record: dict[str, Any] = {
            "index": index,
            "time": int(self._clock()),
            "event": event,
            "fields": dict(fields),
            "prev": self._head,
        }
        record["hash"] = record_hash(record)
        line = canonical_json(record)
        _write_all(fd, line + b"\n")
        os.fsync(fd)
        self._tree.append(leaf_hash(line))
        self._head = record["hash"]
        self._offset += len(line) + 1
        return index, line

    def _sign_checkpoint(self, signer: NoteSigner, tree_size: int) -> str:
        checkpoint = Checkpoint(signer.key_name, tree_size, self._tree.root())
        try:
            return sign_checkpoint(checkpoint, signer)
        except (KmsError, ValueError) as exc:
            raise AuditError(
                f"record {tree_size - 1} was written but the KMS did not sign the checkpoint "
                f"of size {tree_size}: {exc}; check the KMS key, the next append signs again"
            ) from exc

    def _store_checkpoint(self, tree_size: int, text: str) -> None:
        self._checkpoint_dir.mkdir(parents=True, exist_ok=True)
        _replace_file_durably(self._checkpoint_dir / "latest.txt", text.encode("utf-8"))
        if tree_size % CHECKPOINT_HISTORY_INTERVAL == 0:
            _replace_file_durably(self._checkpoint_dir / f"{tree_size}.txt", text.encode("utf-8"))


class _LockedFile:
    """The log opened for appending and held under an exclusive ``flock``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = -1

    def __enter__(self) -> int:
        created = not self._path.exists()
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self._fd)
            raise
        if created:
            _fsync_directory(self._path.parent)
        return self._fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)


def _read_from(fd: int, offset: int) -> bytes:
    chunks = []
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_file_durably(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_directory(path.parent)


def _replace_file_durably(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
