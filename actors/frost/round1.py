"""FROST round one: nonce generation and commitment (RFC 9591 sections 4.1 and 5.1).

Security:
    A ``SigningNonces`` must be used for exactly one signature share and then destroyed. The
    share is z = d + e * rho + lambda * s * c, where d and e are the hiding and binding nonces,
    s is the signing share, and rho, lambda and c are public. Every share made with the same
    nonce pair is one more linear equation in the three unknowns d, e and s. Three shares over
    different signing packages reveal s to anyone who obtains them, and fewer shares already
    leak linear relations between d, e and s. The caller owns single use: record that a nonce
    was consumed before releasing the share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from actors.frost.ciphersuite import (
    RandomSource,
    base_mul,
    decode_element,
    decode_scalar,
    h3,
    read_random,
)
from actors.frost.keys import KeyPackage, check_identifier

NONCE_RANDOMNESS_SIZE = 32


@dataclass(frozen=True)
class SigningCommitments:
    """The public commitments (D, E) = ([d]B, [e]B) of one signer's nonces.

    Attributes:
        identifier: the signer that made them.
        hiding: the hiding nonce commitment D.
        binding: the binding nonce commitment E.
    """

    identifier: int
    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        decode_element(self.hiding)
        decode_element(self.binding)


@dataclass(frozen=True, repr=False)
class SigningNonces:
    """One signer's secret nonce pair (d, e) for a single signing operation.

    Attributes:
        identifier: the signer that owns the nonces.
        hiding: the hiding nonce d.
        binding: the binding nonce e.

    Security:
        Secret and single use, as the module docstring explains. ``repr`` redacts both nonces.
    """

    identifier: int
    hiding: bytes = field(repr=False)
    binding: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        decode_scalar(self.hiding)
        decode_scalar(self.binding)

    def __repr__(self) -> str:
        return f"SigningNonces(identifier={self.identifier}, hiding=<redacted>, binding=<redacted>)"

    @property
    def commitments(self) -> SigningCommitments:
        """The public commitments to these nonces."""
        return SigningCommitments(self.identifier, base_mul(self.hiding), base_mul(self.binding))


def nonce_generate(signing_share: bytes, rng: RandomSource = os.urandom) -> bytes:
    """Generate one nonce as ``nonce_generate`` of RFC 9591 section 4.1.

    The nonce is H3(random_bytes || SerializeScalar(signing_share)). Mixing in the signing
    share keeps the nonce unpredictable even if ``rng`` is weak, as long as it does not repeat.
    """
    random_bytes = read_random(rng, NONCE_RANDOMNESS_SIZE)
    return h3(random_bytes + decode_scalar(signing_share))


def commit(
    key_package: KeyPackage, rng: RandomSource = os.urandom
) -> tuple[SigningNonces, SigningCommitments]:
    """Run round one for one signer (``commit`` of RFC 9591 section 5.1).

    Draws the hiding nonce first and the binding nonce second, 32 random bytes each, which is
    the order in which the RFC 9591 test vectors list their randomness.

    Returns:
        The secret nonces, to keep until round two, and their public commitments, to send to
        the coordinator.
    """
    hiding = nonce_generate(key_package.signing_share, rng)
    binding = nonce_generate(key_package.signing_share, rng)
    nonces = SigningNonces(key_package.identifier, hiding, binding)
    return nonces, nonces.commitments
