"""OciKms through the real oci SDK against the signature-checking OCI mock."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.jose import b64url_encode
from mint.kms import KmsError, issue_receipt
from mint.kms_oci import OciAuth, OciKms, OciKmsResponseInvalid, OciKmsUnavailable
from tests.support.ocimock import KMS_KEY_ID, KMS_KEY_VERSION_ID, Fault, OciMock

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJ0LTIifQ.c2lnbmF0dXJl"  # noqa: S105 - a fake token string to hash
# Short time-outs keep the slow-answer test at well under a second.
TEST_TIMEOUT = (1.0, 0.3)


def _connect(oci_config: Path, oci_mock: OciMock) -> OciKms:
    return OciKms.connect(
        OciAuth.from_config_file(oci_config),
        crypto_endpoint=oci_mock.url,
        key_id=KMS_KEY_ID,
        key_version_id=KMS_KEY_VERSION_ID,
        management_endpoint=oci_mock.url,
        timeout=TEST_TIMEOUT,
    )


def test_oci_receipt_verifies_with_pyjwt(oci_config: Path, oci_mock: OciMock) -> None:
    kms = _connect(oci_config, oci_mock)

    receipt = issue_receipt(kms, TOKEN, "https://mint.test", 1_767_225_600, "t-2")

    claims = jwt.decode(
        receipt, oci_mock.kms_public_key, algorithms=["ES256"], options={"verify_iat": False}
    )
    assert claims["token_sha256"] == b64url_encode(hashlib.sha256(TOKEN.encode()).digest())
    assert jwt.get_unverified_header(receipt)["kid"] == kms.kid


def test_oci_requests_carry_valid_signatures(oci_config: Path, oci_mock: OciMock) -> None:
    kms = _connect(oci_config, oci_mock)
    kms.sign(b"header.payload")

    operations = [request.operation for request in oci_mock.state.requests]
    assert operations == ["get_key_version", "sign"]
    for request in oci_mock.state.requests:
        assert request.authenticated, request.rejection
    sign_request = oci_mock.state.requests[1]
    assert "x-content-sha256" in sign_request.signed_headers


def test_oci_public_key_from_configuration(oci_config: Path, oci_mock: OciMock) -> None:
    pem = oci_mock.kms_public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kms = OciKms.connect(
        OciAuth.from_config_file(oci_config),
        crypto_endpoint=oci_mock.url,
        key_id=KMS_KEY_ID,
        key_version_id=KMS_KEY_VERSION_ID,
        public_key_pem=pem,
        timeout=TEST_TIMEOUT,
    )
    assert len(kms.sign(b"x")) == 64
    assert [request.operation for request in oci_mock.state.requests] == ["sign"]


@pytest.mark.parametrize(
    ("fault", "error_type", "message"),
    [
        (Fault.STATUS_500, OciKmsUnavailable, "HTTP 500 InternalServerError"),
        (Fault.STATUS_429, OciKmsUnavailable, "HTTP 429 TooManyRequests"),
        (Fault.SLOW, OciKmsUnavailable, "timed out"),
        (Fault.MALFORMED_JSON, OciKmsResponseInvalid, "malformed"),
    ],
)
def test_oci_sign_rejects_failed_call(
    oci_config: Path,
    oci_mock: OciMock,
    fault: Fault,
    error_type: type[KmsError],
    message: str,
) -> None:
    kms = _connect(oci_config, oci_mock)
    oci_mock.inject("sign", fault)

    with pytest.raises(error_type, match=message):
        issue_receipt(kms, TOKEN, "https://mint.test", 1_767_225_600, "t-2")


def test_oci_sign_rejects_unreachable_endpoint(oci_config: Path, oci_mock: OciMock) -> None:
    kms = _connect(oci_config, oci_mock)
    oci_mock.stop()

    with pytest.raises(OciKmsUnavailable, match="no receipt issued"):
        kms.sign(b"x")


def test_oci_sign_rejects_signature_from_other_key(oci_config: Path, oci_mock: OciMock) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kms = OciKms.connect(
        OciAuth.from_config_file(oci_config),
        crypto_endpoint=oci_mock.url,
        key_id=KMS_KEY_ID,
        key_version_id=KMS_KEY_VERSION_ID,
        public_key_pem=pem,
        timeout=TEST_TIMEOUT,
    )

    with pytest.raises(OciKmsResponseInvalid, match="does not verify"):
        kms.sign(b"x")


def test_oci_sign_rejects_unknown_key_version(oci_config: Path, oci_mock: OciMock) -> None:
    pem = oci_mock.kms_public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kms = OciKms.connect(
        OciAuth.from_config_file(oci_config),
        crypto_endpoint=oci_mock.url,
        key_id=KMS_KEY_ID,
        key_version_id="ocid1.keyversion.oc1.iad.ztmint.unknown",
        public_key_pem=pem,
        timeout=TEST_TIMEOUT,
    )

    with pytest.raises(OciKmsUnavailable, match="HTTP 404"):
        kms.sign(b"x")


def test_oci_connect_rejects_failed_key_lookup(oci_config: Path, oci_mock: OciMock) -> None:
    oci_mock.inject("get_key_version", Fault.STATUS_500)

    with pytest.raises(OciKmsUnavailable, match="get_key_version"):
        _connect(oci_config, oci_mock)


def test_oci_auth_rejects_missing_config(tmp_path: Path) -> None:
    with pytest.raises(KmsError, match="is invalid"):
        OciAuth.from_config_file(tmp_path / "absent")
