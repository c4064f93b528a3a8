"""Receipt verification: the ES256 signature, its key, and its binding to one token."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authz.errors import AuthzError, Reason
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact
from authz.keys import KeySet
from authz.verify import VerifiedToken, verify_receipt, verify_token
from tests.unit.authz.authz_testkit import (
    AUDIENCE,
    ISSUER,
    KMS_ISSUER,
    NOW,
    Issuer,
    replace_segment,
)

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def verified(issuer: Issuer) -> VerifiedToken:
    return verify_token(issuer.token(), issuer.key_set(), NOW, AUDIENCE, ISSUER)


def _reason(receipt: str, token: VerifiedToken, keys: KeySet, now: int = NOW) -> Reason:
    with pytest.raises(AuthzError) as raised:
        verify_receipt(receipt, token, keys, now)
    return raised.value.reason


def _with_signature(receipt: str, r: int, s: int) -> str:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return replace_segment(receipt, 2, b64url_encode(raw))


def _signature_ints(receipt: str) -> tuple[int, int]:
    raw = b64url_decode(receipt.split(".")[2])
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def test_verify_receipt_accepts_receipt_of_token(issuer: Issuer, verified: VerifiedToken) -> None:
    result = verify_receipt(issuer.receipt(verified.token), verified, issuer.key_set(), NOW)

    assert result.token_jti == verified.jti
    assert result.kid == issuer.receipt_kid
    assert result.iss == KMS_ISSUER


def test_verify_receipt_accepts_high_s(issuer: Issuer, verified: VerifiedToken) -> None:
    # JOSE ES256 (RFC 7518 section 3.4) has no low-S rule, and Wycheproof marks both valid.
    receipt = issuer.receipt(verified.token)
    r, s = _signature_ints(receipt)

    result = verify_receipt(
        _with_signature(receipt, r, P256_N - s), verified, issuer.key_set(), NOW
    )

    assert result.token_jti == verified.jti


def test_verify_receipt_rejects_receipt_of_other_token(
    issuer: Issuer, verified: VerifiedToken
) -> None:
    other_receipt = issuer.receipt(issuer.token(jti="jti-0002"))

    assert _reason(other_receipt, verified, issuer.key_set()) == Reason.RECEIPT_MISMATCH


def test_verify_receipt_rejects_same_jti_other_token(
    issuer: Issuer, verified: VerifiedToken
) -> None:
    # Same jti, different scope: only the hash of the whole token differs.
    other_receipt = issuer.receipt(issuer.token(scopes=("orders:write",)))

    assert _reason(other_receipt, verified, issuer.key_set()) == Reason.RECEIPT_MISMATCH


def test_verify_receipt_rejects_other_jti(issuer: Issuer, verified: VerifiedToken) -> None:
    receipt = issuer.receipt(verified.token, jti="jti-9999")

    assert _reason(receipt, verified, issuer.key_set()) == Reason.RECEIPT_MISMATCH


def test_verify_receipt_rejects_token_as_receipt(issuer: Issuer, verified: VerifiedToken) -> None:
    assert _reason(verified.token, verified, issuer.key_set()) == Reason.RECEIPT_HEADER_INVALID


def test_verify_receipt_rejects_empty(issuer: Issuer, verified: VerifiedToken) -> None:
    assert _reason("", verified, issuer.key_set()) == Reason.RECEIPT_MISSING


@pytest.mark.parametrize("alg", ["none", "ES384", "HS256", "EdDSA", "ES256K"])
def test_verify_receipt_rejects_alg(issuer: Issuer, verified: VerifiedToken, alg: str) -> None:
    header = {"alg": alg, "typ": "kms-receipt+jwt", "kid": issuer.receipt_kid}
    receipt = issuer.receipt(verified.token)
    bad = replace_segment(receipt, 0, b64url_encode(json_dumps_compact(header)))

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_ALG_UNSUPPORTED


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c", "crit"])
def test_verify_receipt_rejects_header_member(
    issuer: Issuer, verified: VerifiedToken, member: str
) -> None:
    header = {"alg": "ES256", "typ": "kms-receipt+jwt", "kid": issuer.receipt_kid, member: ["x"]}
    receipt = issuer.receipt(verified.token)
    bad = issuer.sign_receipt_raw(json_dumps_compact(header), b64url_decode(receipt.split(".")[1]))

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_HEADER_INVALID


def test_verify_receipt_rejects_unknown_kid(issuer: Issuer, verified: VerifiedToken) -> None:
    other = Issuer(receipt_kid="kms-key-v9")

    assert _reason(other.receipt(verified.token), verified, issuer.key_set()) == (
        Reason.RECEIPT_KID_UNKNOWN
    )


def test_verify_receipt_rejects_other_key_same_kid(issuer: Issuer, verified: VerifiedToken) -> None:
    other = Issuer()

    assert _reason(other.receipt(verified.token), verified, issuer.key_set()) == (
        Reason.RECEIPT_SIGNATURE_INVALID
    )


@pytest.mark.parametrize(
    ("r_of", "s_of"),
    [
        (lambda r: 0, lambda s: s),
        (lambda r: r, lambda s: 0),
        (lambda r: P256_N, lambda s: s),
        (lambda r: r, lambda s: P256_N),
        (lambda r: 2**256 - 1, lambda s: s),
    ],
    ids=["r-zero", "s-zero", "r-equals-n", "s-equals-n", "r-all-ones"],
)
def test_verify_receipt_rejects_out_of_range_scalar(
    issuer: Issuer, verified: VerifiedToken, r_of, s_of
) -> None:
    receipt = issuer.receipt(verified.token)
    r, s = _signature_ints(receipt)
    bad = _with_signature(receipt, r_of(r), s_of(s))

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_SIGNATURE_INVALID


def test_verify_receipt_rejects_der_signature(issuer: Issuer, verified: VerifiedToken) -> None:
    receipt = issuer.receipt(verified.token)
    der = encode_dss_signature(*_signature_ints(receipt))
    bad = replace_segment(receipt, 2, b64url_encode(der))

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_SIGNATURE_INVALID


def test_verify_receipt_rejects_tampered_payload(issuer: Issuer, verified: VerifiedToken) -> None:
    receipt = issuer.receipt(verified.token)
    forged = issuer.receipt(issuer.token(jti="jti-0003")).split(".")[1]

    bad = replace_segment(receipt, 1, forged)

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_SIGNATURE_INVALID


@pytest.mark.parametrize("missing", ["token_sha256", "token_jti", "iat", "iss"])
def test_verify_receipt_rejects_missing_member(
    issuer: Issuer, verified: VerifiedToken, missing: str
) -> None:
    receipt = issuer.receipt(verified.token)
    header = b64url_decode(receipt.split(".")[0])
    payload = {
        "iss": KMS_ISSUER,
        "iat": NOW,
        "token_jti": verified.jti,
        "token_sha256": b64url_encode(hashlib.sha256(verified.token.encode()).digest()),
    }
    del payload[missing]
    bad = issuer.sign_receipt_raw(header, json_dumps_compact(payload))

    assert _reason(bad, verified, issuer.key_set()) == Reason.RECEIPT_MALFORMED


def test_verify_receipt_accepts_retired_key_in_grace(
    issuer: Issuer, verified: VerifiedToken
) -> None:
    receipt = issuer.receipt(verified.token, iat=NOW)
    keys = issuer.key_set().rotated({"keys": [issuer.jwks()["keys"][0]]}, now=NOW + 60)

    result = verify_receipt(receipt, verified, keys, NOW + 120)

    assert keys.receipt_keys[issuer.receipt_kid].retired_at == NOW + 60
    assert result.kid == issuer.receipt_kid


def test_verify_receipt_rejects_retired_key_after_grace(
    issuer: Issuer, verified: VerifiedToken
) -> None:
    receipt = issuer.receipt(verified.token, iat=NOW)
    keys = issuer.key_set().rotated({"keys": [issuer.jwks()["keys"][0]]}, now=NOW + 60)
    keys = dataclasses.replace(keys, receipt_grace_seconds=100)

    assert _reason(receipt, verified, keys, now=NOW + 160) == Reason.RECEIPT_KEY_RETIRED


def test_verify_receipt_rejects_retired_key_signing_later(
    issuer: Issuer, verified: VerifiedToken
) -> None:
    receipt = issuer.receipt(verified.token, iat=NOW + 61)
    keys = issuer.key_set().rotated({"keys": [issuer.jwks()["keys"][0]]}, now=NOW + 60)

    assert _reason(receipt, verified, keys, now=NOW + 62) == Reason.RECEIPT_KEY_RETIRED
