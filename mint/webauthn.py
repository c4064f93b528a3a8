"""WebAuthn relying-party checks for registration and assertion (WebAuthn Level 3).

The ceremonies are pure functions: the caller passes the expected challenge and the stored
credential, and receives either a result or an ``AssertionRejected`` / ``AttestationRejected``
with a stable reason. Storage, time and challenge consumption belong to ``mint.service``.

The explicit checks here (type, origin, challenge, rpIdHash, flags) give each failure its own
reason code. After them, python-fido2's ``Fido2Server`` runs its own checks and verifies
the signature and the WebAuthn attestation statement, so every check is made twice by two
independent implementations.

Security:
    The origin is compared exactly with the one configured origin (no subdomains, no
    scheme changes). Packed self-attestation proves only that the credential key signed its
    own registration, not that the key lives in hardware; accept it only in development
    (``allow_self_attestation``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import constant_time
from cryptography.hazmat.primitives.serialization import Encoding
from fido2 import cbor
from fido2.attestation.base import (
    Attestation,
    AttestationType,
    InvalidAttestation,
    verify_x509_chain,
)
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationConveyancePreference,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorData,
    CollectedClientData,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authz.errors import AuthzError
from authz.jose import b64url_decode
from mint.errors import AssertionRejected, AttestationRejected, MintReason, RequestInvalid
from mint.store import Credential

RP_NAME = "ztmint"

# Exceptions python-fido2 2.2.1 raises while parsing malformed response JSON, CBOR or binary
# structures. Each of them means that the client sent malformed data.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, struct.error)


@dataclass(frozen=True)
class RelyingParty:
    """The relying-party configuration the ceremonies are checked against.

    Attributes:
        rp_id: the RP ID; the authenticator data must carry its SHA-256.
        origin: the one accepted ``clientDataJSON.origin``.
        user_verification: ``preferred`` or ``required``.
        allow_self_attestation: accept packed self-attestation (development only).
        trust_roots: DER certificates that an attestation trust path must chain to.
    """

    rp_id: str
    origin: str
    user_verification: str = "preferred"
    allow_self_attestation: bool = False
    trust_roots: tuple[bytes, ...] = ()

    @property
    def uv_requirement(self) -> UserVerificationRequirement:
        """The user verification requirement as python-fido2's enum."""
        return UserVerificationRequirement(self.user_verification)

    def fido2_server(self) -> Fido2Server:
        """Build a python-fido2 server that checks the exact origin and our attestation rules."""
        return Fido2Server(
            PublicKeyCredentialRpEntity(name=RP_NAME, id=self.rp_id),
            attestation=AttestationConveyancePreference.DIRECT,
            verify_origin=lambda origin: origin == self.origin,
            verify_attestation=self._verify_attestation,
        )

    def _verify_attestation(self, attestation: AttestationObject, client_data_hash: bytes) -> None:
        check_attestation_statement(self, attestation, client_data_hash)


@dataclass(frozen=True)
class RegisteredCredential:
    """A credential whose WebAuthn attestation passed every check, ready to be stored.

    Attributes:
        credential_id: the raw credential id.
        public_key_cose: the credential public key as a COSE_Key.
        sign_count: the signature counter at registration.
        aaguid: the authenticator model's AAGUID.
        backup_eligible: the BE flag.
        backup_state: the BS flag.
        user_verified: the UV flag.
        attestation_type: ``self`` or ``basic``/``att_ca`` (a trust path to a root).
    """

    credential_id: bytes
    public_key_cose: bytes
    sign_count: int
    aaguid: bytes
    backup_eligible: bool
    backup_state: bool
    user_verified: bool
    attestation_type: str


@dataclass(frozen=True)
class VerifiedAssertion:
    """An assertion whose signature and flags passed every check.

    The signature counter has not been checked yet: that needs the store, because it must
    be compared and updated atomically.
    """

    credential_id: bytes
    sign_count: int
    user_verified: bool
    backup_state: bool


def load_trust_roots(pem: bytes) -> tuple[bytes, ...]:
    """Parse PEM certificates into the DER form ``RelyingParty.trust_roots`` expects."""
    return tuple(cert.public_bytes(Encoding.DER) for cert in x509.load_pem_x509_certificates(pem))


def creation_options(
    rp: RelyingParty,
    user_name: str,
    user_handle: bytes,
    challenge: bytes,
    exclude: list[Credential],
) -> dict[str, Any]:
    """Build ``PublicKeyCredentialCreationOptions`` JSON (WebAuthn Level 3 section 5.4)."""
    options, _ = rp.fido2_server().register_begin(
        PublicKeyCredentialUserEntity(name=user_name, id=user_handle, display_name=user_name),
        credentials=[_descriptor(credential) for credential in exclude],
        resident_key_requirement=ResidentKeyRequirement.DISCOURAGED,
        user_verification=rp.uv_requirement,
        challenge=challenge,
    )
    return dict(options.public_key)


def request_options(rp: RelyingParty, challenge: bytes, allow: list[Credential]) -> dict[str, Any]:
    """Build ``PublicKeyCredentialRequestOptions`` JSON (WebAuthn Level 3 section 5.5)."""
    options, _ = rp.fido2_server().authenticate_begin(
        credentials=[_descriptor(credential) for credential in allow],
        user_verification=rp.uv_requirement,
        challenge=challenge,
    )
    return dict(options.public_key)


def parse_registration_response(data: Mapping[str, Any]) -> RegistrationResponse:
    """Parse ``RegistrationResponseJSON``.

    Raises:
        RequestInvalid: when the JSON, base64url, CBOR or binary structures are malformed.
    """
    _require_base64url(data, ("clientDataJSON", "attestationObject"), ())
    _require_public_key_type(data)
    try:
        return RegistrationResponse.from_dict(data)
    except _PARSE_ERRORS as exc:
        raise RequestInvalid(
            MintReason.REQUEST_INVALID,
            f"credential is not a valid WebAuthn RegistrationResponse JSON: {exc}",
        ) from exc


def parse_authentication_response(data: Mapping[str, Any]) -> AuthenticationResponse:
    """Parse ``AuthenticationResponseJSON``.

    Raises:
        RequestInvalid: when the JSON, base64url or binary structures are malformed.
    """
    _require_base64url(data, ("clientDataJSON", "authenticatorData", "signature"), ("userHandle",))
    _require_public_key_type(data)
    try:
        return AuthenticationResponse.from_dict(data)
    except _PARSE_ERRORS as exc:
        raise RequestInvalid(
            MintReason.REQUEST_INVALID,
            f"assertion is not a valid WebAuthn AuthenticationResponse JSON: {exc}",
        ) from exc


def verify_registration(
    rp: RelyingParty, response: RegistrationResponse, expected_challenge: bytes
) -> RegisteredCredential:
    """Verify a registration ceremony (WebAuthn Level 3 section 7.1).

    Raises:
        AssertionRejected: when client data or flags fail (origin, challenge, rpId, UP, UV).
        AttestationRejected: when the attestation statement is invalid or not trusted.
    """
    attestation = response.response.attestation_object
    auth_data = attestation.auth_data
    check_client_data(
        rp, response.response.client_data, CollectedClientData.TYPE.CREATE, expected_challenge
    )
    check_authenticator_flags(rp, auth_data)
    if auth_data.credential_data is None:
        raise AttestationRejected(
            MintReason.ATTESTATION_INVALID,
            "authenticator data has no attested credential data; expected the AT flag",
        )
    if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
        raise AssertionRejected(
            MintReason.BACKUP_FLAGS_INVALID,
            "BS flag is set without the BE flag, which WebAuthn forbids",
        )

    # The statement is checked by check_attestation_statement through Fido2Server's hook.
    state = _fido2_state(rp, expected_challenge)
    try:
        rp.fido2_server().register_complete(state, response)
    except ValueError as exc:
        raise AttestationRejected(
            MintReason.ATTESTATION_INVALID, f"registration verification failed: {exc}"
        ) from exc

    credential_data = auth_data.credential_data
    result = _attestation_result(attestation, response.response.client_data.hash)
    return RegisteredCredential(
        credential_id=credential_data.credential_id,
        public_key_cose=cbor.encode(dict(credential_data.public_key)),
        sign_count=auth_data.counter,
        aaguid=bytes(credential_data.aaguid),
        backup_eligible=auth_data.is_backup_eligible(),
        backup_state=auth_data.is_backed_up(),
        user_verified=auth_data.is_user_verified(),
        attestation_type=result.attestation_type.name.lower(),
    )


def verify_assertion(
    rp: RelyingParty,
    response: AuthenticationResponse,
    expected_challenge: bytes,
    credential: Credential,
) -> VerifiedAssertion:
    """Verify an authentication ceremony except the counter (WebAuthn Level 3 section 7.2).

    Raises:
        AssertionRejected: with the reason of the first failed check.
    """
    if not constant_time.bytes_eq(response.raw_id, credential.credential_id):
        raise AssertionRejected(
            MintReason.ASSERTION_INVALID, "assertion is for another credential than expected"
        )
    auth_data = response.response.authenticator_data
    check_client_data(
        rp, response.response.client_data, CollectedClientData.TYPE.GET, expected_challenge
    )
    check_authenticator_flags(rp, auth_data)
    check_backup_flags(auth_data, credential)

    # Steps 20-21: signature over authenticatorData || SHA-256(clientDataJSON).
    state = _fido2_state(rp, expected_challenge)
    stored = AttestedCredentialData.create(
        Aaguid(credential.aaguid),
        credential.credential_id,
        CoseKey.parse(cbor.decode(credential.public_key_cose)),
    )
    try:
        rp.fido2_server().authenticate_complete(state, [stored], response)
    except ValueError as exc:
        raise AssertionRejected(
            MintReason.ASSERTION_INVALID, f"assertion verification failed: {exc}"
        ) from exc

    return VerifiedAssertion(
        credential_id=credential.credential_id,
        sign_count=auth_data.counter,
        user_verified=auth_data.is_user_verified(),
        backup_state=auth_data.is_backed_up(),
    )


def check_client_data(
    rp: RelyingParty,
    client_data: CollectedClientData,
    expected_type: str,
    expected_challenge: bytes,
) -> None:
    """Check type, challenge and origin of ``clientDataJSON`` (section 7.2 steps 11-14)."""
    if client_data.type != expected_type:
        raise AssertionRejected(
            MintReason.ASSERTION_INVALID,
            f"clientDataJSON.type is {client_data.type!r}; expected {expected_type!r}",
        )
    if not constant_time.bytes_eq(client_data.challenge, expected_challenge):
        raise AssertionRejected(
            MintReason.CHALLENGE_MISMATCH,
            "clientDataJSON.challenge is not the challenge issued for this request",
        )
    if client_data.origin != rp.origin:
        raise AssertionRejected(
            MintReason.ORIGIN_MISMATCH,
            f"clientDataJSON.origin is {client_data.origin!r}; expected {rp.origin!r}",
        )
    # WebAuthn Level 3 leaves accepting cross-origin calls to the relying party. The mint
    # serves only its own page and CLI, so a call from an iframe on another site is invalid.
    if client_data.cross_origin or "topOrigin" in _client_data_members(client_data):
        raise AssertionRejected(
            MintReason.ORIGIN_MISMATCH,
            "clientDataJSON reports a cross-origin call (crossOrigin or topOrigin); "
            "use the mint's own page or the ztmint CLI",
        )


def check_authenticator_flags(rp: RelyingParty, auth_data: AuthenticatorData) -> None:
    """Check rpIdHash, UP and UV of the authenticator data (section 7.2 steps 15-17)."""
    expected_hash = hashlib.sha256(rp.rp_id.encode("utf-8")).digest()
    if not constant_time.bytes_eq(auth_data.rp_id_hash, expected_hash):
        raise AssertionRejected(
            MintReason.RP_ID_MISMATCH,
            f"rpIdHash is not SHA-256 of {rp.rp_id!r}; the authenticator used another RP ID",
        )
    if not auth_data.is_user_present():
        raise AssertionRejected(
            MintReason.USER_PRESENCE_MISSING,
            "UP flag not set; touch the authenticator when it blinks",
        )
    if rp.user_verification == "required" and not auth_data.is_user_verified():
        raise AssertionRejected(
            MintReason.USER_VERIFICATION_MISSING,
            "UV flag not set but user verification is required; set a PIN on the authenticator",
        )


def check_backup_flags(auth_data: AuthenticatorData, credential: Credential) -> None:
    """Check BE and BS against the credential record (WebAuthn Level 3 section 6.1.3).

    BE is fixed for the lifetime of a credential, and BS may be set only when BE is.
    """
    if auth_data.is_backup_eligible() != credential.backup_eligible:
        raise AssertionRejected(
            MintReason.BACKUP_FLAGS_INVALID,
            f"BE flag is {auth_data.is_backup_eligible()} but was "
            f"{credential.backup_eligible} at registration; BE never changes",
        )
    if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
        raise AssertionRejected(
            MintReason.BACKUP_FLAGS_INVALID,
            "BS flag is set without the BE flag, which WebAuthn forbids",
        )


def check_attestation_statement(
    rp: RelyingParty, attestation: AttestationObject, client_data_hash: bytes
) -> None:
    """Verify the attestation statement and its trust (WebAuthn Level 3 section 7.1 steps 19-22).

    Accepted: a statement whose trust path chains to one of ``rp.trust_roots``, and packed
    self-attestation when ``rp.allow_self_attestation`` is set. Rejected: ``none``
    attestation, unsupported formats, and any trust path without a configured root.

    Limitations:
        Certificate validity periods and revocation are not checked, because python-fido2's
        ``verify_x509_chain`` checks signatures only. FIDO Metadata Service lookups by AAGUID
        are not done.
    """
    result = _attestation_result(attestation, client_data_hash)
    kind = result.attestation_type
    if kind == AttestationType.SELF:
        if rp.allow_self_attestation:
            return
        raise AttestationRejected(
            MintReason.ATTESTATION_UNTRUSTED,
            "self-attestation is accepted only in development; enroll a hardware key",
        )
    if kind == AttestationType.NONE or not result.trust_path:
        raise AttestationRejected(
            MintReason.ATTESTATION_UNTRUSTED,
            f"attestation format {attestation.fmt!r} proves no authenticator model; "
            "use an authenticator with packed or fido-u2f attestation",
        )
    for root in rp.trust_roots:
        try:
            verify_x509_chain([*result.trust_path, root])
        except InvalidAttestation:
            continue
        return
    raise AttestationRejected(
        MintReason.ATTESTATION_UNTRUSTED,
        "attestation certificate does not chain to a configured root; "
        "add the vendor root to ZTMINT_ATTESTATION_ROOTS",
    )


def _attestation_result(attestation: AttestationObject, client_data_hash: bytes) -> Any:
    verifier = Attestation.for_type(attestation.fmt)()
    try:
        return verifier.verify(attestation.att_stmt, attestation.auth_data, client_data_hash)
    except InvalidAttestation as exc:
        raise AttestationRejected(
            MintReason.ATTESTATION_INVALID,
            f"attestation statement of format {attestation.fmt!r} is invalid: {exc!r}",
        ) from exc


def _client_data_members(client_data: CollectedClientData) -> dict[str, Any]:
    try:
        members = json.loads(bytes(client_data))
    except ValueError:
        return {}
    return members if isinstance(members, dict) else {}


def _require_public_key_type(data: Mapping[str, Any]) -> None:
    """Require ``type`` to be ``public-key``, the only PublicKeyCredentialType (section 5.8.2)."""
    if data.get("type") != "public-key":
        raise RequestInvalid(MintReason.REQUEST_INVALID, 'credential type must be "public-key"')


def _require_base64url(
    data: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> None:
    """Reject binary fields that are not canonical unpadded base64url (RFC 4648 section 5).

    python-fido2 decodes leniently, so a mangled field would otherwise reach the signature
    check and be reported as an invalid assertion instead of a malformed request.
    """
    response = data.get("response") if isinstance(data, Mapping) else None
    if not isinstance(response, Mapping):
        raise RequestInvalid(MintReason.REQUEST_INVALID, "response member is missing")
    fields = [("rawId", data.get("rawId"))]
    fields += [(f"response.{name}", response.get(name)) for name in required]
    fields += [(f"response.{name}", response[name]) for name in optional if response.get(name)]
    for name, value in fields:
        if not isinstance(value, str):
            raise RequestInvalid(MintReason.REQUEST_INVALID, f"{name} is missing or not a string")
        try:
            b64url_decode(value)
        except AuthzError:
            raise RequestInvalid(
                MintReason.REQUEST_INVALID, f"{name} is not canonical unpadded base64url"
            ) from None


def _fido2_state(rp: RelyingParty, challenge: bytes) -> dict[str, Any]:
    # The state layout of python-fido2 2.2.1's Fido2Server._make_internal_state.
    return {"challenge": websafe_encode(challenge), "user_verification": rp.uv_requirement}


def _descriptor(credential: Credential) -> PublicKeyCredentialDescriptor:
    return PublicKeyCredentialDescriptor(
        type=PublicKeyCredentialType.PUBLIC_KEY, id=credential.credential_id
    )
