"""Tests of ``mint.webauthn``: real assertions and attestations from public vectors, and one
crafted response per rejection reason."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256
from fido2.webauthn import (
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorData,
    CollectedClientData,
)

from mint.errors import AssertionRejected, AttestationRejected, MintReason, RequestInvalid
from mint.softkey import SoftwareAuthenticator
from mint.store import Credential
from mint.webauthn import (
    RelyingParty,
    creation_options,
    load_trust_roots,
    parse_authentication_response,
    parse_registration_response,
    verify_assertion,
    verify_registration,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "webauthn"
VECTOR_ORIGIN = "http://localhost:5000"
FLAG = AuthenticatorData.FLAG


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cases(name: str) -> list[dict[str, Any]]:
    return json.loads((VECTORS / name).read_text())["cases"]


AUTHENTICATION = _cases("py_webauthn-authentication.json")
REGISTRATION = _cases("py_webauthn-registration.json")
YUBICO_ROOTS = load_trust_roots((VECTORS / "yubico-u2f-root-ca-serial-457200631.pem").read_bytes())


def _vector_rp(case: dict[str, Any], **overrides: Any) -> RelyingParty:
    settings: dict[str, Any] = {
        "rp_id": case["rp_id"],
        "origin": VECTOR_ORIGIN,
        "user_verification": "required" if case["require_user_verification"] else "preferred",
    }
    settings.update(overrides)
    return RelyingParty(**settings)


def _vector_credential(case: dict[str, Any], **overrides: Any) -> Credential:
    fields: dict[str, Any] = {
        "credential_id": _b64(case["credential"]["rawId"]),
        "user_id": "alice",
        "public_key_cose": _b64(case["credential_public_key_cose_b64url"]),
        "sign_count": case["stored_sign_count"],
        "aaguid": bytes(16),
        "backup_eligible": case["expected"]["backup_eligible"],
        "backup_state": case["expected"]["backed_up"],
        "flagged_cloned": False,
        "attestation_type": "basic",
        "created_at": 0,
    }
    fields.update(overrides)
    return Credential(**fields)


def _verify_vector(case: dict[str, Any], **rp_overrides: Any) -> Any:
    response = parse_authentication_response(case["credential"])
    return verify_assertion(
        _vector_rp(case, **rp_overrides),
        response,
        _b64(case["challenge_b64url"]),
        _vector_credential(case),
    )


VALID_AUTHENTICATION = [case for case in AUTHENTICATION if case["expected"]["verdict"] == "valid"]


@pytest.mark.parametrize("case", VALID_AUTHENTICATION, ids=lambda case: case["id"].split("::")[1])
def test_verify_assertion_accepts_vector(case: dict[str, Any]) -> None:
    verified = _verify_vector(case)
    assert verified.sign_count == case["expected"]["new_sign_count"]
    assert verified.user_verified == case["expected"]["user_verified"]


def test_verify_assertion_rejects_vector_with_wrong_public_key() -> None:
    case = next(c for c in AUTHENTICATION if c["id"].endswith("incorrect_public_key"))
    with pytest.raises(AssertionRejected) as caught:
        _verify_vector(case)
    assert caught.value.reason is MintReason.ASSERTION_INVALID


def test_verify_assertion_rejects_vector_without_required_uv() -> None:
    case = next(c for c in AUTHENTICATION if c["id"].endswith("uv_required_but_false"))
    with pytest.raises(AssertionRejected) as caught:
        _verify_vector(case)
    assert caught.value.reason is MintReason.USER_VERIFICATION_MISSING
    assert "PIN" in caught.value.detail


def test_verify_assertion_rejects_other_origin() -> None:
    with pytest.raises(AssertionRejected) as caught:
        _verify_vector(AUTHENTICATION[0], origin="https://localhost:5000")
    assert caught.value.reason is MintReason.ORIGIN_MISMATCH


def test_verify_assertion_rejects_other_rp_id() -> None:
    with pytest.raises(AssertionRejected) as caught:
        _verify_vector(AUTHENTICATION[0], rp_id="example.com")
    assert caught.value.reason is MintReason.RP_ID_MISMATCH


def test_verify_assertion_rejects_other_challenge() -> None:
    case = AUTHENTICATION[0]
    response = parse_authentication_response(case["credential"])
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(_vector_rp(case), response, os.urandom(32), _vector_credential(case))
    assert caught.value.reason is MintReason.CHALLENGE_MISMATCH


def test_verify_assertion_rejects_changed_backup_eligibility() -> None:
    case = AUTHENTICATION[0]
    response = parse_authentication_response(case["credential"])
    credential = _vector_credential(case, backup_eligible=True)
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(_vector_rp(case), response, _b64(case["challenge_b64url"]), credential)
    assert caught.value.reason is MintReason.BACKUP_FLAGS_INVALID


def test_verify_assertion_rejects_other_credential() -> None:
    case = AUTHENTICATION[0]
    response = parse_authentication_response(case["credential"])
    credential = _vector_credential(case, credential_id=b"another credential")
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(_vector_rp(case), response, _b64(case["challenge_b64url"]), credential)
    assert caught.value.reason is MintReason.ASSERTION_INVALID


class _CraftedAuthenticator:
    """Signs assertions with arbitrary flags and client data type, to reach each check."""

    rp = RelyingParty(rp_id="localhost", origin="http://localhost:8080")

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential = Credential(
            credential_id=b"crafted-credential",
            user_id="alice",
            public_key_cose=cbor.encode(dict(ES256.from_cryptography_key(self.key.public_key()))),
            sign_count=0,
            aaguid=bytes(16),
            backup_eligible=False,
            backup_state=False,
            flagged_cloned=False,
            attestation_type="self",
            created_at=0,
        )

    def response(
        self,
        challenge: bytes,
        flags: AuthenticatorData.FLAG = FLAG.UP,
        client_type: str = CollectedClientData.TYPE.GET,
    ) -> AuthenticationResponse:
        client_data = CollectedClientData.create(
            type=client_type, challenge=challenge, origin=self.rp.origin
        )
        auth_data = AuthenticatorData.create(hashlib.sha256(b"localhost").digest(), flags, 1)
        signature = self.key.sign(auth_data + client_data.hash, ec.ECDSA(hashes.SHA256()))
        return AuthenticationResponse(
            raw_id=self.credential.credential_id,
            response=AuthenticatorAssertionResponse(
                client_data=client_data, authenticator_data=auth_data, signature=signature
            ),
        )


def test_verify_assertion_accepts_crafted_valid_response() -> None:
    authenticator = _CraftedAuthenticator()
    challenge = os.urandom(32)
    response = authenticator.response(challenge)
    verified = verify_assertion(authenticator.rp, response, challenge, authenticator.credential)
    assert verified.sign_count == 1


def test_verify_assertion_rejects_missing_user_presence() -> None:
    authenticator = _CraftedAuthenticator()
    challenge = os.urandom(32)
    response = authenticator.response(challenge, flags=AuthenticatorData.FLAG(0))
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(authenticator.rp, response, challenge, authenticator.credential)
    assert caught.value.reason is MintReason.USER_PRESENCE_MISSING


def test_verify_assertion_rejects_backup_state_without_eligibility() -> None:
    authenticator = _CraftedAuthenticator()
    challenge = os.urandom(32)
    response = authenticator.response(challenge, flags=FLAG.UP | FLAG.BS)
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(authenticator.rp, response, challenge, authenticator.credential)
    assert caught.value.reason is MintReason.BACKUP_FLAGS_INVALID


def test_verify_assertion_rejects_registration_client_data() -> None:
    authenticator = _CraftedAuthenticator()
    challenge = os.urandom(32)
    response = authenticator.response(challenge, client_type=CollectedClientData.TYPE.CREATE)
    with pytest.raises(AssertionRejected) as caught:
        verify_assertion(authenticator.rp, response, challenge, authenticator.credential)
    assert caught.value.reason is MintReason.ASSERTION_INVALID


def test_parse_authentication_response_rejects_bad_base64url() -> None:
    case = AUTHENTICATION[0]
    credential = json.loads(json.dumps(case["credential"]))
    credential["response"]["authenticatorData"] = "!!not base64url!!"
    with pytest.raises(RequestInvalid) as caught:
        parse_authentication_response(credential)
    assert caught.value.reason is MintReason.REQUEST_INVALID


def _registration_case(name: str) -> dict[str, Any]:
    return next(case for case in REGISTRATION if case["id"].startswith(name))


def _verify_registration_vector(case: dict[str, Any], **rp_overrides: Any) -> Any:
    rp = _vector_rp(case, **rp_overrides)
    response = parse_registration_response(case["credential"])
    return verify_registration(rp, response, _b64(case["challenge_b64url"]))


@pytest.mark.parametrize(
    "name",
    [
        "py_webauthn/test_verify_registration_response_packed::test_verify_attestation_from_yubikey",
        "py_webauthn/test_verify_registration_response_fido_u2f::test_verify_attestation_from_yubikey",
    ],
    ids=["packed", "fido-u2f"],
)
def test_verify_registration_accepts_yubikey_chained_to_root(name: str) -> None:
    case = _registration_case(name)
    registered = _verify_registration_vector(case, trust_roots=YUBICO_ROOTS)
    assert registered.credential_id == _b64(case["expected"]["credential_id_b64url"])
    assert registered.attestation_type in ("basic", "att_ca")


def test_verify_registration_rejects_yubikey_without_configured_root() -> None:
    name = (
        "py_webauthn/test_verify_registration_response_packed::test_verify_attestation_from_yubikey"
    )
    with pytest.raises(AttestationRejected) as caught:
        _verify_registration_vector(_registration_case(name))
    assert caught.value.reason is MintReason.ATTESTATION_UNTRUSTED
    assert "ZTMINT_ATTESTATION_ROOTS" in caught.value.detail


def test_verify_registration_rejects_none_attestation() -> None:
    case = _registration_case(
        "py_webauthn/test_verify_registration_response::test_verifies_none_attestation_response"
    )
    with pytest.raises(AttestationRejected) as caught:
        _verify_registration_vector(case, allow_self_attestation=True, trust_roots=YUBICO_ROOTS)
    assert caught.value.reason is MintReason.ATTESTATION_UNTRUSTED


def _software_registration(tmp_path: Path, rp: RelyingParty) -> tuple[dict[str, Any], bytes]:
    challenge = os.urandom(32)
    options = creation_options(rp, "alice", b"handle", challenge, [])
    authenticator = SoftwareAuthenticator(tmp_path / "key.json", rp.origin)
    return authenticator.register(options), challenge


def test_verify_registration_accepts_self_attestation_in_development(tmp_path: Path) -> None:
    rp = RelyingParty("localhost", "http://localhost:8080", allow_self_attestation=True)
    credential, challenge = _software_registration(tmp_path, rp)
    registered = verify_registration(rp, parse_registration_response(credential), challenge)
    assert registered.attestation_type == "self"


def test_verify_registration_rejects_self_attestation_outside_development(tmp_path: Path) -> None:
    rp = RelyingParty("localhost", "http://localhost:8080", allow_self_attestation=False)
    credential, challenge = _software_registration(tmp_path, rp)
    with pytest.raises(AttestationRejected) as caught:
        verify_registration(rp, parse_registration_response(credential), challenge)
    assert caught.value.reason is MintReason.ATTESTATION_UNTRUSTED


def test_verify_registration_rejects_forged_self_attestation(tmp_path: Path) -> None:
    rp = RelyingParty("localhost", "http://localhost:8080", allow_self_attestation=True)
    credential, challenge = _software_registration(tmp_path, rp)
    attestation = cbor.decode(_b64(credential["response"]["attestationObject"]))
    signature = bytearray(attestation["attStmt"]["sig"])
    signature[-1] ^= 1
    attestation["attStmt"]["sig"] = bytes(signature)
    encoded = base64.urlsafe_b64encode(cbor.encode(attestation)).rstrip(b"=").decode()
    credential["response"]["attestationObject"] = encoded
    with pytest.raises(AttestationRejected) as caught:
        verify_registration(rp, parse_registration_response(credential), challenge)
    assert caught.value.reason is MintReason.ATTESTATION_INVALID
