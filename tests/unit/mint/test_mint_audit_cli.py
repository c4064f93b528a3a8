"""Tests of ``ztmint audit verify`` and ``ztmint audit prove`` against signed checkpoints."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mint_testkit import FakeClock

from authz.formats import token_sha256
from authz.jose import b64url_encode
from mint.audit import AuditLog, canonical_json, checkpoint_signer, record_hash
from mint.cli import main
from mint.kms import LocalKms

ORIGIN = "mint.test/audit"


@dataclass
class SignedLog:
    """A log with signed checkpoints, and the files a verifier is given."""

    log: AuditLog
    path: Path
    jwks: Path
    tokens: list[str]

    def save_latest(self, name: str) -> Path:
        saved = self.path.parent / name
        saved.write_bytes((self.path.parent / "checkpoints" / "latest.txt").read_bytes())
        return saved

    def lines(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True)


def _mint_record(log: AuditLog, token: str) -> None:
    digest = b64url_encode(token_sha256(token))
    log.append_with_proof("token_minted", {"jti": token[-4:], "token_sha256": digest})


@pytest.fixture
def signed_log(tmp_path: Path) -> SignedLog:
    kms = LocalKms(tmp_path / "kms-p256.pem")
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FakeClock(), note_signer=checkpoint_signer(kms, ORIGIN))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [kms.public_jwk()]}))
    tokens = [f"eyJhbGciOiJFZERTQSJ9.e30.sig{number:04d}" for number in range(5)]
    for token in tokens:
        log.append("request_rejected", {"reason": "challenge_used"})
        _mint_record(log, token)
    return SignedLog(log, path, jwks, tokens)


def _verify(signed: SignedLog, checkpoint: Path) -> int:
    argv = ["audit", "verify", str(signed.path), "--checkpoint", str(checkpoint)]
    return main([*argv, "--key", str(signed.jwks)])


def _prove(signed: SignedLog, token: str, checkpoint: Path, tmp_path: Path) -> int:
    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    argv = ["audit", "prove", "--token-file", str(token_file), "--log", str(signed.path)]
    return main([*argv, "--checkpoint", str(checkpoint), "--key", str(signed.jwks)])


def test_audit_verify_accepts_log_matching_checkpoint(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    assert _verify(signed_log, checkpoint) == 0
    assert capsys.readouterr().out.startswith("OK: 10 records")


def test_audit_verify_accepts_log_grown_after_checkpoint(signed_log: SignedLog) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    _mint_record(signed_log.log, "later.token.sig")
    assert _verify(signed_log, checkpoint) == 0


def test_audit_verify_rejects_truncated_log(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    signed_log.path.write_bytes(b"".join(signed_log.lines()[:-1]))
    assert _verify(signed_log, checkpoint) == 1
    assert "BROKEN at record 9: truncated" in capsys.readouterr().out


def test_audit_verify_rejects_dropped_record(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    lines = signed_log.lines()
    signed_log.path.write_bytes(b"".join(lines[:4] + lines[5:]))
    assert _verify(signed_log, checkpoint) == 1
    assert "BROKEN at record 4: bad_index" in capsys.readouterr().out


def test_audit_verify_rejects_reordered_records(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    lines = signed_log.lines()
    lines[2], lines[3] = lines[3], lines[2]
    signed_log.path.write_bytes(b"".join(lines))
    assert _verify(signed_log, checkpoint) == 1
    assert "BROKEN at record 2: bad_index" in capsys.readouterr().out


def test_audit_verify_rejects_edited_record(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    signed_log.path.write_bytes(
        signed_log.path.read_bytes().replace(b'"jti":"0002"', b'"jti":"9999"')
    )
    assert _verify(signed_log, checkpoint) == 1
    assert "hash_mismatch" in capsys.readouterr().out


def test_audit_verify_rejects_rewritten_history(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    # Rewrite the whole chain with valid hashes: only the checkpoint can tell.
    records = [json.loads(line) for line in signed_log.lines()]
    records[1]["fields"]["jti"] = "forged"
    prev = "0" * 64
    rewritten = []
    for record in records:
        record["prev"] = prev
        record["hash"] = record_hash(record)
        prev = record["hash"]
        rewritten.append(canonical_json(record) + b"\n")
    signed_log.path.write_bytes(b"".join(rewritten))
    assert _verify(signed_log, checkpoint) == 1
    assert "BROKEN: history_rewritten" in capsys.readouterr().out


def test_audit_verify_rejects_checkpoint_signed_by_other_key(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "other.pem").write_bytes(pem)
    argv = ["audit", "verify", str(signed_log.path), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--key", str(tmp_path / "other.pem")]) == 1
    assert "no P-256 key in the key file matches" in capsys.readouterr().err


def test_audit_verify_rejects_altered_checkpoint(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    lines = checkpoint.read_text().split("\n")
    lines[1] = "9"
    checkpoint.write_text("\n".join(lines))
    assert _verify(signed_log, checkpoint) == 1
    assert "signature" in capsys.readouterr().err


def test_audit_verify_requires_key_with_checkpoint(
    signed_log: SignedLog, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    assert main(["audit", "verify", str(signed_log.path), "--checkpoint", str(checkpoint)]) == 1
    assert "--checkpoint needs --key" in capsys.readouterr().err


def test_audit_prove_accepts_minted_token(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    assert _prove(signed_log, signed_log.tokens[2], checkpoint, tmp_path) == 0
    assert "is record 5, included in the tree of size 10" in capsys.readouterr().out


def test_audit_prove_reads_token_from_stdin(
    signed_log: SignedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    monkeypatch.setattr("sys.stdin", io.StringIO(signed_log.tokens[0] + "\n"))
    argv = ["audit", "prove", "--log", str(signed_log.path), "--checkpoint", str(checkpoint)]
    assert main([*argv, "--key", str(signed_log.jwks)]) == 0


def test_audit_prove_rejects_unknown_token(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    assert _prove(signed_log, "never.minted.token", checkpoint, tmp_path) == 1
    assert "no token_minted record carries" in capsys.readouterr().err


def test_audit_prove_rejects_record_newer_than_checkpoint(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    _mint_record(signed_log.log, "later.token.sig")
    assert _prove(signed_log, "later.token.sig", checkpoint, tmp_path) == 1
    assert "newer than the checkpoint" in capsys.readouterr().err


def test_audit_prove_rejects_log_edited_elsewhere(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    records = [json.loads(line) for line in signed_log.lines()]
    records[8]["fields"]["reason"] = "forged"
    prev = "0" * 64
    rewritten = []
    for record in records:
        record["prev"] = prev
        record["hash"] = record_hash(record)
        prev = record["hash"]
        rewritten.append(canonical_json(record) + b"\n")
    signed_log.path.write_bytes(b"".join(rewritten))
    assert _prove(signed_log, signed_log.tokens[0], checkpoint, tmp_path) == 1
    assert "does not lead to the root" in capsys.readouterr().err


def test_audit_prove_rejects_empty_token(
    signed_log: SignedLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = signed_log.save_latest("saved.txt")
    assert _prove(signed_log, "  ", checkpoint, tmp_path) == 1
    assert "no token given" in capsys.readouterr().err


def test_audit_prove_has_no_token_argument() -> None:
    with pytest.raises(SystemExit):
        main(["audit", "prove", "--token", "abc", "--log", "l", "--checkpoint", "c", "--key", "k"])
