"""Share refresh (same group key, new shares) and share repair with t helpers."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from actors.frost import refresh, repair
from actors.frost.aggregate import aggregate
from actors.frost.ciphersuite import scalar_add, scalar_from_int
from actors.frost.dkg import Round2Package
from actors.frost.errors import (
    InvalidRepairedShare,
    InvalidSecretShare,
    InvalidSignatureShare,
    ParticipantMismatch,
    TooFewSigners,
)
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.frost.round1 import commit
from actors.frost.round2 import make_signing_package, sign

from .conftest import load_vector, seeded_random

DkgResult = tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]


def _run_refresh(
    key_packages: dict[int, KeyPackage], public_key_package: PublicKeyPackage, seed: int
) -> tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]:
    rng = seeded_random(seed)
    identifiers = sorted(key_packages)
    n, t = len(identifiers), public_key_package.min_signers
    round1 = {i: refresh.refresh_dkg_part1(i, n, t, rng) for i in identifiers}
    broadcast = {i: p for i, (_, p) in round1.items()}

    def others(i: int) -> dict[int, refresh.RefreshRound1Package]:
        return {j: p for j, p in broadcast.items() if j != i}

    sent = {i: refresh.refresh_dkg_part2(round1[i][0], others(i)) for i in identifiers}
    new_keys = {}
    new_publics = []
    for i in identifiers:
        received = {j: sent[j][i] for j in identifiers if j != i}
        key_package, public = refresh.refresh_dkg_shares(
            round1[i][0], others(i), received, key_packages[i], public_key_package
        )
        new_keys[i] = key_package
        new_publics.append(public)
    assert all(p == new_publics[0] for p in new_publics)
    return new_keys, new_publics[0], {"round1": round1, "sent": sent}


def _sign(
    key_packages: dict[int, KeyPackage],
    public_key_package: PublicKeyPackage,
    signers: tuple[int, ...],
    seed: int,
) -> bytes:
    rng = seeded_random(seed)
    round1 = {i: commit(key_packages[i], rng) for i in signers}
    package = make_signing_package([c for _, c in round1.values()], b"refreshed")
    shares = {i: sign(package, round1[i][0], key_packages[i]) for i in signers}
    return aggregate(package, shares, public_key_package)


def test_refresh_keeps_group_key(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    _, refreshed, _ = _run_refresh(key_packages, public_key_package, 1)
    assert refreshed.group_public_key == public_key_package.group_public_key


def test_refresh_changes_every_signing_share(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    new_keys, _, _ = _run_refresh(key_packages, public_key_package, 2)
    for i, key_package in new_keys.items():
        assert key_package.signing_share != key_packages[i].signing_share, i


def test_refreshed_shares_sign_for_every_t_subset(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    new_keys, refreshed, _ = _run_refresh(key_packages, public_key_package, 3)
    group_key = Ed25519PublicKey.from_public_bytes(refreshed.group_public_key)
    for seed, signers in enumerate(itertools.combinations(sorted(new_keys), 3)):
        group_key.verify(_sign(new_keys, refreshed, signers, seed), b"refreshed")


def test_old_and_new_shares_do_not_combine(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    new_keys, refreshed, _ = _run_refresh(key_packages, public_key_package, 4)
    mixed = {1: key_packages[1], 2: new_keys[2], 3: new_keys[3]}
    with pytest.raises(InvalidSignatureShare) as raised:
        _sign(mixed, refreshed, (1, 2, 3), 5)
    assert raised.value.culprit == 1


def test_refresh_dkg_shares_rejects_bad_share_with_culprit(dkg_2_of_3: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_2_of_3
    rng = seeded_random(6)
    round1 = {i: refresh.refresh_dkg_part1(i, 3, 2, rng) for i in (1, 2, 3)}
    broadcast = {i: p for i, (_, p) in round1.items()}
    others = {j: broadcast[j] for j in (2, 3)}
    sent = {
        j: refresh.refresh_dkg_part2(round1[j][0], {k: broadcast[k] for k in (1, 2, 3) if k != j})
        for j in (2, 3)
    }
    received = {j: sent[j][1] for j in (2, 3)}
    received[3] = Round2Package(3, 1, scalar_add(received[3].signing_share, scalar_from_int(1)))
    with pytest.raises(InvalidSecretShare, match="from participant 3 does not match") as raised:
        refresh.refresh_dkg_shares(
            round1[1][0], others, received, key_packages[1], public_key_package
        )
    assert raised.value.culprit == 3


def test_refresh_dkg_part2_rejects_missing_participant(dkg_2_of_3: DkgResult) -> None:
    rng = seeded_random(7)
    round1 = {i: refresh.refresh_dkg_part1(i, 3, 2, rng) for i in (1, 2, 3)}
    with pytest.raises(ParticipantMismatch, match="expected one from each of the 2 other"):
        refresh.refresh_dkg_part2(round1[1][0], {2: round1[2][1]})


# Share repair


def test_repair_share_part2_matches_zf_scalar_sum() -> None:
    vector = load_vector("zf-frost-ed25519-repair-share.json")["scalar_generation"]
    deltas = [bytes.fromhex(vector[f"random_scalar_{k}"]) for k in (1, 2, 3)]
    assert repair.repair_share_part2(deltas).hex() == vector["random_scalar_sum"]


def test_repair_share_part3_sum_matches_zf_sigma_sum() -> None:
    vector = load_vector("zf-frost-ed25519-repair-share.json")["sigma_generation"]
    sigmas = [bytes.fromhex(vector[f"sigma_{k}"]) for k in (1, 2, 3, 4)]
    # Part 3 adds the sigmas exactly as part 2 adds the deltas, then checks the result.
    assert repair.repair_share_part2(sigmas).hex() == vector["sigma_sum"]


def _repair(
    key_packages: dict[int, KeyPackage],
    public_key_package: PublicKeyPackage,
    helpers: tuple[int, ...],
    participant: int,
    seed: int,
) -> dict[int, bytes]:
    rng = seeded_random(seed)
    deltas = {
        i: repair.repair_share_part1(helpers, key_packages[i], participant, rng) for i in helpers
    }
    return {j: repair.repair_share_part2([deltas[i][j] for i in helpers]) for j in helpers}


def test_repair_restores_lost_share(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    for seed, helpers in enumerate(itertools.combinations((1, 2, 3, 5), 3)):
        sigmas = _repair(key_packages, public_key_package, helpers, 4, seed)
        repaired = repair.repair_share_part3(sigmas, 4, public_key_package)
        assert repaired.signing_share == key_packages[4].signing_share, helpers


def test_repair_share_part3_rejects_wrong_sigma(dkg_3_of_5: DkgResult) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    sigmas = _repair(key_packages, public_key_package, (1, 2, 3), 4, 10)
    sigmas[2] = scalar_add(sigmas[2], scalar_from_int(1))
    with pytest.raises(InvalidRepairedShare, match="does not match its verifying share"):
        repair.repair_share_part3(sigmas, 4, public_key_package)


def test_repair_share_part1_rejects_too_few_helpers(dkg_3_of_5: DkgResult) -> None:
    key_packages, _, _ = dkg_3_of_5
    with pytest.raises(TooFewSigners, match="2 signers take part"):
        repair.repair_share_part1((1, 2), key_packages[1], 4, seeded_random(11))


def test_repair_share_part1_rejects_participant_among_helpers(dkg_3_of_5: DkgResult) -> None:
    key_packages, _, _ = dkg_3_of_5
    with pytest.raises(ParticipantMismatch, match="participant 4 being repaired is in"):
        repair.repair_share_part1((1, 2, 4), key_packages[1], 4, seeded_random(12))


def test_repair_share_part1_rejects_helper_not_listed(dkg_3_of_5: DkgResult) -> None:
    key_packages, _, _ = dkg_3_of_5
    with pytest.raises(ParticipantMismatch, match="helper 5 is not in the helper list"):
        repair.repair_share_part1((1, 2, 3), key_packages[5], 4, seeded_random(13))
