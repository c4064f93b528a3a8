"""Wire formats of the token and the receipt, version 1.

Token: a compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037), header exactly
``{"alg":"EdDSA","typ":"JWT","kid":<RFC 7638 thumbprint of the group key>}``. Claims are the
RFC 7519 registered claims ``iss sub aud iat nbf exp jti``, ``scope`` as a space-separated
string (RFC 8693 section 4.2), ``amr`` (RFC 8176), and ``ztm``, ztmint's own object:

    {"v": 1, "signers": [<FROST identifiers of the signers that made this token>],
     "evidence": <base64url SHA-256 of the verified attestation reports, when present>}

Receipt: a compact JWS signed with ES256 (raw r || s, RFC 7518 section 3.4) by the KMS, header
``{"alg":"ES256","typ":"kms-receipt+jwt","kid":<receipt key id>}`` and payload
``{"iss":..., "iat":..., "token_jti":..., "token_sha256":<base64url SHA-256 of the token>}``.
The receipt binds the whole token string, so neither the header nor the claims of a token can
be changed without invalidating its receipt.

This module only builds these formats. Verification lives in ``authz.verify``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from authz.jose import b64url_encode, json_dumps_compact

FORMAT_VERSION = 1
TOKEN_TYP = "JWT"
TOKEN_ALG = "EdDSA"
RECEIPT_TYP = "kms-receipt+jwt"
RECEIPT_ALG = "ES256"
MIN_TTL_SECONDS = 5 * 60
MAX_TTL_SECONDS = 60 * 60


@dataclass(frozen=True)
class TokenClaims:
    """The claims of one token, before signing.

    Attributes:
        iss: issuer, the mint service's URL.
        sub: the engineer's identity.
        aud: the one audience (service) the token is for.
        scopes: granted scopes, serialised as the space-separated ``scope`` claim.
        iat: issue time, seconds since the epoch.
        ttl: lifetime in seconds; ``exp`` is ``iat + ttl`` and ``nbf`` is ``iat``.
        jti: unique token id.
        amr: authentication methods references (RFC 8176), for example ``["hwk", "user"]``.
        signers: FROST identifiers of the signers whose shares make the signature.
        evidence: base64url SHA-256 digest of the verified attestation evidence, or None.
    """

    iss: str
    sub: str
    aud: str
    scopes: tuple[str, ...]
    iat: int
    ttl: int
    jti: str
    amr: tuple[str, ...] = ("hwk", "user")
    signers: tuple[int, ...] = ()
    evidence: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Return the claims set as the JSON object that is signed."""
        ztm: dict[str, object] = {"v": FORMAT_VERSION, "signers": list(self.signers)}
        if self.evidence is not None:
            ztm["evidence"] = self.evidence
        return {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud,
            "scope": " ".join(self.scopes),
            "iat": self.iat,
            "nbf": self.iat,
            "exp": self.iat + self.ttl,
            "jti": self.jti,
            "amr": list(self.amr),
            "ztm": ztm,
            **self.extra,
        }


def token_header(kid: str) -> dict[str, str]:
    """Return the fixed token header for the group key with thumbprint ``kid``."""
    return {"alg": TOKEN_ALG, "typ": TOKEN_TYP, "kid": kid}


def token_signing_input(claims: TokenClaims, kid: str) -> bytes:
    """Build the JWS signing input ``BASE64URL(header) || '.' || BASE64URL(claims)``.

    These ASCII bytes are the message that the signers sign with FROST.
    """
    header = b64url_encode(json_dumps_compact(token_header(kid)))
    payload = b64url_encode(json_dumps_compact(claims.to_json()))
    return f"{header}.{payload}".encode("ascii")


def assemble_compact(signing_input: bytes, signature: bytes) -> str:
    """Join a JWS signing input and its signature into the compact serialization."""
    return f"{signing_input.decode('ascii')}.{b64url_encode(signature)}"


def token_sha256(token: str) -> bytes:
    """Return the SHA-256 of the token's compact serialization, the value a receipt binds."""
    return hashlib.sha256(token.encode("ascii")).digest()


def receipt_signing_input(token: str, kid: str, iss: str, iat: int, token_jti: str) -> bytes:
    """Build the JWS signing input of the receipt over ``token``."""
    header = {"alg": RECEIPT_ALG, "typ": RECEIPT_TYP, "kid": kid}
    payload = {
        "iss": iss,
        "iat": iat,
        "token_jti": token_jti,
        "token_sha256": b64url_encode(token_sha256(token)),
    }
    encoded_header = b64url_encode(json_dumps_compact(header))
    encoded_payload = b64url_encode(json_dumps_compact(payload))
    return f"{encoded_header}.{encoded_payload}".encode("ascii")
