"""The check a signer runs on the WebAuthn assertion before it signs a token.

The mint binds each assertion challenge to one token request: the challenge is
``SHA-256(challenge_salt || request_digest)``, where ``request_digest`` is the SHA-256 of the
canonical JSON of ``{aud, scopes (sorted), sub, ttl}``. The coordinator forwards the
assertion to every signer, and each signer recomputes ``request_digest`` from the claims it
is asked to sign. So a signer contributes a signature share only to a token whose subject,
scopes, audience and lifetime a hardware key approved (WebAuthn Level 3, section 7.2,
"Verifying an Authentication Assertion", steps 11, 15-16 and 21-22).

``request_digest`` and ``derive_challenge`` are the single definition of this binding. The
mint imports them to make the challenge, and the signers import them to check it.

Limitations:
    A signer cannot tell whether the credential is enrolled for ``sub``, or whether its
    signature counter went backwards, because only the mint's credential store records that.
    A signer checks that some authenticator with user presence signed this exact request. Origin, RP
    ID hash and user verification are also checked only by the mint, because the signers
    are not configured with the relying party.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from fido2 import cbor
from fido2.cose import CoseKey, UnsupportedKey
from fido2.webauthn import AuthenticatorData

from actors.errors import AssertionRejected
from authz.errors import AuthzError
from authz.jose import b64url_encode, json_loads_strict

CHALLENGE_SALT_SIZE = 32
WEBAUTHN_GET = "webauthn.get"


@dataclass(frozen=True)
class AssertionEvidence:
    """The parts of a WebAuthn assertion that a signer needs to check it.

    Attributes:
        credential_public_key: the credential's COSE_Key (RFC 9052 section 7), CBOR-encoded.
        authenticator_data: the assertion's authenticatorData bytes.
        client_data_json: the assertion's clientDataJSON bytes.
        signature: the assertion signature over ``authenticator_data ||
            SHA-256(client_data_json)``.
        challenge_salt: the random salt the mint mixed into the challenge
            (``CHALLENGE_SALT_SIZE`` bytes).
    """

    credential_public_key: bytes
    authenticator_data: bytes
    client_data_json: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    challenge_salt: bytes = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"AssertionEvidence(credential_public_key=<{len(self.credential_public_key)} bytes>,"
            " <redacted>)"
        )


def request_digest(sub: str, scopes: Iterable[str], aud: str, ttl: int) -> bytes:
    """Return the SHA-256 of the canonical JSON of a token request.

    The JSON is ``{"aud":...,"scopes":[...],"sub":...,"ttl":...}``: keys sorted, scopes
    sorted, no insignificant whitespace, UTF-8 without escaping non-ASCII characters.

    Args:
        sub: the engineer's identity, the token's ``sub``.
        scopes: the granted scopes, in any order.
        aud: the token's audience.
        ttl: the token's lifetime in seconds (``exp - iat``).
    """
    body = {"aud": aud, "scopes": sorted(scopes), "sub": sub, "ttl": ttl}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).digest()


def derive_challenge(challenge_salt: bytes, digest: bytes) -> bytes:
    """Return the 32-byte WebAuthn challenge ``SHA-256(challenge_salt || digest)``.

    The mint passes these bytes as the ``challenge`` of the request options. The
    authenticator's clientDataJSON then contains them base64url-encoded.

    Raises:
        ValueError: ``challenge_salt`` is not ``CHALLENGE_SALT_SIZE`` bytes or ``digest`` is
            not 32 bytes.
    """
    if len(challenge_salt) != CHALLENGE_SALT_SIZE:
        raise ValueError(
            f"challenge_salt is {len(challenge_salt)} bytes, expected {CHALLENGE_SALT_SIZE}"
        )
    if len(digest) != 32:
        raise ValueError(f"request digest is {len(digest)} bytes, expected 32 (SHA-256)")
    return hashlib.sha256(challenge_salt + digest).digest()


def request_digest_of_claims(claims: Mapping[str, Any]) -> bytes:
    """Return ``request_digest`` of a token claims set (``sub``, ``scope``, ``aud``, ``exp - iat``).

    Raises:
        AssertionRejected: a claim is missing or has the wrong type.
    """
    sub, scope, aud = claims.get("sub"), claims.get("scope"), claims.get("aud")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not (isinstance(sub, str) and isinstance(scope, str) and isinstance(aud, str)):
        raise AssertionRejected("token claims need string sub, scope and aud")
    if not (isinstance(iat, int) and isinstance(exp, int)):
        raise AssertionRejected("token claims need integer iat and exp")
    return request_digest(sub, scope.split(" "), aud, exp - iat)


def check_assertion(evidence: AssertionEvidence, claims: Mapping[str, Any]) -> None:
    """Check that ``evidence`` is a user-present assertion over the request in ``claims``.

    Steps (WebAuthn Level 3, section 7.2):

    1. clientDataJSON ``type`` is ``webauthn.get``.
    2. Its ``challenge`` is ``base64url(derive_challenge(salt, request_digest_of_claims(claims)))``.
    3. The UP flag of authenticatorData is set.
    4. The signature verifies over ``authenticatorData || SHA-256(clientDataJSON)`` with the
       credential's COSE key.

    Args:
        evidence: the assertion the coordinator forwarded.
        claims: the claims of the token signing input this signer is asked to sign.

    Raises:
        AssertionRejected: the first failed step, named in the message.

    Security:
        Run this before a nonce is taken from the pool, so a rejected assertion costs no
        nonce. The signature check uses python-fido2's COSE algorithms (ES256, EdDSA, RS256
        and the others it implements), and an algorithm it does not know is rejected.
    """
    client_data = _client_data(evidence.client_data_json)
    if client_data.get("type") != WEBAUTHN_GET:
        raise AssertionRejected(
            f"clientDataJSON type is {client_data.get('type')!r}, expected {WEBAUTHN_GET!r}"
        )
    expected = b64url_encode(
        derive_challenge(evidence.challenge_salt, request_digest_of_claims(claims))
    )
    challenge = client_data.get("challenge")
    if not isinstance(challenge, str) or not hmac.compare_digest(challenge, expected):
        raise AssertionRejected(
            "clientDataJSON challenge is not bound to the sub, scopes, aud and ttl of the "
            "claims being signed: the assertion was made for another request"
        )

    authenticator_data = _authenticator_data(evidence.authenticator_data)
    if not authenticator_data.is_user_present():
        raise AssertionRejected("authenticator data has the UP (user present) flag cleared")

    key = _cose_key(evidence.credential_public_key)
    signed = evidence.authenticator_data + hashlib.sha256(evidence.client_data_json).digest()
    try:
        key.verify(signed, evidence.signature)
    except (InvalidSignature, ValueError) as exc:
        raise AssertionRejected(
            "assertion signature does not verify with the credential public key"
        ) from exc


def _client_data(data: bytes) -> dict[str, Any]:
    try:
        return json_loads_strict(data)
    except AuthzError as exc:
        raise AssertionRejected(f"clientDataJSON is not a JSON object: {exc.detail}") from exc


def _authenticator_data(data: bytes) -> AuthenticatorData:
    try:
        return AuthenticatorData(data)
    except (ValueError, IndexError, TypeError) as exc:
        raise AssertionRejected(
            f"authenticator data of {len(data)} bytes does not parse: expected at least 37 "
            "bytes (rpIdHash, flags, signCount)"
        ) from exc


def _cose_key(data: bytes) -> CoseKey:
    try:
        decoded = cbor.decode(data)
        if not isinstance(decoded, dict):
            raise TypeError("COSE_Key is not a CBOR map")
        key = CoseKey.parse(decoded)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise AssertionRejected(f"credential public key is not a COSE_Key: {exc}") from exc
    if isinstance(key, UnsupportedKey):
        raise AssertionRejected(
            f"credential public key uses COSE algorithm {decoded.get(3)!r}, which python-fido2 "
            "cannot verify"
        )
    return key
