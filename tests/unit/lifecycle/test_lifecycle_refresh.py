"""Unit tests of actors.lifecycle.refresh and actors.lifecycle.channel (pure, in memory)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from lifecycle_support import (
    MESSAGE,
    aggregate_unverified,
    generate_keys,
    run_refresh,
    seeded_random,
    threshold_sign,
)

from actors.frost.ciphersuite import verify_signature
from actors.frost.errors import InvalidSignature, InvalidSignatureShare
from actors.lifecycle.channel import check_session_id
from actors.lifecycle.errors import (
    RefreshFailed,
    SealedPackageInvalid,
    SessionMismatch,
    SessionOutOfOrder,
)
from actors.lifecycle.refresh import RefreshSession

SESSION = "refresh-0001"


def test_refresh_keeps_group_key() -> None:
    keys, public = generate_keys()
    results = run_refresh(SESSION, keys, public)
    for result in results.values():
        assert result.public_key_package.group_public_key == public.group_public_key


def test_refresh_gives_every_signer_the_same_public_key_package() -> None:
    keys, public = generate_keys()
    results = run_refresh(SESSION, keys, public)
    packages = [result.public_key_package for result in results.values()]
    assert all(package == packages[0] for package in packages)


def test_refresh_changes_every_signing_share() -> None:
    keys, public = generate_keys()
    results = run_refresh(SESSION, keys, public)
    for identifier, result in results.items():
        assert result.key_package.signing_share != keys[identifier].signing_share


def test_refresh_new_shares_sign_in_every_t_subset() -> None:
    keys, public = generate_keys(min_signers=2, max_signers=3)
    results = run_refresh(SESSION, keys, public)
    new_public = results[1].public_key_package
    for subset in itertools.combinations(sorted(results), 2):
        signature = threshold_sign({i: results[i].key_package for i in subset}, new_public)
        verify_signature(MESSAGE, signature, public.group_public_key)


def test_refresh_old_share_fails_share_verification_with_new_ones() -> None:
    keys, public = generate_keys()
    results = run_refresh(SESSION, keys, public)
    mixed = {1: keys[1], 2: results[2].key_package}
    with pytest.raises(InvalidSignatureShare) as caught:
        threshold_sign(mixed, results[2].public_key_package)
    assert caught.value.culprit == 1


def test_refresh_old_share_mixed_with_new_gives_invalid_signature() -> None:
    keys, public = generate_keys()
    results = run_refresh(SESSION, keys, public)
    mixed = {1: keys[1], 2: results[2].key_package}
    signature = aggregate_unverified(mixed, public.group_public_key)
    with pytest.raises(InvalidSignature):
        verify_signature(MESSAGE, signature, public.group_public_key)


def test_refresh_result_repr_hides_signing_share() -> None:
    keys, public = generate_keys()
    result = run_refresh(SESSION, keys, public)[1]
    assert result.key_package.signing_share.hex() not in repr(result)


def test_refresh_session_rejects_invalid_session_id() -> None:
    keys, public = generate_keys()
    with pytest.raises(SessionMismatch, match="session id 'x' is invalid"):
        RefreshSession("x", keys[1], public)


def test_check_session_id_accepts_hex() -> None:
    assert check_session_id("0123abcd") == "0123abcd"


def test_refresh_session_rejects_key_package_of_other_group() -> None:
    keys, _ = generate_keys(seed=1)
    _, other_public = generate_keys(seed=9)
    with pytest.raises(SessionMismatch, match="hold different keys"):
        RefreshSession(SESSION, keys[1], other_public)


def test_finish_rejects_call_before_seal_packages() -> None:
    keys, public = generate_keys()
    session = RefreshSession(SESSION, keys[1], public, seeded_random(4))
    with pytest.raises(SessionOutOfOrder, match="finish called before seal_packages"):
        session.finish({})


def test_seal_packages_rejects_second_call() -> None:
    keys, public = generate_keys()
    sessions = {i: RefreshSession(SESSION, kp, public, seeded_random(i)) for i, kp in keys.items()}
    others = {j: sessions[j].announcement for j in (2, 3)}
    sessions[1].seal_packages(others)
    with pytest.raises(SessionOutOfOrder, match="seal_packages already ran"):
        sessions[1].seal_packages(others)


def test_seal_packages_rejects_missing_signer() -> None:
    keys, public = generate_keys()
    sessions = {i: RefreshSession(SESSION, kp, public, seeded_random(i)) for i, kp in keys.items()}
    with pytest.raises(SessionMismatch, match=r"expected one from each of \[2, 3\]"):
        sessions[1].seal_packages({2: sessions[2].announcement})


def test_seal_packages_rejects_announcement_of_other_session() -> None:
    keys, public = generate_keys()
    sessions = {i: RefreshSession(SESSION, kp, public, seeded_random(i)) for i, kp in keys.items()}
    foreign = dataclasses.replace(sessions[3].announcement, session_id="refresh-other")
    with pytest.raises(SessionMismatch) as caught:
        sessions[1].seal_packages({2: sessions[2].announcement, 3: foreign})
    assert caught.value.signer == 3


def _sealed_round(
    seed: int = 5,
) -> tuple[dict[int, RefreshSession], dict[int, dict[int, object]]]:
    keys, public = generate_keys()
    rng = seeded_random(seed)
    sessions = {i: RefreshSession(SESSION, kp, public, rng) for i, kp in keys.items()}
    announcements = {i: s.announcement for i, s in sessions.items()}
    sealed = {
        i: s.seal_packages({j: a for j, a in announcements.items() if j != i})
        for i, s in sessions.items()
    }
    return sessions, sealed


def test_finish_rejects_tampered_package_and_names_sender() -> None:
    sessions, sealed = _sealed_round()
    tampered = sealed[2][1]
    flipped = tampered.ciphertext[:-1] + bytes([tampered.ciphertext[-1] ^ 1])
    packages = {2: dataclasses.replace(tampered, ciphertext=flipped), 3: sealed[3][1]}
    with pytest.raises(SealedPackageInvalid, match="failed authentication") as caught:
        sessions[1].finish(packages)
    assert caught.value.signer == 2


def test_finish_rejects_package_for_other_recipient() -> None:
    sessions, sealed = _sealed_round()
    # Signer 2's package for signer 3, relayed to signer 1 as if it were addressed there.
    misrouted = dataclasses.replace(sealed[2][3], recipient=1)
    with pytest.raises(SealedPackageInvalid):
        sessions[1].finish({2: misrouted, 3: sealed[3][1]})


def test_finish_rejects_missing_package() -> None:
    sessions, sealed = _sealed_round()
    with pytest.raises(SessionMismatch, match="got refresh packages from"):
        sessions[1].finish({2: sealed[2][1]})


def test_finish_rejects_second_call() -> None:
    sessions, sealed = _sealed_round()
    packages = {j: sealed[j][1] for j in (2, 3)}
    sessions[1].finish(packages)
    with pytest.raises(SessionOutOfOrder, match="start a new refresh"):
        sessions[1].finish(packages)


def test_finish_rejects_value_that_fails_commitment_and_names_sender() -> None:
    keys, public = generate_keys()
    rng = seeded_random(6)
    sessions = {i: RefreshSession(SESSION, kp, public, rng) for i, kp in keys.items()}
    # Signer 3 announces its honest commitment, but deals values of another polynomial.
    cheater = RefreshSession(SESSION, keys[3], public, seeded_random(7))
    announced_3 = dataclasses.replace(
        sessions[3].announcement, box_public_key=cheater.announcement.box_public_key
    )
    announcements = {1: sessions[1].announcement, 2: sessions[2].announcement, 3: announced_3}
    sessions[1].seal_packages({2: announcements[2], 3: announced_3})
    sealed_2 = sessions[2].seal_packages({1: announcements[1], 3: announced_3})
    sealed_3 = cheater.seal_packages({1: announcements[1], 2: announcements[2]})
    with pytest.raises(RefreshFailed, match="keep the old shares") as caught:
        sessions[1].finish({2: sealed_2[1], 3: sealed_3[1]})
    assert caught.value.signer == 3
