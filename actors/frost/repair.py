"""Repair of a lost signing share by t helpers, without rebuilding the group secret.

Follows the repairable threshold scheme of Laing and Stinson, "A Survey and Refinement of
Repairable Threshold Schemes" (https://eprint.iacr.org/2017/1155), in the three-part form of the
ZF frost-core crate (``keys::repairable``, ``repair_share_part1`` to ``part3``). RFC 9591
defines no repair.

To repair participant r's share s_r = f(r) with helpers H (at least t of them, r not in H):

1. Each helper i splits lambda_i(r) * s_i into |H| random deltas that sum to it, where
   lambda_i(r) is i's Lagrange coefficient at x = r over H, and sends one delta to each helper.
2. Each helper j sums the deltas it received into sigma_j and sends sigma_j to r.
3. r sums the sigmas: the total is the sum over i of lambda_i(r) * s_i = f(r).

Security:
    Deltas and sigmas are secret and must travel over authenticated, encrypted channels. A
    single delta or sigma is uniformly random and reveals nothing about a helper's share, but
    a participant that obtains every delta of one helper learns lambda_i(r) * s_i and so s_i.
    Part 3 checks the repaired share against the published verifying share. A wrong value
    from any helper fails that check without naming the helper.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from actors.frost.ciphersuite import (
    ZERO_SCALAR,
    RandomSource,
    base_mul,
    decode_scalar,
    scalar_add,
    scalar_mul,
    scalar_random,
    scalar_sub,
)
from actors.frost.errors import InvalidParameters, InvalidRepairedShare, ParticipantMismatch
from actors.frost.keys import (
    KeyPackage,
    PublicKeyPackage,
    check_enough_signers,
    check_identifier,
    check_participants,
    derive_interpolating_value,
)


def repair_share_part1(
    helpers: Sequence[int],
    key_package: KeyPackage,
    participant: int,
    rng: RandomSource = os.urandom,
) -> dict[int, bytes]:
    """Split this helper's weighted share into one delta per helper (part 1).

    Args:
        helpers: the identifiers of all helpers, including this one.
        key_package: this helper's key package.
        participant: the identifier whose share is being repaired.
        rng: source of the random deltas.

    Returns:
        The delta for each helper, by identifier. Send each one privately to its helper.

    Raises:
        TooFewSigners: when there are fewer than ``min_signers`` helpers.
        DuplicateParticipant: when ``helpers`` repeats an identifier.
        ParticipantMismatch: when this helper is not in ``helpers`` or ``participant`` is.
    """
    ordered = check_participants(helpers)
    check_identifier(participant)
    check_enough_signers(len(ordered), key_package.min_signers)
    if key_package.identifier not in ordered:
        raise ParticipantMismatch(
            f"helper {key_package.identifier} is not in the helper list {list(ordered)}, "
            "expected every helper to be listed"
        )
    if participant in ordered:
        raise ParticipantMismatch(
            f"participant {participant} being repaired is in the helper list, expected "
            "helpers other than the participant whose share was lost"
        )

    weight = derive_interpolating_value(ordered, key_package.identifier, at=participant)
    weighted_share = scalar_mul(weight, key_package.signing_share)
    deltas = {helper: scalar_random(rng) for helper in ordered[:-1]}
    last = weighted_share
    for delta in deltas.values():
        last = scalar_sub(last, delta)
    deltas[ordered[-1]] = last
    return deltas


def repair_share_part2(deltas: Sequence[bytes]) -> bytes:
    """Sum the deltas this helper received into sigma (part 2).

    Returns:
        sigma, to send privately to the participant being repaired.

    Raises:
        InvalidParameters: when no delta was given.
        InvalidScalar: when a delta is not a canonical scalar.
    """
    if not deltas:
        raise InvalidParameters("no deltas to sum, expected one delta from every helper")
    sigma = ZERO_SCALAR
    for delta in deltas:
        sigma = scalar_add(sigma, decode_scalar(delta))
    return sigma


def repair_share_part3(
    sigmas: Mapping[int, bytes], identifier: int, public_key_package: PublicKeyPackage
) -> KeyPackage:
    """Sum the helpers' sigmas into the repaired key package of ``identifier`` (part 3).

    Args:
        sigmas: the sigma from each helper, by helper identifier.
        identifier: the participant being repaired.
        public_key_package: the group's public key package, which contains the verifying share
            that the repaired share must match.

    Raises:
        TooFewSigners: when fewer than ``min_signers`` helpers sent a sigma.
        InvalidIdentifier: when ``identifier`` is not in the public key package.
        InvalidRepairedShare: when the sum does not match the published verifying share.
    """
    check_participants(sigmas)
    check_enough_signers(len(sigmas), public_key_package.min_signers)
    expected_verifying_share = public_key_package.verifying_share(identifier)
    signing_share = repair_share_part2(list(sigmas.values()))
    if base_mul(signing_share) != expected_verifying_share:
        raise InvalidRepairedShare(
            f"repaired signing share of participant {identifier} does not match its verifying "
            f"share. A helper among {sorted(sigmas)} sent a wrong value, so repeat the repair "
            "with another set of helpers"
        )
    return KeyPackage(
        identifier,
        signing_share,
        expected_verifying_share,
        public_key_package.group_public_key,
        public_key_package.min_signers,
    )
