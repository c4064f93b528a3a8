"""Tests of ``mint.audit``: appending, crash recovery, inclusion evidence and tampering."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from mint_testkit import START_TIME, FakeClock

from mint import audit
from mint.audit import (
    GENESIS_HASH,
    AuditError,
    AuditLog,
    AuditLogCorrupt,
    AuditProblem,
    AuditTornRecord,
    canonical_json,
    checkpoint_signer,
    record_hash,
    scan,
    verify,
)
from mint.audit_cli import load_checkpoint_verifier
from mint.kms import KmsError, LocalKms
from mint.transparency.checkpoint import (
    EcdsaP256NoteSigner,
    EcdsaP256NoteVerifier,
    verify_checkpoint,
)
from mint.transparency.errors import InvalidProof
from mint.transparency.merkle import leaf_hash, verify_inclusion

ORIGIN = "mint.test/audit"


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
    lines[1] = canonical_json(record) + b"\n"
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


def test_verify_names_malformed_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    path.write_bytes(path.read_bytes() + b"not json\n")
    result = verify(path)
    assert result.problem is AuditProblem.MALFORMED_RECORD
    assert result.broken_index == 2


def test_open_moves_torn_record_aside(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    intact = path.read_bytes()
    path.write_bytes(intact + b'{"index":3,"time":')
    AuditLog(path, FakeClock())
    assert path.read_bytes() == intact
    aside = tmp_path / f"audit.jsonl.torn-{START_TIME}"
    assert aside.read_bytes() == b'{"index":3,"time":'


def test_open_continues_chain_after_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    path.write_bytes(path.read_bytes() + b'{"index":3')
    assert AuditLog(path, FakeClock()).append("next", {}) == 3
    result = verify(path)
    assert result.ok
    assert result.count == 4


def test_open_keeps_earlier_torn_files(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 1)
    for torn in (b"first", b"second"):
        path.write_bytes(path.read_bytes() + torn)
        AuditLog(path, FakeClock())
    assert (tmp_path / f"audit.jsonl.torn-{START_TIME}").read_bytes() == b"first"
    assert (tmp_path / f"audit.jsonl.torn-{START_TIME}.1").read_bytes() == b"second"


def test_open_rejects_edited_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    path.write_bytes(path.read_bytes().replace(b"jti-1", b"jti-X"))
    with pytest.raises(AuditLogCorrupt, match="broken at record 1") as caught:
        AuditLog(path, FakeClock())
    assert caught.value.index == 1


def test_open_rejects_non_canonical_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 2)
    lines = _lines(path)
    lines[1] = json.dumps(json.loads(lines[1])).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(AuditLogCorrupt, match="canonical form"):
        AuditLog(path, FakeClock())


def test_append_rejects_torn_record_of_other_process(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 2)
    path.write_bytes(path.read_bytes() + b'{"torn"')
    with pytest.raises(AuditTornRecord, match="restart the mint"):
        log.append("next", {})


def test_append_rejects_shrunk_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 3)
    path.write_bytes(b"".join(_lines(path)[:2]))
    with pytest.raises(AuditLogCorrupt, match="shrank"):
        log.append("next", {})


def test_append_rejects_replaced_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 1)
    replacement = tmp_path / "other.jsonl"
    replacement.write_bytes(path.read_bytes())
    replacement.replace(path)
    with pytest.raises(AuditLogCorrupt, match="replaced"):
        log.append("next", {})


def test_append_reads_records_of_other_appender(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, FakeClock())
    second = AuditLog(path, FakeClock())
    first.append("a", {})
    assert second.append("b", {}) == 1
    assert second.root() == scan(path.read_bytes()).tree.root()


def test_append_rejects_bad_record_of_other_appender(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = _write_log(path, 1)
    path.write_bytes(path.read_bytes() + b'{"not":"a record"}\n')
    with pytest.raises(AuditLogCorrupt, match="line 1 does not have the record members"):
        log.append("next", {})


def test_scan_builds_tree_over_record_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _write_log(path, 3)
    scanned = scan(path.read_bytes())
    lines = path.read_bytes().split(b"\n")[:-1]
    assert scanned.records == lines
    assert scanned.tree.leaf_hash(2) == leaf_hash(lines[2])


_CHECKPOINT_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def note_signer() -> EcdsaP256NoteSigner:
    return EcdsaP256NoteSigner(_CHECKPOINT_KEY, ORIGIN)


def _verifier(signer: EcdsaP256NoteSigner) -> EcdsaP256NoteVerifier:
    return EcdsaP256NoteVerifier(_CHECKPOINT_KEY.public_key(), signer.key_name)


def test_append_with_proof_returns_verifiable_evidence(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=note_signer)
    for number in range(4):
        log.append("request_rejected", {"n": number})
    evidence = log.append_with_proof("token_minted", {"jti": "j"})
    assert evidence.checkpoint is not None
    checkpoint = verify_checkpoint(evidence.checkpoint, _verifier(note_signer), origin=ORIGIN)
    assert checkpoint.size == 5
    verify_inclusion(
        leaf_hash(evidence.record), evidence.index, checkpoint.size, evidence.proof, checkpoint.root
    )


def test_append_with_proof_evidence_fails_for_other_record(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=note_signer)
    log.append("request_rejected", {})
    evidence = log.append_with_proof("token_minted", {"jti": "j"})
    assert evidence.checkpoint is not None
    checkpoint = verify_checkpoint(evidence.checkpoint, _verifier(note_signer))
    forged = evidence.record.replace(b'"j"', b'"k"')
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash(forged), 1, 2, evidence.proof, checkpoint.root)


def test_append_with_proof_record_is_the_log_line(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FakeClock(), note_signer=note_signer)
    evidence = log.append_with_proof("token_minted", {"jti": "j"})
    assert path.read_bytes() == evidence.record + b"\n"


def test_append_with_proof_writes_latest_checkpoint(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=note_signer)
    log.append_with_proof("token_minted", {})
    evidence = log.append_with_proof("token_minted", {})
    latest = (tmp_path / "checkpoints" / "latest.txt").read_text()
    assert latest == evidence.checkpoint


def test_append_with_proof_keeps_checkpoint_history(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "CHECKPOINT_HISTORY_INTERVAL", 2)
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=note_signer)
    for _ in range(5):
        log.append_with_proof("token_minted", {})
    kept = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert kept == ["2.txt", "4.txt", "latest.txt"]


def test_append_with_proof_without_signer_has_no_checkpoint(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock())
    evidence = log.append_with_proof("token_minted", {})
    assert evidence.checkpoint is None
    assert not (tmp_path / "checkpoints").exists()


def test_evidence_json_encodes_proof_in_base64(
    tmp_path: Path, note_signer: EcdsaP256NoteSigner
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=note_signer)
    log.append("request_rejected", {})
    evidence = log.append_with_proof("token_minted", {}).to_json()
    assert evidence["index"] == 1
    assert evidence["tree_size"] == 2
    assert len(evidence["inclusion_proof"]) == 1
    assert json.loads(evidence["record"])["event"] == "token_minted"


def test_checkpoint_signer_signs_with_receipt_key(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms-p256.pem")
    signer = checkpoint_signer(kms, ORIGIN)
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock(), note_signer=signer)
    evidence = log.append_with_proof("token_minted", {})
    assert evidence.checkpoint is not None
    jwks = json.dumps({"keys": [kms.public_jwk()]}).encode()
    verifier = load_checkpoint_verifier(jwks, evidence.checkpoint.encode())
    assert verify_checkpoint(evidence.checkpoint, verifier).size == 1


def test_audit_errors_share_base_class() -> None:
    assert issubclass(AuditLogCorrupt, AuditError)
    assert issubclass(AuditTornRecord, AuditError)


class _FailingKms:
    key_name = ORIGIN
    key_id = b"\x00\x01\x02\x03"

    def sign(self, message: bytes) -> bytes:
        raise KmsError("KMS timed out")


def test_append_with_proof_reports_failed_checkpoint_signing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FakeClock(), note_signer=_FailingKms())
    with pytest.raises(AuditError, match="KMS did not sign the checkpoint of size 1"):
        log.append_with_proof("token_minted", {})
    assert verify(path).count == 1
