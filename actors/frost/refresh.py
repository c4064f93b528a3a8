"""Proactive refresh of signing shares: new shares, the same group key.

Every participant deals a random polynomial g_i of degree t - 1 with g_i(0) = 0, in the same
three parts as the DKG (frost-core ``keys::refresh``: ``refresh_dkg_part1``, ``part2`` and
``refresh_dkg_shares``). Participant j's new share is s_j + sum over i of g_i(j). Because every
g_i(0) is zero, the shares still interpolate to the same group secret, so the group key and
every token signed before stay valid, while shares stolen before the refresh no longer combine
with shares taken after it. RFC 9591 defines no refresh.

Security:
    The constant coefficient is zero by construction and its commitment, the identity, is
    never sent: each round-1 package commits only to the t - 1 higher coefficients. A proof of
    knowledge is not needed because no participant chooses a constant term. As in the DKG,
    round-2 shares are secret and need an authenticated, encrypted channel, and round one needs
    a broadcast channel.

Limitations:
    Every participant of the public key package must take part, because refresh cannot yet remove a
    participant or change the threshold.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from actors.frost.ciphersuite import (
    IDENTITY_ELEMENT,
    ZERO_SCALAR,
    RandomSource,
    base_mul,
    decode_element,
    element_add,
    scalar_add,
    scalar_random,
)
from actors.frost.dkg import Round2Package
from actors.frost.errors import InvalidParameters, InvalidSecretShare, ParticipantMismatch
from actors.frost.keys import (
    KeyPackage,
    PublicKeyPackage,
    check_identifier,
    check_threshold,
    commit_polynomial,
    evaluate_commitment,
    evaluate_polynomial,
)


@dataclass(frozen=True)
class RefreshRound1Package:
    """The public round-1 broadcast of a refresh.

    Attributes:
        identifier: the sender.
        commitment: [a_k]B for the coefficients a_1 .. a_(t-1). a_0 is zero and not sent.
    """

    identifier: int
    commitment: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        object.__setattr__(self, "commitment", tuple(self.commitment))
        for element in self.commitment:
            decode_element(element)

    @property
    def full_commitment(self) -> tuple[bytes, ...]:
        """The commitment with the identity prepended for the zero constant coefficient."""
        return (IDENTITY_ELEMENT, *self.commitment)


@dataclass(frozen=True, repr=False)
class RefreshSecretPackage:
    """Secret state of one participant during a refresh.

    Attributes:
        identifier: the participant.
        coefficients: the refresh polynomial, constant (zero) first.
        commitment: the public round-1 commitment to the non-constant coefficients.
        min_signers: the threshold t.
        max_signers: the number of participants n.

    Security:
        ``coefficients`` are secret. ``repr`` redacts them. Destroy the package afterwards.
    """

    identifier: int
    coefficients: tuple[bytes, ...] = field(repr=False)
    commitment: tuple[bytes, ...]
    min_signers: int
    max_signers: int

    def __repr__(self) -> str:
        return (
            f"RefreshSecretPackage(identifier={self.identifier}, coefficients=<redacted>, "
            f"min_signers={self.min_signers}, max_signers={self.max_signers})"
        )


def refresh_dkg_part1(
    identifier: int, max_signers: int, min_signers: int, rng: RandomSource = os.urandom
) -> tuple[RefreshSecretPackage, RefreshRound1Package]:
    """Draw this participant's zero-constant refresh polynomial and commit to it.

    Returns:
        The secret package to keep and the public package to broadcast.

    Raises:
        InvalidIdentifier: when the identifier is out of range.
        InvalidParameters: unless 2 <= min_signers <= max_signers.
    """
    check_identifier(identifier)
    check_threshold(min_signers, max_signers)
    coefficients = (ZERO_SCALAR, *(scalar_random(rng) for _ in range(min_signers - 1)))
    commitment = commit_polynomial(coefficients[1:])
    secret = RefreshSecretPackage(identifier, coefficients, commitment, min_signers, max_signers)
    return secret, RefreshRound1Package(identifier, commitment)


def _check_round1_packages(
    secret: RefreshSecretPackage, round1_packages: Mapping[int, RefreshRound1Package]
) -> None:
    if len(round1_packages) != secret.max_signers - 1 or secret.identifier in round1_packages:
        raise ParticipantMismatch(
            f"refresh round-1 packages are from participants {sorted(round1_packages)}, "
            f"expected one from each of the {secret.max_signers - 1} other participants"
        )
    for sender, package in round1_packages.items():
        if package.identifier != sender:
            raise ParticipantMismatch(
                f"refresh round-1 package filed under participant {sender} was sent by "
                f"participant {package.identifier}, expected the mapping key to be the sender"
            )
        if len(package.commitment) != secret.min_signers - 1:
            raise InvalidSecretShare(
                f"refresh round-1 package from participant {sender} commits to "
                f"{len(package.commitment)} coefficients, expected min_signers - 1 = "
                f"{secret.min_signers - 1}",
                culprit=sender,
            )


def refresh_dkg_part2(
    secret: RefreshSecretPackage, round1_packages: Mapping[int, RefreshRound1Package]
) -> dict[int, Round2Package]:
    """Evaluate this participant's refresh polynomial for every other participant.

    Returns:
        One ``Round2Package`` per other participant, by recipient. Send each one privately.

    Raises:
        ParticipantMismatch: when the round-1 packages are not one per other participant.
        InvalidSecretShare: when a package commits to the wrong number of coefficients.
    """
    _check_round1_packages(secret, round1_packages)
    return {
        recipient: Round2Package(
            secret.identifier, recipient, evaluate_polynomial(secret.coefficients, recipient)
        )
        for recipient in sorted(round1_packages)
    }


def refresh_dkg_shares(
    secret: RefreshSecretPackage,
    round1_packages: Mapping[int, RefreshRound1Package],
    round2_packages: Mapping[int, Round2Package],
    key_package: KeyPackage,
    public_key_package: PublicKeyPackage,
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Check the received refresh shares and add them to this participant's signing share.

    Returns:
        The refreshed key package and public key package. The group public key is unchanged.

    Raises:
        ParticipantMismatch: when the packages do not come from every other participant of
            ``public_key_package``, or ``key_package`` belongs to another participant.
        InvalidSecretShare: when a received share does not match its sender's commitment,
            and ``culprit`` names the sender.
    """
    _check_round1_packages(secret, round1_packages)
    participants = sorted([*round1_packages, secret.identifier])
    if participants != sorted(public_key_package.verifying_shares):
        raise ParticipantMismatch(
            f"refresh involves participants {participants}, but the public key package has "
            f"{sorted(public_key_package.verifying_shares)}, but every participant must take part"
        )
    if key_package.identifier != secret.identifier:
        raise ParticipantMismatch(
            f"key package of participant {key_package.identifier} passed to the refresh of "
            f"participant {secret.identifier}, expected this participant's own key package"
        )
    if secret.min_signers != public_key_package.min_signers:
        raise InvalidParameters(
            f"refresh threshold {secret.min_signers} differs from the key's threshold "
            f"{public_key_package.min_signers}, but refresh cannot change the threshold"
        )
    if sorted(round2_packages) != sorted(round1_packages):
        raise ParticipantMismatch(
            f"refresh round-2 packages are from {sorted(round2_packages)}, round-1 packages "
            f"from {sorted(round1_packages)}, expected the same participants"
        )

    # Check every received share against its sender's commitment, then add them.
    signing_share = scalar_add(
        key_package.signing_share, evaluate_polynomial(secret.coefficients, secret.identifier)
    )
    for sender in sorted(round2_packages):
        package = round2_packages[sender]
        if package.sender != sender or package.recipient != secret.identifier:
            raise ParticipantMismatch(
                f"refresh round-2 package filed under participant {sender} goes from "
                f"{package.sender} to {package.recipient}, expected from {sender} to "
                f"{secret.identifier}"
            )
        commitment = round1_packages[sender].full_commitment
        if base_mul(package.signing_share) != evaluate_commitment(commitment, secret.identifier):
            raise InvalidSecretShare(
                f"refresh share from participant {sender} does not match its round-1 "
                "commitment. Exclude this participant and restart the refresh",
                culprit=sender,
            )
        signing_share = scalar_add(signing_share, package.signing_share)

    # Each verifying share moves by [sum of g_i(j)]B, computed from the commitments.
    commitments = [p.full_commitment for p in round1_packages.values()]
    commitments.append((IDENTITY_ELEMENT, *secret.commitment))
    verifying_shares = {}
    for j in participants:
        shift = IDENTITY_ELEMENT
        for commitment in commitments:
            shift = element_add(shift, evaluate_commitment(commitment, j))
        verifying_shares[j] = element_add(public_key_package.verifying_share(j), shift)

    new_public_key_package = PublicKeyPackage(
        verifying_shares, public_key_package.group_public_key, public_key_package.min_signers
    )
    new_key_package = KeyPackage(
        secret.identifier,
        signing_share,
        verifying_shares[secret.identifier],
        public_key_package.group_public_key,
        public_key_package.min_signers,
    )
    return new_key_package, new_public_key_package
