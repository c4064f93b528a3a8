"""FROST round two: binding factors, group commitment, challenge and signature shares.

Follows RFC 9591 sections 4.3 to 4.6 and 5.2. The coordinator builds a ``SigningPackage`` from
the commitments of the chosen signers and the message. Each signer checks it and returns a
``SignatureShare``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from actors.frost.ciphersuite import (
    IDENTITY_ELEMENT,
    decode_scalar,
    element_add,
    element_mul,
    encode_element,
    h1,
    h2,
    h4,
    h5,
    scalar_add,
    scalar_mul,
)
from actors.frost.errors import CommitmentMismatch, DuplicateParticipant
from actors.frost.keys import (
    KeyPackage,
    check_enough_signers,
    check_identifier,
    derive_interpolating_value,
    encode_identifier,
)
from actors.frost.round1 import SigningCommitments, SigningNonces


@dataclass(frozen=True)
class SigningPackage:
    """The commitments of the chosen signers and the message they sign.

    Attributes:
        commitments: one ``SigningCommitments`` per signer, sorted by identifier.
        message: the message to sign.

    Build it with ``make_signing_package``, which sorts and checks the commitments.
    """

    commitments: tuple[SigningCommitments, ...]
    message: bytes

    def __post_init__(self) -> None:
        identifiers = [c.identifier for c in self.commitments]
        if len(set(identifiers)) != len(identifiers):
            duplicates = sorted({i for i in identifiers if identifiers.count(i) > 1})
            raise DuplicateParticipant(
                f"signing package has more than one commitment for participants {duplicates}, "
                "expected one commitment per signer"
            )
        if identifiers != sorted(identifiers):
            raise ValueError(
                "signing package commitments are not sorted by identifier, so "
                "build the package with make_signing_package"
            )

    @property
    def participants(self) -> tuple[int, ...]:
        """The identifiers of the signers, in ascending order."""
        return tuple(c.identifier for c in self.commitments)

    def commitment_for(self, identifier: int) -> SigningCommitments | None:
        """Return the commitments of ``identifier``, or None when it is not a signer."""
        for commitment in self.commitments:
            if commitment.identifier == identifier:
                return commitment
        return None


def make_signing_package(
    commitments: Iterable[SigningCommitments], message: bytes
) -> SigningPackage:
    """Build a signing package, sorting the commitments by identifier.

    Every ``SigningCommitments`` has already checked its elements when it was built, so an
    identity, small-order or non-canonical commitment cannot reach this point.

    Raises:
        DuplicateParticipant: when two commitments name the same signer.
    """
    ordered = tuple(sorted(commitments, key=lambda c: c.identifier))
    return SigningPackage(ordered, bytes(message))


@dataclass(frozen=True)
class SignatureShare:
    """One signer's signature share z_i.

    Attributes:
        identifier: the signer that made it.
        value: z_i, a 32-byte scalar.
    """

    identifier: int
    value: bytes

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        decode_scalar(self.value)


def encode_group_commitment_list(commitments: Iterable[SigningCommitments]) -> bytes:
    """Serialize a commitment list (``encode_group_commitment_list``, RFC 9591 section 4.3)."""
    return b"".join(encode_identifier(c.identifier) + c.hiding + c.binding for c in commitments)


def binding_factor_inputs(
    group_public_key: bytes, signing_package: SigningPackage
) -> dict[int, bytes]:
    """Compute the H1 input of every signer's binding factor (RFC 9591 section 4.4).

    Each input is group_public_key || H4(msg) || H5(encoded commitment list) || identifier.
    """
    prefix = (
        group_public_key
        + h4(signing_package.message)
        + h5(encode_group_commitment_list(signing_package.commitments))
    )
    return {i: prefix + encode_identifier(i) for i in signing_package.participants}


def compute_binding_factors(
    group_public_key: bytes, signing_package: SigningPackage
) -> dict[int, bytes]:
    """Compute every signer's binding factor rho_i (``compute_binding_factors``, section 4.4)."""
    inputs = binding_factor_inputs(group_public_key, signing_package)
    return {i: h1(rho_input) for i, rho_input in inputs.items()}


def compute_group_commitment(
    signing_package: SigningPackage, binding_factors: dict[int, bytes]
) -> bytes:
    """Compute R = sum of D_i + [rho_i]E_i (``compute_group_commitment``, section 4.5).

    Raises:
        InvalidElement: when R is the identity, which RFC 9591 cannot serialize.
    """
    group_commitment = IDENTITY_ELEMENT
    for c in signing_package.commitments:
        binding_part = element_mul(c.binding, binding_factors[c.identifier])
        group_commitment = element_add(group_commitment, element_add(c.hiding, binding_part))
    return encode_element(group_commitment)


def compute_challenge(group_commitment: bytes, group_public_key: bytes, message: bytes) -> bytes:
    """Compute c = H2(R || PK || msg) (``compute_challenge``, RFC 9591 section 4.6)."""
    return h2(group_commitment + group_public_key + message)


def sign(
    signing_package: SigningPackage, nonces: SigningNonces, key_package: KeyPackage
) -> SignatureShare:
    """Compute this signer's signature share (``sign``, RFC 9591 section 5.2).

    z_i = d_i + e_i * rho_i + lambda_i * s_i * c.

    Raises:
        TooFewSigners: when the package has fewer than ``min_signers`` commitments.
        CommitmentMismatch: when the package lacks this signer's commitment, or carries one
            that differs from the commitments of ``nonces``.

    Security:
        Consume ``nonces`` before the share leaves the signer and never pass them again.
        Every share made from one nonce pair is a linear equation in the signing share, and
        three of them reveal it (see ``actors.frost.round1``). The
        commitment check stops a coordinator from getting a share for commitments other than
        the ones this signer published.
    """
    identifier = key_package.identifier
    check_enough_signers(len(signing_package.commitments), key_package.min_signers)
    own = signing_package.commitment_for(identifier)
    if own is None:
        raise CommitmentMismatch(
            f"signing package has no commitment for signer {identifier}, expected the "
            "commitment this signer published in round one"
        )
    if nonces.identifier != identifier or own != nonces.commitments:
        raise CommitmentMismatch(
            f"signing package commitment for signer {identifier} differs from the commitment "
            "of the nonces given. Use the nonces that made this commitment, or a new package"
        )

    # Binding factors, group commitment and challenge (RFC 9591 sections 4.4 to 4.6).
    group_public_key = key_package.group_public_key
    binding_factors = compute_binding_factors(group_public_key, signing_package)
    group_commitment = compute_group_commitment(signing_package, binding_factors)
    challenge = compute_challenge(group_commitment, group_public_key, signing_package.message)

    # z_i = d_i + (e_i * rho_i) + (lambda_i * s_i * c)
    lambda_i = derive_interpolating_value(signing_package.participants, identifier)
    binding_term = scalar_mul(nonces.binding, binding_factors[identifier])
    key_term = scalar_mul(scalar_mul(lambda_i, key_package.signing_share), challenge)
    value = scalar_add(scalar_add(nonces.hiding, binding_term), key_term)
    return SignatureShare(identifier, value)
