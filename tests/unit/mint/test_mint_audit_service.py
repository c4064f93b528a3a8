"""The mint's audit wiring: every token comes with inclusion evidence, and a broken log stops it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mint_testkit import ORIGIN, FakeClock, InProcessTokenSigner

from authz.formats import token_sha256
from authz.jose import b64url_encode
from mint.app import service_from_settings
from mint.audit import AuditLog, AuditLogCorrupt
from mint.audit_cli import load_checkpoint_verifier
from mint.service import MintResult, MintService
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from mint.transparency.checkpoint import verify_checkpoint
from mint.transparency.merkle import leaf_hash, verify_inclusion


def _settings(tmp_path: Path) -> Settings:
    return Settings(origin=ORIGIN, issuer=ORIGIN, state_dir=tmp_path / "state")


def _mint(service: MintService, key_file: Path) -> MintResult:
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(key_file, ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    challenge = service.begin_assertion("alice", ["payments:read"], "payments", 900)
    assertion = authenticator.authenticate(challenge.options)
    return service.mint(challenge.challenge_id, ["payments:read"], "payments", 900, assertion)


def test_mint_returns_evidence_under_signed_checkpoint(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    service = service_from_settings(settings, InProcessTokenSigner(), FakeClock(), os.urandom)
    result = _mint(service, tmp_path / "key.json")
    evidence = result.audit_evidence
    assert evidence is not None
    assert evidence.checkpoint is not None

    jwks = json.dumps(service.jwks()).encode()
    verifier = load_checkpoint_verifier(jwks, evidence.checkpoint.encode())
    checkpoint = verify_checkpoint(evidence.checkpoint, verifier, origin="localhost:8080/audit")
    verify_inclusion(
        leaf_hash(evidence.record), evidence.index, checkpoint.size, evidence.proof, checkpoint.root
    )
    record = json.loads(evidence.record)
    assert record["fields"]["token_sha256"] == b64url_encode(token_sha256(result.token))
    assert evidence.index == result.audit_index


def test_mint_evidence_checkpoint_is_latest_on_disk(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    service = service_from_settings(settings, InProcessTokenSigner(), FakeClock(), os.urandom)
    result = _mint(service, tmp_path / "key.json")
    latest = (settings.state_dir / "checkpoints" / "latest.txt").read_text()
    assert result.audit_evidence is not None
    assert latest == result.audit_evidence.checkpoint


def test_service_from_settings_rejects_broken_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    log = AuditLog(settings.audit_path, FakeClock())
    log.append("request_rejected", {"reason": "a"})
    log.append("request_rejected", {"reason": "b"})
    settings.audit_path.write_bytes(settings.audit_path.read_bytes().replace(b'"a"', b'"z"'))
    with pytest.raises(AuditLogCorrupt, match="does not start on a broken log"):
        service_from_settings(settings, InProcessTokenSigner(), FakeClock(), os.urandom)


def test_service_from_settings_recovers_torn_log(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    AuditLog(settings.audit_path, FakeClock()).append("request_rejected", {})
    settings.audit_path.write_bytes(settings.audit_path.read_bytes() + b'{"index":1,"ti')
    service = service_from_settings(settings, InProcessTokenSigner(), FakeClock(), os.urandom)
    result = _mint(service, tmp_path / "key.json")
    # Record 0 survived, 1 is the registration and 2 the mint, so the torn bytes were dropped.
    assert result.audit_index == 2
