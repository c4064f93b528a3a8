"""The interface between the mint service and the threshold signer mesh.

No signing share ever reaches the mint. It hands the token's JWS signing input to a
``TokenSigner`` and receives an aggregate Ed25519 signature (RFC 8032 section 5.1.6) made by
a threshold of signers with FROST (RFC 9591). The Ray coordinator is adapted to this
protocol outside the mint package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SignResult:
    """An aggregate signature and the FROST identifiers of the signers that made it.

    Attributes:
        signature: the 64-byte Ed25519 signature R || S.
        signers: identifiers of the signers whose signature shares were aggregated.
    """

    signature: bytes
    signers: tuple[int, ...]


class SigningError(Exception):
    """The signer mesh could not produce a signature; adapters raise this for any failure."""


class TokenSigner(Protocol):
    """A source of Ed25519 signatures under the group key."""

    def group_public_key(self) -> bytes:
        """Return the 32-byte Ed25519 group key."""
        ...

    def sign(self, message: bytes) -> SignResult:
        """Sign ``message`` and return the aggregate signature with its signer set.

        Raises:
            SigningError: when no signature could be produced.
        """
        ...
