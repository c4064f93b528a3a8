"""Unit tests of actors.lifecycle.repair (pure, in memory)."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping, Sequence

import pytest
from lifecycle_support import MESSAGE, generate_keys, seeded_random, threshold_sign
from nacl.public import PrivateKey

import actors.lifecycle.repair as repair_module
from actors.frost.ciphersuite import ONE_SCALAR, scalar_add, verify_signature
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.lifecycle.channel import open_scalar
from actors.lifecycle.errors import (
    RepairFailed,
    SealedPackageInvalid,
    SessionMismatch,
    SessionOutOfOrder,
)
from actors.lifecycle.records import public_key_package_digest
from actors.lifecycle.repair import (
    DELTA_PURPOSE,
    RepairHelper,
    RepairTarget,
)

SESSION = "repair-0001"


def _run_repair(
    keys: Mapping[int, KeyPackage],
    public: PublicKeyPackage,
    participant: int,
    helpers: Sequence[int],
    relayed: list[object] | None = None,
) -> KeyPackage:
    rng = seeded_random(11)
    target = RepairTarget(SESSION, participant, helpers, public, rng)
    sessions = {h: RepairHelper(target.request, keys[h], public, rng) for h in helpers}
    announcements = {h: s.announcement for h, s in sessions.items()}
    deltas = {
        h: s.seal_deltas({j: a for j, a in announcements.items() if j != h})
        for h, s in sessions.items()
    }
    sigmas = {
        h: s.seal_sigma({j: deltas[j][h] for j in helpers if j != h}) for h, s in sessions.items()
    }
    if relayed is not None:
        relayed.extend([target.request, announcements, deltas, sigmas])
    return target.finish(sigmas, announcements)


def test_repair_rebuilds_lost_signing_share() -> None:
    keys, public = generate_keys(min_signers=2, max_signers=3)
    repaired = _run_repair(keys, public, participant=2, helpers=[1, 3])
    assert repaired.signing_share == keys[2].signing_share


def test_repair_with_three_of_five_helpers() -> None:
    keys, public = generate_keys(min_signers=3, max_signers=5)
    repaired = _run_repair(keys, public, participant=4, helpers=[1, 2, 5])
    assert repaired.signing_share == keys[4].signing_share


def test_repaired_share_signs_with_another_signer() -> None:
    keys, public = generate_keys()
    repaired = _run_repair(keys, public, participant=2, helpers=[1, 3])
    signature = threshold_sign({2: repaired, 3: keys[3]}, public)
    verify_signature(MESSAGE, signature, public.group_public_key)


def test_repair_relay_sees_no_secret_scalar() -> None:
    keys, public = generate_keys()
    relayed: list[object] = []
    repaired = _run_repair(keys, public, participant=2, helpers=[1, 3], relayed=relayed)
    wire = pickle.dumps(relayed)
    assert repaired.signing_share not in wire
    for helper in (1, 3):
        assert keys[helper].signing_share not in wire


def test_repair_delta_does_not_open_with_relay_key() -> None:
    keys, public = generate_keys()
    rng = seeded_random(12)
    target = RepairTarget(SESSION, 2, [1, 3], public, rng)
    helper_1 = RepairHelper(target.request, keys[1], public, rng)
    helper_3 = RepairHelper(target.request, keys[3], public, rng)
    sealed = helper_1.seal_deltas({3: helper_3.announcement})[3]
    relay_key = PrivateKey(rng(32))
    with pytest.raises(SealedPackageInvalid, match="failed authentication"):
        open_scalar(
            relay_key,
            helper_1.announcement.box_public_key,
            sealed,
            purpose=DELTA_PURPOSE,
            session_id=SESSION,
            sender=1,
            recipient=3,
        )


def test_repair_target_rejects_too_few_helpers() -> None:
    keys, public = generate_keys(min_signers=3, max_signers=5)
    with pytest.raises(SessionMismatch, match="expected at least t = 3"):
        RepairTarget(SESSION, 2, [1, 3], public)


def test_repair_target_rejects_itself_as_helper() -> None:
    _, public = generate_keys()
    with pytest.raises(SessionMismatch, match="cannot help repair its own share"):
        RepairTarget(SESSION, 2, [1, 2], public)


def test_repair_target_rejects_unknown_helper() -> None:
    _, public = generate_keys()
    with pytest.raises(SessionMismatch, match="must be in the public key package"):
        RepairTarget(SESSION, 2, [1, 7], public)


def test_repair_helper_rejects_request_with_other_key_package() -> None:
    keys, public = generate_keys(seed=1)
    _, other_public = generate_keys(seed=9)
    target = RepairTarget(SESSION, 2, [1, 3], other_public)
    with pytest.raises(SessionMismatch, match="rejecting the request") as caught:
        RepairHelper(target.request, keys[1], public)
    assert caught.value.signer == 1


def test_repair_helper_rejects_request_that_does_not_list_it() -> None:
    keys, public = generate_keys(min_signers=2, max_signers=4)
    target = RepairTarget(SESSION, 2, [1, 3], public)
    with pytest.raises(SessionMismatch, match="is not among the helpers"):
        RepairHelper(target.request, keys[4], public)


def test_seal_sigma_rejects_call_before_seal_deltas() -> None:
    keys, public = generate_keys()
    target = RepairTarget(SESSION, 2, [1, 3], public)
    helper = RepairHelper(target.request, keys[1], public)
    with pytest.raises(SessionOutOfOrder, match="needs seal_deltas first"):
        helper.seal_sigma({})


def test_repair_target_rejects_sigma_with_other_digest() -> None:
    keys, public = generate_keys()
    rng = seeded_random(13)
    target = RepairTarget(SESSION, 2, [1, 3], public, rng)
    helpers = {h: RepairHelper(target.request, keys[h], public, rng) for h in (1, 3)}
    deltas = {1: helpers[1].seal_deltas({3: helpers[3].announcement})}
    deltas[3] = helpers[3].seal_deltas({1: helpers[1].announcement})
    sigmas = {
        1: helpers[1].seal_sigma({3: deltas[3][1]}),
        3: helpers[3].seal_sigma({1: deltas[1][3]}),
    }
    forged = dataclasses.replace(sigmas[3], public_key_package_digest="0" * 64)
    announcements = {h: s.announcement for h, s in helpers.items()}
    with pytest.raises(SessionMismatch, match="disagree on the group's keys") as caught:
        target.finish({1: sigmas[1], 3: forged}, announcements)
    assert caught.value.signer == 3


def test_repair_target_rejects_wrong_delta_from_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    keys, public = generate_keys()
    honest = repair_module.repair_share_part1

    def cheating_part1(helpers, key_package, participant, rng):  # type: ignore[no-untyped-def]
        deltas = honest(helpers, key_package, participant, rng)
        if key_package.identifier == 3:
            deltas[1] = scalar_add(deltas[1], ONE_SCALAR)
        return deltas

    monkeypatch.setattr(repair_module, "repair_share_part1", cheating_part1)
    with pytest.raises(RepairFailed, match="does not match its verifying share") as caught:
        _run_repair(keys, public, participant=2, helpers=[1, 3])
    assert caught.value.signer == 2


def test_repair_target_rejects_second_finish() -> None:
    keys, public = generate_keys()
    target = RepairTarget(SESSION, 2, [1, 3], public)
    with pytest.raises(SessionMismatch):
        target.finish({}, {})
    with pytest.raises(SessionOutOfOrder, match="already finished"):
        target.finish({}, {})


def test_repair_request_carries_public_key_package_digest() -> None:
    _, public = generate_keys()
    target = RepairTarget(SESSION, 2, [3, 1], public)
    assert target.request.public_key_package_digest == public_key_package_digest(public)
    assert target.request.helpers == (1, 3)
