"""Pkcs11Kms against a real SoftHSM2 token initialised by scripts/softhsm-init.sh."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authz.jose import b64url_decode, b64url_encode
from authz.jwk import thumbprint
from mint.kms import issue_receipt
from mint.kms_pkcs11 import (
    Pkcs11KeyNotFound,
    Pkcs11Kms,
    Pkcs11LoginFailed,
    read_pin,
)
from tests.integration.kms.conftest import KEY_LABEL, TOKEN_LABEL, USER_PIN

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJ0LTEifQ.c2lnbmF0dXJl"  # noqa: S105 - a fake token string to hash


def _public_key(kms: Pkcs11Kms) -> ec.EllipticCurvePublicKey:
    jwk = kms.public_jwk()
    point = b"\x04" + b64url_decode(jwk["x"]) + b64url_decode(jwk["y"])
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def test_pkcs11_receipt_verifies_with_pyjwt(softhsm_token: str) -> None:
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN) as kms:
        receipt = issue_receipt(kms, TOKEN, "https://mint.test", 1_767_225_600, "t-1")
        public_key = _public_key(kms)

    claims = jwt.decode(receipt, public_key, algorithms=["ES256"], options={"verify_iat": False})
    header = jwt.get_unverified_header(receipt)
    assert claims["token_sha256"] == b64url_encode(hashlib.sha256(TOKEN.encode()).digest())
    assert header["kid"] == kms.kid
    assert header["typ"] == "kms-receipt+jwt"


def test_pkcs11_sign_returns_raw_r_s_that_verifies(softhsm_token: str) -> None:
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN) as kms:
        signature = kms.sign(b"header.payload")
        public_key = _public_key(kms)

    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public_key.verify(der, b"header.payload", ec.ECDSA(hashes.SHA256()))


def test_pkcs11_kid_is_thumbprint_of_token_key(softhsm_token: str) -> None:
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN) as kms:
        assert kms.kid == thumbprint(kms.public_jwk())
        assert kms.public_jwk()["crv"] == "P-256"


def test_pkcs11_sign_from_many_threads(softhsm_token: str) -> None:
    results: list[bytes] = []
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN) as kms:
        public_key = _public_key(kms)

        def sign_some() -> None:
            for _ in range(5):
                results.append(kms.sign(b"concurrent"))

        threads = [threading.Thread(target=sign_some) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert len(results) == 20
    for signature in results:
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        public_key.verify(der, b"concurrent", ec.ECDSA(hashes.SHA256()))


def test_pkcs11_open_rejects_wrong_pin(softhsm_token: str) -> None:
    with pytest.raises(Pkcs11LoginFailed, match="PinIncorrect"):
        Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, "wrong-pin-0000")


def test_pkcs11_open_rejects_missing_key(softhsm_token: str) -> None:
    with pytest.raises(Pkcs11KeyNotFound, match="labelled 'absent'"):
        Pkcs11Kms(softhsm_token, TOKEN_LABEL, "absent", USER_PIN)


def test_pkcs11_open_rejects_unknown_token(softhsm_token: str) -> None:
    with pytest.raises(Pkcs11LoginFailed, match="NoSuchToken"):
        Pkcs11Kms(softhsm_token, "no-such-token", KEY_LABEL, USER_PIN)


def test_pkcs11_open_rejects_second_instance(softhsm_token: str) -> None:
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN):
        with pytest.raises(Pkcs11LoginFailed, match="UserAlreadyLoggedIn"):
            Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN)


def test_pkcs11_repr_hides_pin(softhsm_token: str) -> None:
    with Pkcs11Kms(softhsm_token, TOKEN_LABEL, KEY_LABEL, USER_PIN) as kms:
        text = repr(kms)
    assert USER_PIN not in text
    assert "<redacted>" in text


def test_read_pin_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZTMINT_TEST_PIN", "from-env")
    pin_file = tmp_path / "pin"
    pin_file.write_text("from-file\n")
    assert read_pin(env_var="ZTMINT_TEST_PIN") == "from-env"
    assert read_pin(pin_file=pin_file) == "from-file"


def test_read_pin_rejects_empty_and_ambiguous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZTMINT_TEST_PIN", "")
    with pytest.raises(Pkcs11LoginFailed, match="is empty"):
        read_pin(env_var="ZTMINT_TEST_PIN")
    with pytest.raises(Pkcs11LoginFailed, match="exactly one"):
        read_pin()
    with pytest.raises(Pkcs11LoginFailed, match="cannot read PIN file"):
        read_pin(pin_file=tmp_path / "missing")
