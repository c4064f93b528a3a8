"""Each FROST error class: raised for its condition, with a message that states what to fix."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from actors.frost import dkg
from actors.frost.aggregate import aggregate
from actors.frost.ciphersuite import (
    GROUP_ORDER,
    IDENTITY_ELEMENT,
    base_mul,
    scalar_add,
    scalar_from_int,
)
from actors.frost.errors import (
    CommitmentMismatch,
    DuplicateParticipant,
    FrostError,
    InvalidElement,
    InvalidIdentifier,
    InvalidParameters,
    InvalidProofOfKnowledge,
    InvalidRepairedShare,
    InvalidScalar,
    InvalidSecretShare,
    InvalidSignature,
    InvalidSignatureShare,
    ParticipantMismatch,
    TooFewSigners,
)
from actors.frost.keys import (
    KeyPackage,
    PublicKeyPackage,
    decode_identifier,
    encode_identifier,
    shares_from_polynomial,
)
from actors.frost.round1 import SigningCommitments, commit
from actors.frost.round2 import SignatureShare, make_signing_package, sign

from .conftest import seeded_random

DkgResult = tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]

ERROR_CLASSES = [
    InvalidIdentifier,
    InvalidScalar,
    InvalidElement,
    DuplicateParticipant,
    TooFewSigners,
    CommitmentMismatch,
    InvalidSignatureShare,
    InvalidProofOfKnowledge,
    InvalidSecretShare,
    InvalidSignature,
    InvalidParameters,
    ParticipantMismatch,
    InvalidRepairedShare,
]


@pytest.mark.parametrize("error_class", ERROR_CLASSES)
def test_error_class_is_frost_error(error_class: type[Exception]) -> None:
    assert issubclass(error_class, FrostError)


@pytest.mark.parametrize("identifier", [0, -1, GROUP_ORDER])
def test_encode_identifier_rejects_out_of_range(identifier: int) -> None:
    with pytest.raises(InvalidIdentifier, match=r"out of range, expected an integer in \[1, L\)"):
        encode_identifier(identifier)


def test_decode_identifier_rejects_zero() -> None:
    with pytest.raises(InvalidIdentifier, match="Zero is never a valid identifier"):
        decode_identifier(bytes(32))


def test_decode_identifier_rejects_non_canonical() -> None:
    with pytest.raises(InvalidIdentifier, match="not canonical"):
        decode_identifier(GROUP_ORDER.to_bytes(32, "little"))


def test_decode_identifier_rejects_wrong_length() -> None:
    with pytest.raises(InvalidIdentifier, match="2 bytes, expected 32 bytes"):
        decode_identifier(b"\x01\x00")


def test_encode_identifier_rejects_non_integer() -> None:
    with pytest.raises(InvalidIdentifier, match="is not an integer"):
        encode_identifier(True)


def test_shares_from_polynomial_rejects_non_canonical_coefficient() -> None:
    with pytest.raises(InvalidScalar, match="not canonical"):
        shares_from_polynomial([b"\xff" * 32], [1, 2])


def test_shares_from_polynomial_rejects_duplicate_identifier() -> None:
    with pytest.raises(DuplicateParticipant, match="participant 2 appears more than once"):
        shares_from_polynomial([scalar_from_int(5)], [1, 2, 2])


def test_signing_commitments_rejects_identity() -> None:
    with pytest.raises(InvalidElement, match="non-identity point"):
        SigningCommitments(1, IDENTITY_ELEMENT, IDENTITY_ELEMENT)


def test_make_signing_package_rejects_duplicate_signer(dkg_2_of_3: DkgResult) -> None:
    key_packages, _, _ = dkg_2_of_3
    rng = seeded_random(1)
    _, first = commit(key_packages[1], rng)
    _, again = commit(key_packages[1], rng)
    with pytest.raises(DuplicateParticipant, match=r"participants \[1\]"):
        make_signing_package([first, again], b"message")


def test_sign_rejects_package_without_own_commitment(dkg_2_of_3: DkgResult) -> None:
    key_packages, _, _ = dkg_2_of_3
    rng = seeded_random(2)
    nonces_1, _ = commit(key_packages[1], rng)
    commitments = [commit(key_packages[i], rng)[1] for i in (2, 3)]
    package = make_signing_package(commitments, b"message")
    with pytest.raises(CommitmentMismatch, match="no commitment for signer 1"):
        sign(package, nonces_1, key_packages[1])


def test_sign_rejects_altered_own_commitment(dkg_2_of_3: DkgResult) -> None:
    key_packages, _, _ = dkg_2_of_3
    rng = seeded_random(3)
    nonces_1, commitments_1 = commit(key_packages[1], rng)
    _, commitments_2 = commit(key_packages[2], rng)
    altered = SigningCommitments(1, commitments_1.binding, commitments_1.hiding)
    package = make_signing_package([altered, commitments_2], b"message")
    with pytest.raises(CommitmentMismatch, match="differs from the commitment of the nonces"):
        sign(package, nonces_1, key_packages[1])


def test_sign_rejects_too_few_signers(dkg_3_of_5: DkgResult) -> None:
    key_packages, _, _ = dkg_3_of_5
    rng = seeded_random(4)
    round1 = {i: commit(key_packages[i], rng) for i in (1, 2)}
    package = make_signing_package([c for _, c in round1.values()], b"message")
    with pytest.raises(TooFewSigners, match="2 signers take part, expected at least"):
        sign(package, round1[1][0], key_packages[1])


def _signed(key_packages: dict[int, KeyPackage], signers: tuple[int, ...], seed: int) -> Any:
    rng = seeded_random(seed)
    round1 = {i: commit(key_packages[i], rng) for i in signers}
    package = make_signing_package([c for _, c in round1.values()], b"message")
    shares = {i: sign(package, round1[i][0], key_packages[i]) for i in signers}
    return package, shares


def test_aggregate_rejects_missing_share(dkg_2_of_3: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_2_of_3
    package, shares = _signed(key_packages, (1, 2), 5)
    del shares[2]
    with pytest.raises(ParticipantMismatch, match="expected one share per signer"):
        aggregate(package, shares, public_key_package)


def test_aggregate_rejects_share_filed_under_other_signer(dkg_2_of_3: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_2_of_3
    package, shares = _signed(key_packages, (1, 2), 6)
    shares[1], shares[2] = shares[2], shares[1]
    with pytest.raises(ParticipantMismatch, match="filed under signer 1 names signer 2"):
        aggregate(package, shares, public_key_package)


def test_aggregate_rejects_invalid_share_with_culprit(dkg_2_of_3: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_2_of_3
    package, shares = _signed(key_packages, (1, 3), 7)
    shares[3] = SignatureShare(3, scalar_add(shares[3].value, scalar_from_int(1)))
    with pytest.raises(InvalidSignatureShare, match="from signer 3 does not verify") as raised:
        aggregate(package, shares, public_key_package)
    assert raised.value.culprit == 3


def test_aggregate_rejects_inconsistent_public_key_package() -> None:
    # Shares of one polynomial, but a group key that is not its constant term: every share
    # verifies against its verifying share, yet the sum cannot verify under the group key.
    shares = shares_from_polynomial([scalar_from_int(5), scalar_from_int(7)], [1, 2, 3])
    wrong_group_key = base_mul(scalar_from_int(6))
    key_packages = {
        i: KeyPackage(i, share, base_mul(share), wrong_group_key, 2) for i, share in shares.items()
    }
    public_key_package = PublicKeyPackage(
        {i: kp.verifying_share for i, kp in key_packages.items()}, wrong_group_key, 2
    )
    package, signature_shares = _signed(key_packages, (1, 2), 8)
    with pytest.raises(InvalidSignature, match="aggregate signature does not verify"):
        aggregate(package, signature_shares, public_key_package)


def test_key_package_rejects_mismatched_verifying_share(dkg_2_of_3: DkgResult) -> None:
    key_packages, _, _ = dkg_2_of_3
    with pytest.raises(InvalidElement, match="is not \\[signing_share\\]B"):
        dataclasses.replace(key_packages[1], verifying_share=key_packages[2].verifying_share)


def test_key_package_rejects_threshold_below_two(dkg_2_of_3: DkgResult) -> None:
    key_packages, _, _ = dkg_2_of_3
    with pytest.raises(InvalidParameters, match="min_signers is 1, expected at least 2"):
        dataclasses.replace(key_packages[1], min_signers=1)


def test_part1_rejects_max_below_min() -> None:
    with pytest.raises(InvalidParameters, match="max_signers is 2, below min_signers 3"):
        dkg.part1(1, 2, 3, seeded_random(10))


def test_part1_rejects_zero_identifier() -> None:
    with pytest.raises(InvalidIdentifier, match="out of range"):
        dkg.part1(0, 3, 2, seeded_random(11))


def _round1(max_signers: int, min_signers: int, seed: int) -> dict[int, Any]:
    rng = seeded_random(seed)
    return {i: dkg.part1(i, max_signers, min_signers, rng) for i in range(1, max_signers + 1)}


def test_part2_rejects_bad_proof_of_knowledge_with_culprit() -> None:
    round1 = _round1(3, 2, 12)
    forged = dataclasses.replace(round1[3][1], proof_of_knowledge=round1[2][1].proof_of_knowledge)
    others = {2: round1[2][1], 3: forged}
    with pytest.raises(InvalidProofOfKnowledge, match="participant 3 does not verify") as raised:
        dkg.part2(round1[1][0], others)
    assert raised.value.culprit == 3


def test_part2_rejects_wrong_commitment_length_with_culprit() -> None:
    round1 = _round1(3, 2, 13)
    longer = _round1(3, 3, 14)[2][1]
    with pytest.raises(InvalidProofOfKnowledge, match="commits to 3 coefficients") as raised:
        dkg.part2(round1[1][0], {2: longer, 3: round1[3][1]})
    assert raised.value.culprit == 2


def test_part2_rejects_missing_package() -> None:
    round1 = _round1(3, 2, 15)
    with pytest.raises(ParticipantMismatch, match="received 1 round-1 packages, expected"):
        dkg.part2(round1[1][0], {2: round1[2][1]})


def test_part2_rejects_own_package() -> None:
    round1 = _round1(3, 2, 16)
    with pytest.raises(ParticipantMismatch, match="include participant 1's own package"):
        dkg.part2(round1[1][0], {1: round1[1][1], 2: round1[2][1]})


def test_part3_rejects_bad_share_with_culprit() -> None:
    round1 = _round1(3, 2, 17)
    broadcast = {i: p for i, (_, p) in round1.items()}
    round2 = {
        i: dkg.part2(round1[i][0], {j: p for j, p in broadcast.items() if j != i})
        for i in broadcast
    }
    received = {j: round2[j][1][1] for j in (2, 3)}
    bad = scalar_add(received[2].signing_share, scalar_from_int(1))
    received[2] = dkg.Round2Package(2, 1, bad)
    others = {j: broadcast[j] for j in (2, 3)}
    with pytest.raises(InvalidSecretShare, match="from participant 2 does not match") as raised:
        dkg.part3(round2[1][0], others, received)
    assert raised.value.culprit == 2


def test_part3_rejects_share_for_other_recipient() -> None:
    round1 = _round1(3, 2, 18)
    broadcast = {i: p for i, (_, p) in round1.items()}
    round2 = {
        i: dkg.part2(round1[i][0], {j: p for j, p in broadcast.items() if j != i})
        for i in broadcast
    }
    received = {2: round2[2][1][3], 3: round2[3][1][1]}
    others = {j: broadcast[j] for j in (2, 3)}
    with pytest.raises(ParticipantMismatch, match="goes from 2 to 3, expected from 2 to 1"):
        dkg.part3(round2[1][0], others, received)


def test_round1_package_rejects_short_proof() -> None:
    package = _round1(3, 2, 19)[1][1]
    with pytest.raises(InvalidProofOfKnowledge, match="expected 64 bytes"):
        dataclasses.replace(package, proof_of_knowledge=package.proof_of_knowledge[:63])


def test_round1_package_rejects_identity_commitment() -> None:
    package = _round1(3, 2, 20)[1][1]
    with pytest.raises(InvalidElement, match="non-identity point"):
        dataclasses.replace(package, commitment=(IDENTITY_ELEMENT, package.commitment[1]))
