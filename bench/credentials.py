"""Tokens, receipts and key documents for the authz benchmark.

The group key is a single PyNaCl Ed25519 key, not a FROST group key. A FROST(Ed25519)
aggregate signature is an ordinary Ed25519 signature under the group key, so the verifier
cannot tell the two apart, and one key keeps the set-up of 10,000 tokens to about a second. Receipts
are ES256 with a ``cryptography`` P-256 key, built with ``authz.formats`` like the mint's.

Security:
    The keys live only in this process and the files it writes under ``bench/out/``, which
    git ignores. They sign nothing but benchmark traffic to loopback.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import nacl.signing
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authz.formats import TokenClaims, assemble_compact, receipt_signing_input, token_signing_input
from authz.jwk import PublishedKey, ec_p256_jwk, jwks_document, okp_ed25519_jwk, thumbprint

ISSUER = "https://mint.bench.invalid"
AUDIENCE = "orders-api"
KMS_ISSUER = "bench-kms"
RECEIPT_KID = "bench-kms-v1"
SCOPES = ("orders:read", "orders:write")
# The maximum lifetime the verifier accepts (authz.formats.MAX_TTL_SECONDS), so the tokens
# stay valid for a whole run.
TOKEN_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Credential:
    """One token and its receipt, as a client sends them."""

    token: str = field(repr=False)
    receipt: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        """Return the request headers that carry this credential (lower-case names)."""
        return {"authorization": f"Bearer {self.token}", "x-kms-sig": self.receipt}


@dataclass
class BenchIssuer:
    """A group key and a receipt key that issue benchmark credentials."""

    group_key: nacl.signing.SigningKey = field(
        default_factory=nacl.signing.SigningKey.generate, repr=False
    )
    receipt_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()), repr=False
    )

    def group_jwk(self) -> dict[str, str]:
        """Return the public JWK of the group key."""
        return okp_ed25519_jwk(self.group_key.verify_key.encode())

    def group_kid(self) -> str:
        """Return the group key's RFC 7638 thumbprint, the token header's ``kid``."""
        return thumbprint(self.group_jwk())

    def receipt_jwk(self) -> dict[str, str]:
        """Return the public JWK of the receipt key."""
        numbers = self.receipt_key.public_key().public_numbers()
        return ec_p256_jwk(numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big"))

    def jwks(self) -> dict[str, Any]:
        """Return the JWKS document, in the form the mint publishes."""
        return jwks_document(
            [PublishedKey(self.group_kid(), self.group_jwk())],
            [PublishedKey(RECEIPT_KID, self.receipt_jwk())],
        )

    def peer_data(self) -> dict[str, Any]:
        """Return the ``data.bench_keys`` document that bench/peer/policy.rego reads."""
        group = {**self.group_jwk(), "kid": self.group_kid(), "alg": "EdDSA"}
        receipt = {**self.receipt_jwk(), "kid": RECEIPT_KID, "alg": "ES256"}
        return {
            "bench_keys": {
                # OPA's io.jwt.verify_* builtins take a JWKS as a JSON string.
                "group_jwks": json.dumps({"keys": [group]}),
                "receipt_jwks": json.dumps({"keys": [receipt]}),
                "group_kid": self.group_kid(),
                "issuer": ISSUER,
                "audience": AUDIENCE,
            }
        }

    def credential(self, now: int) -> Credential:
        """Issue a token with a fresh jti and its receipt, valid from ``now``."""
        claims = TokenClaims(
            iss=ISSUER,
            sub="bench@example.com",
            aud=AUDIENCE,
            scopes=SCOPES,
            iat=now,
            ttl=TOKEN_TTL_SECONDS,
            jti=uuid.uuid4().hex,
        )
        signing_input = token_signing_input(claims, self.group_kid())
        token = assemble_compact(signing_input, self.group_key.sign(signing_input).signature)
        receipt_input = receipt_signing_input(token, RECEIPT_KID, KMS_ISSUER, now, claims.jti)
        der = self.receipt_key.sign(receipt_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        receipt = assemble_compact(receipt_input, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return Credential(token, receipt)

    def credentials(self, count: int, now: int) -> list[Credential]:
        """Issue ``count`` distinct credentials."""
        return [self.credential(now) for _ in range(count)]
