"""Tests of ``mint.kms``: receipts verify with PyJWT and with ``cryptography`` directly."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from mint.kms import KmsError, LocalKms, der_to_raw_signature, issue_receipt

COMPACT_JWS = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
JTI = "jti-1"


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key(kms: LocalKms) -> ec.EllipticCurvePublicKey:
    return jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(kms.public_jwk()))  # type: ignore[return-value]


def test_local_kms_creates_key_file_private_to_owner(tmp_path: Path) -> None:
    LocalKms(tmp_path / "kms.pem")
    assert stat.S_IMODE(os.stat(tmp_path / "kms.pem").st_mode) == 0o600


def test_local_kms_reloads_same_key(tmp_path: Path) -> None:
    first = LocalKms(tmp_path / "kms.pem")
    second = LocalKms(tmp_path / "kms.pem")
    assert first.kid == second.kid


def test_local_kms_repr_hides_key(tmp_path: Path) -> None:
    assert "redacted" in repr(LocalKms(tmp_path / "kms.pem"))


def test_receipt_verifies_with_pyjwt_es256(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    receipt = issue_receipt(kms, COMPACT_JWS, "https://mint", 1_767_225_600, JTI)
    claims = jwt.decode(receipt, _public_key(kms), algorithms=["ES256"])
    expected_digest = base64.urlsafe_b64encode(hashlib.sha256(COMPACT_JWS.encode()).digest())
    assert claims["token_sha256"] == expected_digest.rstrip(b"=").decode()
    assert claims["token_jti"] == JTI


def test_receipt_header_names_key_and_type(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    receipt = issue_receipt(kms, COMPACT_JWS, "https://mint", 1_767_225_600, JTI)
    header = jwt.get_unverified_header(receipt)
    assert header == {"alg": "ES256", "typ": "kms-receipt+jwt", "kid": kms.kid}


def test_receipt_verifies_with_cryptography_raw_signature(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    receipt = issue_receipt(kms, COMPACT_JWS, "https://mint", 1_767_225_600, JTI)
    header, payload, signature = receipt.split(".")
    raw = _b64(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    _public_key(kms).verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))


def test_receipt_rejects_other_token(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    receipt = issue_receipt(kms, COMPACT_JWS, "https://mint", 1_767_225_600, JTI)
    claims = jwt.decode(receipt, _public_key(kms), algorithms=["ES256"])
    other = base64.urlsafe_b64encode(hashlib.sha256(b"x" + COMPACT_JWS.encode()).digest())
    assert claims["token_sha256"] != other.rstrip(b"=").decode()


def test_receipt_signature_fails_after_tampering(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    receipt = issue_receipt(kms, COMPACT_JWS, "https://mint", 1_767_225_600, JTI)
    header, _, signature = receipt.split(".")
    raw = _b64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    with pytest.raises(InvalidSignature):
        _public_key(kms).verify(der, f"{header}.e30".encode(), ec.ECDSA(hashes.SHA256()))


def test_der_to_raw_signature_pads_short_integers() -> None:
    raw = der_to_raw_signature(encode_dss_signature(1, 2))
    assert raw == (1).to_bytes(32, "big") + (2).to_bytes(32, "big")


def test_local_kms_rejects_non_p256_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "kms.pem").write_bytes(pem)
    with pytest.raises(KmsError, match="P-256"):
        LocalKms(tmp_path / "kms.pem")


class _ShortSigner:
    kid = "k"

    def public_jwk(self) -> dict[str, str]:
        return {}

    def sign(self, signing_input: bytes) -> bytes:
        return b"\x00" * 70


def test_issue_receipt_rejects_der_shaped_signature() -> None:
    with pytest.raises(KmsError, match="expected raw r \\|\\| s of 64"):
        issue_receipt(_ShortSigner(), COMPACT_JWS, "https://mint", 0, "jti")
