"""JSON Web Keys for the group key (OKP Ed25519) and the receipt keys (EC P-256).

Key ids are RFC 7638 thumbprints: the SHA-256 of the JWK's required members in
lexicographic order, serialised without whitespace, then base64url-encoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from authz.jose import b64url_decode, b64url_encode, json_dumps_compact

ED25519_PUBLIC_KEY_SIZE = 32
P256_COORDINATE_SIZE = 32


def okp_ed25519_jwk(public_key: bytes) -> dict[str, str]:
    """Build the public JWK of an Ed25519 key (RFC 8037 section 2)."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(public_key)}


def ec_p256_jwk(x: bytes, y: bytes) -> dict[str, str]:
    """Build the public JWK of a P-256 key from its affine coordinates (RFC 7518 section 6.2)."""
    if len(x) != P256_COORDINATE_SIZE or len(y) != P256_COORDINATE_SIZE:
        raise ValueError("P-256 coordinates must be 32 bytes each")
    return {"crv": "P-256", "kty": "EC", "x": b64url_encode(x), "y": b64url_encode(y)}


def thumbprint(jwk: dict[str, Any]) -> str:
    """Compute the RFC 7638 SHA-256 thumbprint of a public JWK, base64url-encoded."""
    kty = jwk.get("kty")
    if kty == "OKP":
        members = {"crv": jwk["crv"], "kty": kty, "x": jwk["x"]}
    elif kty == "EC":
        members = {"crv": jwk["crv"], "kty": kty, "x": jwk["x"], "y": jwk["y"]}
    else:
        raise ValueError(f"unsupported JWK kty {kty!r}: expected OKP or EC")
    return b64url_encode(hashlib.sha256(json_dumps_compact(members)).digest())


@dataclass(frozen=True)
class PublishedKey:
    """A public key as published in the JWKS, with its key id and intended use."""

    kid: str
    jwk: dict[str, str]

    @property
    def raw(self) -> bytes:
        """Return the Ed25519 public key, or the uncompressed P-256 point 0x04 || x || y."""
        if self.jwk["kty"] == "OKP":
            return b64url_decode(self.jwk["x"])
        return b"\x04" + b64url_decode(self.jwk["x"]) + b64url_decode(self.jwk["y"])


def jwks_document(group_keys: list[PublishedKey], receipt_keys: list[PublishedKey]) -> dict:
    """Build the ``/.well-known/jwks.json`` document.

    Group keys carry ``alg: EdDSA`` and receipt keys ``alg: ES256``, each with ``use: sig``
    and its thumbprint as ``kid``, so any JOSE library can pick the right key by ``kid``.
    """
    keys = [{**key.jwk, "kid": key.kid, "use": "sig", "alg": "EdDSA"} for key in group_keys]
    keys += [{**key.jwk, "kid": key.kid, "use": "sig", "alg": "ES256"} for key in receipt_keys]
    return {"keys": keys}
