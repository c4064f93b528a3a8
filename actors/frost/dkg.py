"""Dealerless key generation: a Pedersen DKG in which each participant proves knowledge of
its constant coefficient.

RFC 9591 defines no key generation beyond a trusted dealer (its Appendix C). This module
follows the three-part form of the Zcash Foundation ``frost-core`` crate (``keys::dkg``
``part1``, ``part2`` and ``part3``), so that its published DKG vectors reproduce byte for byte.

1. ``part1``: each participant i draws a random polynomial f_i of degree t - 1, broadcasts the
   commitment C_i = ([a_i0]B, ..., [a_i(t-1)]B) and a Schnorr proof of knowledge of a_i0.
2. ``part2``: each participant verifies every other participant's proof, then sends f_i(j)
   privately to each participant j.
3. ``part3``: each participant checks every share it received against the sender's commitment
   and sums them into its signing share s_j = sum over i of f_i(j). The group public key is
   the sum of every C_i0. The group secret, the sum of every a_i0, is never computed.

Security:
    The proofs of knowledge stop a rogue-key attack, in which the last participant picks its
    C_i0 as a function of the others' to control the group key. Round-2 packages are secret
    and must travel over an authenticated, encrypted channel to their recipient only, and this
    module does not encrypt them. A broadcast channel is assumed for round one: if participants
    see different round-1 packages, they end up with inconsistent keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from actors.frost.ciphersuite import (
    ELEMENT_SIZE,
    IDENTITY_ELEMENT,
    RandomSource,
    base_mul,
    decode_element,
    decode_scalar,
    element_add,
    element_mul,
    element_sub,
    hdkg,
    scalar_add,
    scalar_mul,
    scalar_random,
)
from actors.frost.errors import (
    InvalidParameters,
    InvalidProofOfKnowledge,
    InvalidSecretShare,
    ParticipantMismatch,
)
from actors.frost.keys import (
    KeyPackage,
    PublicKeyPackage,
    check_identifier,
    check_threshold,
    commit_polynomial,
    encode_identifier,
    evaluate_commitment,
    evaluate_polynomial,
)


@dataclass(frozen=True)
class Round1Package:
    """The public round-1 broadcast of one participant.

    Attributes:
        identifier: the sender.
        commitment: [a_k]B for every coefficient a_k of the sender's polynomial, constant first.
        proof_of_knowledge: R || mu, a Schnorr proof of knowledge of a_0 (64 bytes).
    """

    identifier: int
    commitment: tuple[bytes, ...]
    proof_of_knowledge: bytes

    def __post_init__(self) -> None:
        check_identifier(self.identifier)
        object.__setattr__(self, "commitment", tuple(self.commitment))
        for element in self.commitment:
            decode_element(element)
        if len(self.proof_of_knowledge) != 2 * ELEMENT_SIZE:
            raise InvalidProofOfKnowledge(
                f"proof of knowledge from participant {self.identifier} is "
                f"{len(self.proof_of_knowledge)} bytes, expected 64 bytes (R || mu)",
                culprit=self.identifier,
            )
        decode_element(self.proof_of_knowledge[:ELEMENT_SIZE])
        decode_scalar(self.proof_of_knowledge[ELEMENT_SIZE:])


@dataclass(frozen=True, repr=False)
class Round1SecretPackage:
    """Secret state of one participant between ``part1`` and ``part2``.

    Attributes:
        identifier: the participant.
        coefficients: the secret polynomial f_i, constant coefficient first.
        commitment: the public commitment to ``coefficients``.
        min_signers: the threshold t.
        max_signers: the number of participants n.

    Security:
        ``coefficients`` determine every share this participant deals. ``repr`` redacts them.
        Destroy the package once ``part2`` has run.
    """

    identifier: int
    coefficients: tuple[bytes, ...] = field(repr=False)
    commitment: tuple[bytes, ...]
    min_signers: int
    max_signers: int

    def __repr__(self) -> str:
        return (
            f"Round1SecretPackage(identifier={self.identifier}, coefficients=<redacted>, "
            f"min_signers={self.min_signers}, max_signers={self.max_signers})"
        )


@dataclass(frozen=True, repr=False)
class Round2Package:
    """The secret share f_sender(recipient) that one participant sends to another.

    Attributes:
        sender: the participant whose polynomial was evaluated.
        recipient: the participant the share is for.
        signing_share: f_sender(recipient), a 32-byte scalar.

    Security:
        Secret: send it encrypted to ``recipient`` only. ``repr`` redacts the share.
    """

    sender: int
    recipient: int
    signing_share: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_identifier(self.sender)
        check_identifier(self.recipient)
        decode_scalar(self.signing_share)

    def __repr__(self) -> str:
        return (
            f"Round2Package(sender={self.sender}, recipient={self.recipient}, "
            "signing_share=<redacted>)"
        )


@dataclass(frozen=True, repr=False)
class Round2SecretPackage:
    """Secret state of one participant between ``part2`` and ``part3``.

    Attributes:
        identifier: the participant.
        commitment: its own polynomial commitment.
        secret_share: f_i(i), the share it dealt to itself.
        min_signers: the threshold t.
        max_signers: the number of participants n.

    Security:
        ``secret_share`` is secret. ``repr`` redacts it. Destroy the package after ``part3``.
    """

    identifier: int
    commitment: tuple[bytes, ...]
    secret_share: bytes = field(repr=False)
    min_signers: int
    max_signers: int

    def __repr__(self) -> str:
        return (
            f"Round2SecretPackage(identifier={self.identifier}, secret_share=<redacted>, "
            f"min_signers={self.min_signers}, max_signers={self.max_signers})"
        )


def round1_secret_package(
    identifier: int, coefficients: Sequence[bytes], max_signers: int, min_signers: int
) -> Round1SecretPackage:
    """Build the round-1 secret package for a polynomial with the given coefficients.

    ``part1`` calls this with random coefficients, and tests call it with the vectors' ones.

    Raises:
        InvalidParameters: when the thresholds are out of range or the polynomial does not
            have exactly ``min_signers`` coefficients.
    """
    check_identifier(identifier)
    check_threshold(min_signers, max_signers)
    if len(coefficients) != min_signers:
        raise InvalidParameters(
            f"polynomial has {len(coefficients)} coefficients, expected min_signers = "
            f"{min_signers}, one more than its degree"
        )
    coefficients = tuple(decode_scalar(c) for c in coefficients)
    return Round1SecretPackage(
        identifier, coefficients, commit_polynomial(coefficients), min_signers, max_signers
    )


def _proof_challenge(identifier: int, constant_commitment: bytes, nonce_commitment: bytes) -> bytes:
    return hdkg(encode_identifier(identifier) + constant_commitment + nonce_commitment)


def compute_proof_of_knowledge(
    secret: Round1SecretPackage, rng: RandomSource = os.urandom
) -> bytes:
    """Prove knowledge of a_0 with a Schnorr signature bound to the identifier.

    With a random k: R = [k]B, c = HDKG(identifier || C_0 || R), mu = k + a_0 * c.

    Returns:
        R || mu (64 bytes).
    """
    k = scalar_random(rng)
    nonce_commitment = base_mul(k)
    challenge = _proof_challenge(secret.identifier, secret.commitment[0], nonce_commitment)
    mu = scalar_add(k, scalar_mul(secret.coefficients[0], challenge))
    return nonce_commitment + mu


def verify_proof_of_knowledge(package: Round1Package) -> None:
    """Verify a round-1 proof of knowledge: R must equal [mu]B - [c]C_0.

    Raises:
        InvalidProofOfKnowledge: when it does not, and ``culprit`` names the sender.
    """
    nonce_commitment = package.proof_of_knowledge[:ELEMENT_SIZE]
    mu = package.proof_of_knowledge[ELEMENT_SIZE:]
    constant_commitment = package.commitment[0]
    challenge = _proof_challenge(package.identifier, constant_commitment, nonce_commitment)
    expected = element_sub(base_mul(mu), element_mul(constant_commitment, challenge))
    if expected != nonce_commitment:
        raise InvalidProofOfKnowledge(
            f"proof of knowledge from participant {package.identifier} does not verify. "
            "exclude this participant and restart key generation",
            culprit=package.identifier,
        )


def part1(
    identifier: int, max_signers: int, min_signers: int, rng: RandomSource = os.urandom
) -> tuple[Round1SecretPackage, Round1Package]:
    """Run DKG round one for one participant (frost-core ``dkg::part1``).

    Draws min_signers random coefficients, then the proof nonce, each as 64 random bytes
    reduced modulo L.

    Returns:
        The secret package to keep and the public package to broadcast to all participants.

    Raises:
        InvalidIdentifier: when the identifier is out of range.
        InvalidParameters: unless 2 <= min_signers <= max_signers.
    """
    check_threshold(min_signers, max_signers)
    coefficients = [scalar_random(rng) for _ in range(min_signers)]
    secret = round1_secret_package(identifier, coefficients, max_signers, min_signers)
    proof = compute_proof_of_knowledge(secret, rng)
    return secret, Round1Package(identifier, secret.commitment, proof)


def _check_round1_packages(
    identifier: int,
    min_signers: int,
    max_signers: int,
    round1_packages: Mapping[int, Round1Package],
) -> None:
    if len(round1_packages) != max_signers - 1:
        raise ParticipantMismatch(
            f"received {len(round1_packages)} round-1 packages, expected max_signers - 1 = "
            f"{max_signers - 1}, one from every other participant"
        )
    if identifier in round1_packages:
        raise ParticipantMismatch(
            f"round-1 packages include participant {identifier}'s own package, but "
            "expected only the other participants' packages"
        )
    for sender, package in round1_packages.items():
        if package.identifier != sender:
            raise ParticipantMismatch(
                f"round-1 package filed under participant {sender} was sent by participant "
                f"{package.identifier}, expected the mapping key to be the sender"
            )
        if len(package.commitment) != min_signers:
            raise InvalidProofOfKnowledge(
                f"round-1 package from participant {sender} commits to "
                f"{len(package.commitment)} coefficients, expected min_signers = {min_signers}",
                culprit=sender,
            )


def part2(
    secret: Round1SecretPackage, round1_packages: Mapping[int, Round1Package]
) -> tuple[Round2SecretPackage, dict[int, Round2Package]]:
    """Run DKG round two for one participant (frost-core ``dkg::part2``).

    Args:
        secret: this participant's round-1 secret package.
        round1_packages: every OTHER participant's round-1 package, by sender.

    Returns:
        The secret package to keep, and one round-2 package per other participant, by
        recipient, each to send privately to its recipient.

    Raises:
        ParticipantMismatch: when the packages are not exactly one per other participant.
        InvalidProofOfKnowledge: when a package's proof fails or its commitment has the wrong
            length, and ``culprit`` names the sender.
    """
    _check_round1_packages(
        secret.identifier, secret.min_signers, secret.max_signers, round1_packages
    )
    for package in round1_packages.values():
        verify_proof_of_knowledge(package)

    round2_packages = {
        recipient: Round2Package(
            secret.identifier, recipient, evaluate_polynomial(secret.coefficients, recipient)
        )
        for recipient in sorted(round1_packages)
    }
    own_share = evaluate_polynomial(secret.coefficients, secret.identifier)
    round2_secret = Round2SecretPackage(
        secret.identifier, secret.commitment, own_share, secret.min_signers, secret.max_signers
    )
    return round2_secret, round2_packages


def _sum_commitments(commitments: Sequence[Sequence[bytes]]) -> tuple[bytes, ...]:
    length = len(commitments[0])
    summed = [IDENTITY_ELEMENT] * length
    for commitment in commitments:
        summed = [element_add(a, b) for a, b in zip(summed, commitment, strict=True)]
    return tuple(summed)


def part3(
    secret: Round2SecretPackage,
    round1_packages: Mapping[int, Round1Package],
    round2_packages: Mapping[int, Round2Package],
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Finish DKG for one participant (frost-core ``dkg::part3``).

    Args:
        secret: this participant's round-2 secret package.
        round1_packages: every other participant's round-1 package, by sender, the same
            mapping that was passed to ``part2``.
        round2_packages: the round-2 package each other participant sent to this one, by sender.

    Returns:
        This participant's key package and the public key package, which every participant
        computes identically.

    Raises:
        ParticipantMismatch: when the package sets do not match each other or this participant.
        InvalidSecretShare: when a received share does not match its sender's commitment,
            and ``culprit`` names the sender.
    """
    _check_round1_packages(
        secret.identifier, secret.min_signers, secret.max_signers, round1_packages
    )
    if sorted(round2_packages) != sorted(round1_packages):
        raise ParticipantMismatch(
            f"round-2 packages are from participants {sorted(round2_packages)}, round-1 "
            f"packages from {sorted(round1_packages)}, expected the same participants"
        )

    # Check every received share against its sender's commitment, then sum them.
    signing_share = secret.secret_share
    for sender in sorted(round2_packages):
        package = round2_packages[sender]
        if package.sender != sender or package.recipient != secret.identifier:
            raise ParticipantMismatch(
                f"round-2 package filed under participant {sender} goes from {package.sender} "
                f"to {package.recipient}, expected from {sender} to {secret.identifier}"
            )
        commitment = round1_packages[sender].commitment
        if base_mul(package.signing_share) != evaluate_commitment(commitment, secret.identifier):
            raise InvalidSecretShare(
                f"round-2 share from participant {sender} does not match its round-1 "
                "commitment. Exclude this participant and restart key generation",
                culprit=sender,
            )
        signing_share = scalar_add(signing_share, package.signing_share)

    # The group commitment is the coefficient-wise sum, and its constant term is the group key.
    commitments = {sender: p.commitment for sender, p in round1_packages.items()}
    commitments[secret.identifier] = secret.commitment
    group_commitment = _sum_commitments([commitments[i] for i in sorted(commitments)])
    verifying_shares = {i: evaluate_commitment(group_commitment, i) for i in sorted(commitments)}
    public_key_package = PublicKeyPackage(verifying_shares, group_commitment[0], secret.min_signers)
    key_package = KeyPackage(
        secret.identifier,
        signing_share,
        verifying_shares[secret.identifier],
        group_commitment[0],
        secret.min_signers,
    )
    return key_package, public_key_package
