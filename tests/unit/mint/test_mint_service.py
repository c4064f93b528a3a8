"""Tests of ``mint.service.MintService`` with the software authenticator and a fake clock."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import jwt
import pytest
from mint_testkit import ISSUER, ORIGIN, ServiceParts, build_service

from actors.assertion_check import AssertionEvidence
from authz.formats import TokenClaims, token_sha256
from authz.jose import b64url_decode, b64url_encode
from mint.errors import MintError, MintReason
from mint.service import CHALLENGE_TTL_SECONDS
from mint.signing import SignedToken
from mint.softkey import SoftwareAuthenticator

SCOPES = ["payments:read", "payments:write"]
AUDIENCE = "payments"
TTL = 900


@pytest.fixture
def parts(tmp_path: Path) -> ServiceParts:
    return build_service(tmp_path / "state")


def _enroll(parts: ServiceParts, key_file: Path, user: str = "alice") -> SoftwareAuthenticator:
    started = parts.service.begin_registration(user, parts.service.invite(user))
    authenticator = SoftwareAuthenticator(key_file, ORIGIN)
    parts.service.complete_registration(
        started.challenge_id, authenticator.register(started.options)
    )
    return authenticator


@pytest.fixture
def alice(parts: ServiceParts, tmp_path: Path) -> SoftwareAuthenticator:
    return _enroll(parts, tmp_path / "alice.json")


def _begin(
    parts: ServiceParts,
    authenticator: SoftwareAuthenticator,
    user: str = "alice",
    scopes: list[str] = SCOPES,
) -> tuple[str, dict[str, Any]]:
    started = parts.service.begin_assertion(user, scopes, AUDIENCE, TTL)
    return started.challenge_id, authenticator.authenticate(started.options)


def _database_rows(parts: ServiceParts) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(parts.state_dir / "mint.sqlite3")
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in ("users", "credentials", "challenges")
        }
    finally:
        conn.close()


def _audit_records(parts: ServiceParts) -> list[dict[str, Any]]:
    return [json.loads(line) for line in parts.audit.path.read_text().splitlines()]


def _rejection(call: Any) -> MintError:
    with pytest.raises(MintError) as caught:
        call()
    return caught.value


def test_mint_returns_token_verifiable_with_jwks(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    result = parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    jwks = jwt.PyJWKSet.from_dict(parts.service.jwks())
    kid = jwt.get_unverified_header(result.token)["kid"]
    key = next(key for key in jwks.keys if key.key_id == kid)
    claims = jwt.decode(
        result.token,
        key.key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )
    assert claims["sub"] == "alice"
    assert claims["scope"] == "payments:read payments:write"
    assert claims["exp"] - claims["iat"] == TTL
    assert claims["amr"] == ["swk", "user"]
    assert result.expires_at == claims["exp"]


def test_mint_receipt_binds_token(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    result = parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    receipt_key = next(key for key in parts.service.jwks()["keys"] if key["alg"] == "ES256")
    public_key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(receipt_key))
    claims = jwt.decode(result.receipt, public_key, algorithms=["ES256"])  # type: ignore[arg-type]
    assert claims["token_sha256"] == b64url_encode(token_sha256(result.token))
    assert claims["token_jti"] == result.jti


def test_mint_appends_audit_record_without_token(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    result = parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    record = _audit_records(parts)[result.audit_index]
    assert record["event"] == "token_minted"
    assert record["fields"]["token_sha256"] == b64url_encode(token_sha256(result.token))
    assert record["fields"]["signers"] == [1, 2]
    assert result.token not in parts.audit.path.read_text()
    assert result.receipt not in parts.audit.path.read_text()


def test_mint_result_repr_hides_token(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    result = parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    assert result.token not in repr(result)


@pytest.mark.parametrize(
    ("scopes", "audience", "ttl", "reason"),
    [
        ([], AUDIENCE, TTL, MintReason.REQUEST_INVALID),
        (["Payments"], AUDIENCE, TTL, MintReason.REQUEST_INVALID),
        (["a b"], AUDIENCE, TTL, MintReason.REQUEST_INVALID),
        (["read", "read"], AUDIENCE, TTL, MintReason.REQUEST_INVALID),
        ("read", AUDIENCE, TTL, MintReason.REQUEST_INVALID),
        (SCOPES, "", TTL, MintReason.REQUEST_INVALID),
        (SCOPES, "pay ments", TTL, MintReason.REQUEST_INVALID),
        (SCOPES, AUDIENCE, "900", MintReason.REQUEST_INVALID),
        (SCOPES, AUDIENCE, True, MintReason.REQUEST_INVALID),
        (SCOPES, AUDIENCE, 299, MintReason.TTL_OUT_OF_RANGE),
        (SCOPES, AUDIENCE, 3601, MintReason.TTL_OUT_OF_RANGE),
    ],
)
def test_begin_assertion_rejects_invalid_request(
    parts: ServiceParts,
    alice: SoftwareAuthenticator,
    scopes: Any,
    audience: Any,
    ttl: Any,
    reason: MintReason,
) -> None:
    before = _database_rows(parts)
    error = _rejection(lambda: parts.service.begin_assertion("alice", scopes, audience, ttl))
    assert error.reason is reason
    assert error.status == 400
    assert _database_rows(parts) == before


def test_begin_assertion_rejects_user_without_credential(parts: ServiceParts) -> None:
    error = _rejection(lambda: parts.service.begin_assertion("bob", SCOPES, AUDIENCE, TTL))
    assert error.reason is MintReason.USER_UNKNOWN
    assert "ztmint enroll" in error.detail


def test_mint_rejects_ttl_out_of_range(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, 60, assertion))
    assert error.reason is MintReason.TTL_OUT_OF_RANGE


def test_mint_rejects_unknown_challenge(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    _, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint("unknown", SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.CHALLENGE_UNKNOWN


def test_mint_rejects_registration_challenge(parts: ServiceParts, tmp_path: Path) -> None:
    started = parts.service.begin_registration("carol", parts.service.invite("carol"))
    _enroll(parts, tmp_path / "dave.json", user="dave")
    authenticator = SoftwareAuthenticator(tmp_path / "dave.json", ORIGIN)
    _, assertion = _begin(parts, authenticator, user="dave")
    error = _rejection(
        lambda: parts.service.mint(started.challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    )
    assert error.reason is MintReason.CHALLENGE_UNKNOWN


def test_mint_rejects_expired_challenge(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    parts.clock.advance(CHALLENGE_TTL_SECONDS)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.CHALLENGE_EXPIRED


def test_mint_accepts_challenge_just_before_expiry(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    parts.clock.advance(CHALLENGE_TTL_SECONDS - 1)
    assert parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion).token


def test_mint_rejects_used_challenge(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.CHALLENGE_USED
    assert error.status == 409


@pytest.mark.parametrize(
    ("scopes", "audience", "ttl"),
    [
        (["payments:read"], AUDIENCE, TTL),
        (list(reversed(SCOPES)), AUDIENCE, TTL),
        (SCOPES, "ledger", TTL),
        (SCOPES, AUDIENCE, TTL + 60),
    ],
)
def test_mint_rejects_request_other_than_asserted(
    parts: ServiceParts, alice: SoftwareAuthenticator, scopes: list[str], audience: str, ttl: int
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, scopes, audience, ttl, assertion))
    assert error.reason is MintReason.CHALLENGE_MISMATCH


def test_mint_rejects_assertion_from_other_users_credential(
    parts: ServiceParts, alice: SoftwareAuthenticator, tmp_path: Path
) -> None:
    bob = _enroll(parts, tmp_path / "bob.json", user="bob")
    challenge_id, _ = _begin(parts, alice)
    _, bob_assertion = _begin(parts, bob, user="bob")
    error = _rejection(
        lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, bob_assertion)
    )
    assert error.reason is MintReason.CREDENTIAL_UNKNOWN


def test_mint_rejects_tampered_signature(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    signature = bytearray(jwt.utils.base64url_decode(assertion["response"]["signature"]))
    signature[-1] ^= 1
    assertion["response"]["signature"] = b64url_encode(bytes(signature))
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.ASSERTION_INVALID


def test_mint_rejects_malformed_assertion(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    assertion["response"]["clientDataJSON"] = "%%%"
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.REQUEST_INVALID


def test_complete_registration_rejects_missing_uv(tmp_path: Path) -> None:
    parts = build_service(tmp_path / "state", user_verification="required")
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "alice.json", ORIGIN)
    error = _rejection(
        lambda: parts.service.complete_registration(
            started.challenge_id, authenticator.register(started.options)
        )
    )
    assert error.reason is MintReason.USER_VERIFICATION_MISSING


def test_mint_flags_counter_regression_as_cloned(
    parts: ServiceParts, alice: SoftwareAuthenticator, tmp_path: Path
) -> None:
    shutil.copy(tmp_path / "alice.json", tmp_path / "clone.json")
    challenge_id, assertion = _begin(parts, alice)
    parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    clone = SoftwareAuthenticator(tmp_path / "clone.json", ORIGIN)
    challenge_id, assertion = _begin(parts, clone)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.CREDENTIAL_CLONED
    assert parts.signer.calls == 1


def test_mint_rejects_flagged_credential_afterwards(
    parts: ServiceParts, alice: SoftwareAuthenticator, tmp_path: Path
) -> None:
    shutil.copy(tmp_path / "alice.json", tmp_path / "clone.json")
    challenge_id, assertion = _begin(parts, alice)
    parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    clone = SoftwareAuthenticator(tmp_path / "clone.json", ORIGIN)
    challenge_id, assertion = _begin(parts, clone)
    _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.CREDENTIAL_CLONED
    assert error.status == 403


def test_mint_reports_signing_failure(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    parts.signer.fail_next = True
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.SIGNING_FAILED
    assert error.status == 503


def test_mint_rejects_signature_not_under_group_key(
    parts: ServiceParts, alice: SoftwareAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sign_token = parts.signer.sign_token

    def zero_signature(claims: TokenClaims, kid: str, evidence: AssertionEvidence) -> SignedToken:
        signed = real_sign_token(claims, kid, evidence)
        return dataclasses.replace(signed, signature=bytes(64))

    monkeypatch.setattr(parts.signer, "sign_token", zero_signature)
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.SIGNING_FAILED
    assert "does not verify" in error.detail


def test_mint_rejects_mesh_that_changes_claims(
    parts: ServiceParts, alice: SoftwareAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sign_token = parts.signer.sign_token

    def widen_scope(claims: TokenClaims, kid: str, evidence: AssertionEvidence) -> SignedToken:
        # A correctly signed token whose scope differs from the request must not be issued.
        signed = real_sign_token(claims, kid, evidence)
        header, payload = signed.signing_input.split(b".")
        body = json.loads(b64url_decode(payload.decode()))
        body["scope"] = "admin"
        widened = header + b"." + b64url_encode(json.dumps(body).encode()).encode()
        signature = parts.signer.sign_raw(widened)
        return dataclasses.replace(signed, signing_input=widened, signature=signature)

    monkeypatch.setattr(parts.signer, "sign_token", widen_scope)
    challenge_id, assertion = _begin(parts, alice)
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.SIGNING_FAILED
    assert "changed claims" in error.detail


def test_mint_token_carries_signer_set(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    result = parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    payload = result.token.split(".")[1]
    claims = json.loads(b64url_decode(payload))
    assert claims["ztm"]["signers"] == [1, 2]


def test_mint_withholds_token_when_audit_fails(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    parts.audit.path.write_bytes(parts.audit.path.read_bytes() + b'{"torn"')
    error = _rejection(lambda: parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.AUDIT_FAILED


@pytest.mark.parametrize(
    "change",
    ["scopes", "challenge", "signature", "ttl"],
)
def test_mint_rejection_changes_no_stored_state(
    parts: ServiceParts, alice: SoftwareAuthenticator, change: str
) -> None:
    challenge_id, assertion = _begin(parts, alice)
    bad_assertion = json.loads(json.dumps(assertion))
    arguments: dict[str, Any] = {
        "challenge_id": challenge_id,
        "scopes": SCOPES,
        "audience": AUDIENCE,
        "ttl_seconds": TTL,
        "assertion": bad_assertion,
    }
    if change == "scopes":
        arguments["scopes"] = ["other"]
    elif change == "challenge":
        arguments["challenge_id"] = "unknown"
    elif change == "ttl":
        arguments["ttl_seconds"] = 10
    else:
        bad_assertion["response"]["signature"] = b64url_encode(b"\x30\x06\x02\x01\x01\x02\x01\x01")
    before = _database_rows(parts)
    _rejection(lambda: parts.service.mint(**arguments))
    assert _database_rows(parts) == before
    assert parts.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion).token


def test_mint_rejection_is_audited(parts: ServiceParts, alice: SoftwareAuthenticator) -> None:
    challenge_id, assertion = _begin(parts, alice)
    _rejection(lambda: parts.service.mint(challenge_id, ["other"], AUDIENCE, TTL, assertion))
    record = _audit_records(parts)[-1]
    assert record["event"] == "request_rejected"
    assert record["fields"]["reason"] == "challenge_mismatch"
    assert record["fields"]["sub"] == "alice"


def test_begin_registration_rejects_enrolled_user_without_invitation(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    error = _rejection(lambda: parts.service.begin_registration("alice"))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_rejects_invalid_user(parts: ServiceParts) -> None:
    error = _rejection(lambda: parts.service.begin_registration("al ice", "code"))
    assert error.reason is MintReason.REQUEST_INVALID


def test_complete_registration_rejects_used_challenge(parts: ServiceParts, tmp_path: Path) -> None:
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    credential = SoftwareAuthenticator(tmp_path / "a.json", ORIGIN).register(started.options)
    parts.service.complete_registration(started.challenge_id, credential)
    error = _rejection(
        lambda: parts.service.complete_registration(started.challenge_id, credential)
    )
    assert error.reason is MintReason.CHALLENGE_USED


def test_complete_registration_rejects_other_origin(tmp_path: Path) -> None:
    parts = build_service(tmp_path / "state")
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "a.json", "http://evil.example:8080")
    before = _database_rows(parts)
    error = _rejection(
        lambda: parts.service.complete_registration(
            started.challenge_id, authenticator.register(started.options)
        )
    )
    assert error.reason is MintReason.ORIGIN_MISMATCH
    assert _database_rows(parts) == before


def test_mint_error_carries_reason_detail_and_status() -> None:
    error = MintError(MintReason.CHALLENGE_USED, "challenge was already used")
    assert str(error) == "challenge_used: challenge was already used"
    assert error.status == 409


def test_mint_rejects_missing_user_verification(
    parts: ServiceParts, alice: SoftwareAuthenticator
) -> None:
    strict = build_service(parts.state_dir, user_verification="required", clock=parts.clock)
    challenge_id, assertion = _begin(strict, alice)
    error = _rejection(lambda: strict.service.mint(challenge_id, SCOPES, AUDIENCE, TTL, assertion))
    assert error.reason is MintReason.USER_VERIFICATION_MISSING
    assert error.status == 401
