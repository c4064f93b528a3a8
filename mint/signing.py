"""The interface between the mint service and the threshold signer mesh.

The mint never holds a signing share. It hands the token claims, the group key id and the
WebAuthn assertion that approved the request to a ``TokenSigner``. The signer mesh completes
the claims with its signer set and attestation evidence digest (the ``ztm`` claim), builds
the JWS signing input, and returns it with an aggregate Ed25519 signature (RFC 8032 section
5.1.6) made by a threshold of signers with FROST (RFC 9591). The Ray coordinator is adapted
to this protocol in ``mint.ray_signer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from actors.assertion_check import AssertionEvidence
from authz.formats import TokenClaims


@dataclass(frozen=True)
class SignedToken:
    """A token signing input and its aggregate signature.

    Attributes:
        signing_input: ``BASE64URL(header) '.' BASE64URL(claims)`` with the completed claims.
        signature: the 64-byte Ed25519 signature R || S.
        signers: FROST identifiers of the signers whose signature shares were aggregated,
            the same list as the claims' ``ztm.signers``.
        evidence: the claims' ``ztm.evidence`` digest of the verified attestation reports,
            or None when attestation reports are off.
    """

    signing_input: bytes
    signature: bytes
    signers: tuple[int, ...]
    evidence: str | None


class SigningError(Exception):
    """The signer mesh could not produce a signature; adapters raise this for any failure."""


class TokenSigner(Protocol):
    """A source of Ed25519 signatures under the group key."""

    def group_public_key(self) -> bytes:
        """Return the 32-byte Ed25519 group key."""
        ...

    def sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        """Complete ``claims`` with the signer set and evidence, and sign them.

        Raises:
            SigningError: when no signature could be produced.
        """
        ...
