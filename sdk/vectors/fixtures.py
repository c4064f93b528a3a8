"""Keys, parameters and helpers shared by the token, receipt and key case builders.

Every key comes from a fixed seed and every ECDSA signature is deterministic (RFC 6979), so
the cases come out byte-identical on every run.
"""

from __future__ import annotations

import json

from crafting import (
    Ed25519Crafter,
    P256Crafter,
    b64url_json,
)

from authz.formats import (
    TokenClaims,
    assemble_compact,
    receipt_signing_input,
    token_sha256,
)
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact
from authz.jwk import ec_p256_jwk, okp_ed25519_jwk, thumbprint

GROUP_SEED = bytes(range(32))
ATTACKER_SEED = bytes(range(100, 132))
RECEIPT_SCALAR = 0x1D2C3B4A59687786950413223140F0E0D0C0B0A09080706050403020101F2E3D
OTHER_RECEIPT_SCALAR = 0x2B
RECEIPT_KID = "kms-receipt-key-v1"

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
AUDIENCE = "svc.payments"
ISSUER = "https://mint.ztmint.example"
MAX_TTL = 3600
LEEWAY = 30
MAX_TOKEN_CHARS = 8192
MAX_RECEIPT_CHARS = 2048
ISSUED_AT = NOW - 60
TTL = 900

GROUP = Ed25519Crafter(GROUP_SEED)
ATTACKER = Ed25519Crafter(ATTACKER_SEED)
KMS = P256Crafter(RECEIPT_SCALAR)
OTHER_KMS = P256Crafter(OTHER_RECEIPT_SCALAR)
GROUP_JWK = okp_ed25519_jwk(GROUP.public_key)
GROUP_KID = thumbprint(GROUP_JWK)
RECEIPT_JWK = ec_p256_jwk(KMS.x, KMS.y)


def header_json(**overrides: object) -> str:
    """Return the token header as compact JSON, with members replaced, added or removed."""
    header: dict[str, object] = {"alg": "EdDSA", "typ": "JWT", "kid": GROUP_KID}
    for name, value in overrides.items():
        if value is None:
            header.pop(name, None)
        else:
            header[name] = value
    return json_dumps_compact(header).decode("utf-8")


def claims_json(jti: str, /, **overrides: object) -> str:
    """Return the claims of a valid token as compact JSON, with members replaced or removed."""
    claims = TokenClaims(
        iss=ISSUER,
        sub="alice@example.com",
        aud=AUDIENCE,
        scopes=("payments:read", "payments:refund"),
        iat=ISSUED_AT,
        ttl=TTL,
        jti=jti,
        signers=(1, 3),
    ).to_json()
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return json_dumps_compact(claims).decode("utf-8")


def signed(header_segment: str, payload_segment: str, signer: Ed25519Crafter = GROUP) -> str:
    """Sign the exact segments with Ed25519, whatever they contain."""
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    return assemble_compact(signing_input, signer.sign(signing_input))


def token_from_json(header: str, payload: str, signer: Ed25519Crafter = GROUP) -> str:
    """Encode hand-written header and payload JSON and sign them."""
    return signed(b64url_json(header), b64url_json(payload), signer)


def valid_token(jti: str, /, **claim_overrides: object) -> str:
    """Return a valid token with the given jti and claim changes."""
    return token_from_json(header_json(), claims_json(jti, **claim_overrides))


def receipt_for(token: str) -> str:
    """Return a valid receipt over ``token`` signed by the KMS key."""
    signing_input = receipt_signing_input(token, RECEIPT_KID, ISSUER, NOW - 30, token_jti(token))
    return assemble_es256(signing_input, KMS)


def segment_json(segment: str) -> str:
    """Decode one base64url segment to its JSON text."""
    return b64url_decode(segment).decode("utf-8")


def token_jti(token: str) -> str:
    """Read the jti claim of a token this module built."""
    return json.loads(segment_json(token.split(".")[1]))["jti"]


def assemble_es256(signing_input: bytes, signer: P256Crafter) -> str:
    """Join a receipt signing input and its raw r || s signature."""
    return assemble_compact(signing_input, signer.sign(signing_input))


def receipt_segments(
    token: str, header: dict[str, object] | None = None, payload: dict[str, object] | None = None
) -> bytes:
    """Return a receipt signing input with the header or payload replaced."""
    default_header = {"alg": "ES256", "typ": "kms-receipt+jwt", "kid": RECEIPT_KID}
    default_payload = {
        "iss": ISSUER,
        "iat": NOW - 30,
        "token_jti": token_jti(token),
        "token_sha256": b64url_encode(token_sha256(token)),
    }
    header_segment = b64url_encode(json_dumps_compact(header or default_header))
    payload_segment = b64url_encode(json_dumps_compact(payload or default_payload))
    return f"{header_segment}.{payload_segment}".encode("ascii")


def ok_token(name: str, description: str, token: str, jti: str, **claims: str) -> dict:
    """Describe a token case that must verify."""
    expect = {
        "result": "ok",
        "sub": claims.get("sub", "alice@example.com"),
        "scope": claims.get("scope", "payments:read payments:refund"),
        "jti": jti,
    }
    return {"name": name, "description": description, "token": token, "expect": expect}


def bad(name: str, description: str, reason: str, **fields: str) -> dict:
    """Describe a case that must be rejected with ``reason``."""
    return {
        "name": name,
        "description": description,
        **fields,
        "expect": {"result": "error", "reason": reason},
    }
