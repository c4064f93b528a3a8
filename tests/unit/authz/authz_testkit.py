"""Builds real tokens, receipts and JWKS documents for the authz tests.

Tokens are signed with a PyNaCl Ed25519 key through ``authz.formats``; receipts with a
``cryptography`` P-256 key, encoded as raw r || s. The ``sign_*_raw`` helpers take header
and payload bytes as given, so tests can sign malformed JSON that the formats module would
never produce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authz.formats import TokenClaims, assemble_compact, receipt_signing_input, token_signing_input
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact
from authz.jwk import PublishedKey, ec_p256_jwk, jwks_document, okp_ed25519_jwk, thumbprint
from authz.keys import KeySet, key_set_from_jwks

NOW = 1_800_000_000
ISSUER = "https://mint.ztmint.test"
AUDIENCE = "orders-api"
KMS_ISSUER = "local-kms"


def es256_raw_signature(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    """Sign ``message`` with ES256 and return the JWS form r || s (32 bytes each)."""
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass
class Issuer:
    """A group key and a receipt key that mint tokens and receipts like the mint API does."""

    group_key: nacl.signing.SigningKey = field(default_factory=nacl.signing.SigningKey.generate)
    receipt_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    receipt_kid: str = "kms-key-v1"

    @property
    def group_jwk(self) -> dict[str, str]:
        """Return the group key's public JWK."""
        return okp_ed25519_jwk(self.group_key.verify_key.encode())

    @property
    def kid(self) -> str:
        """Return the group key's RFC 7638 thumbprint."""
        return thumbprint(self.group_jwk)

    def receipt_jwk(self) -> dict[str, str]:
        """Return the receipt key's public JWK."""
        numbers = self.receipt_key.public_key().public_numbers()
        return ec_p256_jwk(numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))

    def jwks(self) -> dict[str, Any]:
        """Return the JWKS document the mint API would publish."""
        return jwks_document(
            [PublishedKey(self.kid, self.group_jwk)],
            [PublishedKey(self.receipt_kid, self.receipt_jwk())],
        )

    def key_set(self) -> KeySet:
        """Return the verifier's key set for this issuer."""
        return key_set_from_jwks(self.jwks())

    def claims(self, **overrides: Any) -> TokenClaims:
        """Return valid claims issued at ``NOW`` with a 15-minute lifetime."""
        values: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "alice@example.com",
            "aud": AUDIENCE,
            "scopes": ("orders:read",),
            "iat": NOW,
            "ttl": 900,
            "jti": "jti-0001",
        }
        values.update(overrides)
        return TokenClaims(**values)

    def token(self, **overrides: Any) -> str:
        """Return a valid token, with claims changed by ``overrides``."""
        signing_input = token_signing_input(self.claims(**overrides), self.kid)
        return assemble_compact(signing_input, self.group_key.sign(signing_input).signature)

    def sign_token_raw(self, header: bytes, payload: bytes) -> str:
        """Sign arbitrary header and payload JSON bytes with the group key."""
        signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}".encode("ascii")
        return assemble_compact(signing_input, self.group_key.sign(signing_input).signature)

    def token_with(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        """Sign a token whose header and claims are replaced member by member."""
        full_header = {"alg": "EdDSA", "typ": "JWT", "kid": self.kid, **(header or {})}
        full_header = {key: value for key, value in full_header.items() if value is not DROP}
        payload = {**self.claims().to_json(), **claims}
        payload = {key: value for key, value in payload.items() if value is not DROP}
        return self.sign_token_raw(json_dumps_compact(full_header), json_dumps_compact(payload))

    def receipt(self, token: str, jti: str | None = None, iat: int = NOW) -> str:
        """Return a valid receipt over ``token`` (its jti read from the token unless given)."""
        if jti is None:
            jti = json.loads(b64url_decode(token.split(".")[1]))["jti"]
        signing_input = receipt_signing_input(token, self.receipt_kid, KMS_ISSUER, iat, jti)
        return assemble_compact(signing_input, es256_raw_signature(self.receipt_key, signing_input))

    def sign_receipt_raw(self, header: bytes, payload: bytes) -> str:
        """Sign arbitrary receipt header and payload JSON bytes with the receipt key."""
        signing_input = f"{b64url_encode(header)}.{b64url_encode(payload)}".encode("ascii")
        return assemble_compact(signing_input, es256_raw_signature(self.receipt_key, signing_input))


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
"""Marks a header member or claim to leave out in ``Issuer.token_with``."""


def replace_segment(compact: str, index: int, segment: str) -> str:
    """Return ``compact`` with its segment number ``index`` (0, 1 or 2) replaced."""
    parts = compact.split(".")
    parts[index] = segment
    return ".".join(parts)
