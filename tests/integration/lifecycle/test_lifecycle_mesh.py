"""Refresh and repair across three signers' real sealed share files.

A small relay in this file plays the coordinator and the signer wiring methods, which do not
exist yet: it reads each signer's sealed share from disk, runs the lifecycle sessions, and
seals the results back. It then reloads the sealed files and signs a token signing input with
FROST round one, round two and ``aggregate``, which verifies every share, and checks the result
with ``cryptography``'s Ed25519 verifier.

NOTE: these tests do not build ``SignerCore`` objects. Its constructor now also needs a
caller-token verifier and an attestation report provider, and the signing path needs the
coordinator's per-call tokens. Once the lead adds the wiring methods, these tests should drive
``SignerCore`` through them instead of the relay here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from actors.frost import dkg
from actors.frost.aggregate import aggregate
from actors.frost.errors import InvalidSignatureShare
from actors.frost.round1 import commit
from actors.frost.round2 import make_signing_package, sign
from actors.lifecycle.errors import RefreshNotPending
from actors.lifecycle.records import (
    public_key_package_digest,
    record_key_package,
    record_public_key_package,
    share_record,
)
from actors.lifecycle.refresh import (
    RefreshSession,
    abort_refresh,
    commit_refresh,
    pending_share_store,
    stage_refresh,
)
from actors.lifecycle.repair import RepairHelper, RepairTarget
from actors.sealing import FileSealingKeyProvider, ShareStore
from authz.formats import TokenClaims, token_signing_input
from authz.jwk import okp_ed25519_jwk, thumbprint

pytestmark = pytest.mark.integration


def _store(state_dir: Path) -> ShareStore:
    return ShareStore(state_dir, FileSealingKeyProvider(state_dir))


def _token_message(group_public_key: bytes) -> bytes:
    claims = TokenClaims(
        iss="https://mint.example",
        sub="alice@example.com",
        aud="billing",
        scopes=("invoices:read",),
        iat=1_800_000_000,
        ttl=900,
        jti="jti-lifecycle",
    )
    return token_signing_input(claims, thumbprint(okp_ed25519_jwk(group_public_key)))


def _generate(state_dir: Path, n: int = 3, t: int = 2) -> bytes:
    """Run the dealerless DKG among n signers and seal each share, as ``dkg_part3`` does."""
    identifiers = list(range(1, n + 1))
    round1 = {i: dkg.part1(i, n, t) for i in identifiers}
    broadcast = {i: package for i, (_, package) in round1.items()}
    round2 = {
        i: dkg.part2(round1[i][0], {j: p for j, p in broadcast.items() if j != i})
        for i in identifiers
    }
    store = _store(state_dir)
    for i in identifiers:
        received = {j: round2[j][1][i] for j in identifiers if j != i}
        others = {j: p for j, p in broadcast.items() if j != i}
        key_package, public_key_package = dkg.part3(round2[i][0], others, received)
        store.save(share_record(key_package, public_key_package))
    return public_key_package.group_public_key


def _sign_with(state_dir: Path, identifiers: Sequence[int]) -> tuple[bytes, bytes]:
    """Reload the sealed shares of these signers and sign a token signing input with them."""
    records = {i: _store(state_dir).load(i) for i in identifiers}
    key_packages = {i: record_key_package(r) for i, r in records.items()}  # type: ignore[arg-type]
    public_key_package = record_public_key_package(records[identifiers[0]])  # type: ignore[arg-type]
    message = _token_message(public_key_package.group_public_key)
    rounds = {i: commit(kp) for i, kp in key_packages.items()}
    package = make_signing_package([c for _, c in rounds.values()], message)
    shares = {i: sign(package, rounds[i][0], kp) for i, kp in key_packages.items()}
    return message, aggregate(package, shares, public_key_package)


def _refresh(state_dir: Path, identifiers: Sequence[int], session_id: str) -> str:
    """Run refresh steps 1-3 on every signer, stage the results and return the new digest."""
    store = _store(state_dir)
    records = {i: store.load(i) for i in identifiers}
    sessions = {
        i: RefreshSession(session_id, record_key_package(r), record_public_key_package(r))
        for i, r in records.items()
        if r is not None
    }
    announcements = {i: s.announcement for i, s in sessions.items()}
    sealed = {
        i: s.seal_packages({j: a for j, a in announcements.items() if j != i})
        for i, s in sessions.items()
    }
    digests = set()
    for i, session in sessions.items():
        result = session.finish({j: sealed[j][i] for j in sessions if j != i})
        stage_refresh(store, result)
        digests.add(public_key_package_digest(result.public_key_package))
    assert len(digests) == 1
    return digests.pop()


def test_refresh_across_signers_keeps_group_key_and_signs(tmp_path: Path) -> None:
    group_key = _generate(tmp_path)
    old = {i: _store(tmp_path).load(i) for i in (1, 2, 3)}
    digest = _refresh(tmp_path, (1, 2, 3), "refresh-int-1")
    for identifier in (1, 2, 3):
        commit_refresh(_store(tmp_path), identifier, digest)

    for identifier in (1, 2, 3):
        new = _store(tmp_path).load(identifier)
        assert new is not None and old[identifier] is not None
        assert new.group_public_key == group_key
        assert new.signing_share != old[identifier].signing_share
    message, signature = _sign_with(tmp_path, (1, 3))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_refresh_old_share_does_not_combine_with_new_ones(tmp_path: Path) -> None:
    _generate(tmp_path)
    old_1 = _store(tmp_path).load(1)
    digest = _refresh(tmp_path, (1, 2, 3), "refresh-int-2")
    for identifier in (1, 2, 3):
        commit_refresh(_store(tmp_path), identifier, digest)
    new_2 = _store(tmp_path).load(2)
    assert old_1 is not None and new_2 is not None

    key_packages = {1: record_key_package(old_1), 2: record_key_package(new_2)}
    rounds = {i: commit(kp) for i, kp in key_packages.items()}
    package = make_signing_package([c for _, c in rounds.values()], b"message")
    shares = {i: sign(package, rounds[i][0], kp) for i, kp in key_packages.items()}
    with pytest.raises(InvalidSignatureShare) as caught:
        aggregate(package, shares, record_public_key_package(new_2))
    assert caught.value.culprit == 1


def test_refresh_abort_keeps_old_share_usable(tmp_path: Path) -> None:
    group_key = _generate(tmp_path)
    old = _store(tmp_path).load(2)
    _refresh(tmp_path, (1, 2, 3), "refresh-int-3")
    for identifier in (1, 2, 3):
        assert abort_refresh(_store(tmp_path), identifier)

    assert _store(tmp_path).load(2) == old
    assert pending_share_store(_store(tmp_path)).load(2) is None
    message, signature = _sign_with(tmp_path, (1, 2))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_commit_refresh_repeats_after_success(tmp_path: Path) -> None:
    _generate(tmp_path)
    digest = _refresh(tmp_path, (1, 2, 3), "refresh-int-4")
    first = commit_refresh(_store(tmp_path), 1, digest)
    again = commit_refresh(_store(tmp_path), 1, digest)
    assert again == first


def test_commit_refresh_rejects_without_staged_share(tmp_path: Path) -> None:
    _generate(tmp_path)
    with pytest.raises(RefreshNotPending, match="repair this signer") as caught:
        commit_refresh(_store(tmp_path), 1, "0" * 64)
    assert caught.value.signer == 1


def _repair(state_dir: Path, participant: int, helpers: Sequence[int]) -> None:
    """Rebuild ``participant``'s sealed share from the helpers' sealed shares."""
    store = _store(state_dir)
    helper_records = {h: store.load(h) for h in helpers}
    public = record_public_key_package(next(iter(helper_records.values())))  # type: ignore[arg-type]
    target = RepairTarget("repair-int-1", participant, helpers, public)
    sessions = {
        h: RepairHelper(
            target.request,
            record_key_package(r),
            record_public_key_package(r),  # type: ignore[arg-type]
        )
        for h, r in helper_records.items()
    }
    announcements = {h: s.announcement for h, s in sessions.items()}
    deltas = {
        h: s.seal_deltas({j: a for j, a in announcements.items() if j != h})
        for h, s in sessions.items()
    }
    sigmas = {
        h: s.seal_sigma({j: deltas[j][h] for j in helpers if j != h}) for h, s in sessions.items()
    }
    repaired = target.finish(sigmas, announcements)
    store.save(share_record(repaired, public))


@pytest.mark.parametrize("partner", [1, 3])
def test_repair_rebuilds_deleted_share_that_signs(tmp_path: Path, partner: int) -> None:
    group_key = _generate(tmp_path)
    original = _store(tmp_path).load(2)
    _store(tmp_path).path(2).unlink()
    assert _store(tmp_path).load(2) is None

    _repair(tmp_path, 2, [1, 3])
    assert _store(tmp_path).load(2) == original
    message, signature = _sign_with(tmp_path, (2, partner))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_repair_after_refresh_restores_signer_that_missed_commit(tmp_path: Path) -> None:
    group_key = _generate(tmp_path)
    digest = _refresh(tmp_path, (1, 2, 3), "refresh-int-5")
    commit_refresh(_store(tmp_path), 1, digest)
    commit_refresh(_store(tmp_path), 3, digest)
    # Signer 2 lost its staged share before committing.
    abort_refresh(_store(tmp_path), 2)
    _repair(tmp_path, 2, [1, 3])
    message, signature = _sign_with(tmp_path, (2, 3))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)
