"""Refresh and repair across three ``SignerCore`` signers and their real sealed share files.

Each step runs through the signer wiring methods (``refresh_part1`` to ``refresh_commit``,
``repair_start`` to ``repair_finish``) with a valid coordinator token per call, as the
coordinator relays them. The tests then reload the sealed files from disk and sign a token
signing input with FROST round one, round two and ``aggregate``, which verifies every share,
and check the result with ``cryptography``'s Ed25519 verifier.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from actors.frost.aggregate import aggregate
from actors.frost.errors import InvalidSignatureShare
from actors.frost.round1 import commit
from actors.frost.round2 import make_signing_package, sign
from actors.lifecycle.errors import RefreshNotPending
from actors.lifecycle.records import (
    public_key_package_digest,
    record_key_package,
    record_public_key_package,
)
from actors.lifecycle.refresh import pending_share_store
from actors.sealing import FileSealingKeyProvider, ShareStore
from authz.formats import TokenClaims, token_signing_input
from authz.jwk import okp_ed25519_jwk, thumbprint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mesh"))
from mesh_unit_support import LocalMesh, build_mesh  # noqa: E402

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


def _generate(state_dir: Path) -> tuple[LocalMesh, bytes]:
    """Run the relayed 2-of-3 key generation; every signer seals its share in ``state_dir``."""
    mesh = build_mesh(state_dir, attested=False)
    return mesh, mesh.coordinator.group_public_key()


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


def _refresh(mesh: LocalMesh, identifiers: Sequence[int], session_id: str) -> str:
    """Run refresh steps 1-3 on every signer, which stages the results; return the digest."""
    announcements = {i: mesh.call(i, "refresh_part1", session_id) for i in identifiers}
    sealed = {
        i: mesh.call(i, "refresh_part2", {j: a for j, a in announcements.items() if j != i})
        for i in identifiers
    }
    digests = {
        public_key_package_digest(
            mesh.call(i, "refresh_part3", {j: sealed[j][i] for j in identifiers if j != i})
        )
        for i in identifiers
    }
    assert len(digests) == 1
    return digests.pop()


def test_refresh_across_signers_keeps_group_key_and_signs(tmp_path: Path) -> None:
    mesh, group_key = _generate(tmp_path)
    old = {i: _store(tmp_path).load(i) for i in (1, 2, 3)}
    digest = _refresh(mesh, (1, 2, 3), "refresh-int-1")
    for identifier in (1, 2, 3):
        mesh.call(identifier, "refresh_commit", digest)

    for identifier in (1, 2, 3):
        new = _store(tmp_path).load(identifier)
        assert new is not None and old[identifier] is not None
        assert new.group_public_key == group_key
        assert new.signing_share != old[identifier].signing_share
    message, signature = _sign_with(tmp_path, (1, 3))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_refresh_old_share_does_not_combine_with_new_ones(tmp_path: Path) -> None:
    mesh, _ = _generate(tmp_path)
    old_1 = _store(tmp_path).load(1)
    digest = _refresh(mesh, (1, 2, 3), "refresh-int-2")
    for identifier in (1, 2, 3):
        mesh.call(identifier, "refresh_commit", digest)
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
    mesh, group_key = _generate(tmp_path)
    old = _store(tmp_path).load(2)
    _refresh(mesh, (1, 2, 3), "refresh-int-3")
    for identifier in (1, 2, 3):
        assert mesh.call(identifier, "refresh_abort")

    assert _store(tmp_path).load(2) == old
    assert pending_share_store(_store(tmp_path)).load(2) is None
    message, signature = _sign_with(tmp_path, (1, 2))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_commit_refresh_repeats_after_success(tmp_path: Path) -> None:
    mesh, _ = _generate(tmp_path)
    digest = _refresh(mesh, (1, 2, 3), "refresh-int-4")
    first = mesh.call(1, "refresh_commit", digest)
    again = mesh.call(1, "refresh_commit", digest)
    assert again == first


def test_commit_refresh_rejects_without_staged_share(tmp_path: Path) -> None:
    mesh, _ = _generate(tmp_path)
    with pytest.raises(RefreshNotPending, match="repair this signer") as caught:
        mesh.call(1, "refresh_commit", "0" * 64)
    assert caught.value.signer == 1


def _repair(mesh: LocalMesh, participant: int, helpers: Sequence[int]) -> None:
    """Rebuild ``participant``'s sealed share from the helpers through the signer methods."""
    package = mesh.signers[helpers[0]].describe().public_key_package
    request = mesh.call(participant, "repair_start", "repair-int-1", tuple(helpers), package)
    announcements = {h: mesh.call(h, "repair_help", request) for h in helpers}
    deltas = {
        h: mesh.call(h, "repair_deltas", {j: a for j, a in announcements.items() if j != h})
        for h in helpers
    }
    sigmas = {
        h: mesh.call(h, "repair_sigma", {j: deltas[j][h] for j in helpers if j != h})
        for h in helpers
    }
    mesh.call(participant, "repair_finish", sigmas, announcements)


def _lose_share(mesh: LocalMesh, identifier: int) -> None:
    """Delete the sealed share of ``identifier`` and restart the signer without it."""
    _store(mesh.state_dir).path(identifier).unlink()
    mesh.restart_signer(identifier)
    assert mesh.signers[identifier].describe().public_key_package is None


@pytest.mark.parametrize("partner", [1, 3])
def test_repair_rebuilds_deleted_share_that_signs(tmp_path: Path, partner: int) -> None:
    mesh, group_key = _generate(tmp_path)
    original = _store(tmp_path).load(2)
    _lose_share(mesh, 2)
    assert _store(tmp_path).load(2) is None

    _repair(mesh, 2, [1, 3])
    assert _store(tmp_path).load(2) == original
    message, signature = _sign_with(tmp_path, (2, partner))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)


def test_repair_after_refresh_restores_signer_that_missed_commit(tmp_path: Path) -> None:
    mesh, group_key = _generate(tmp_path)
    digest = _refresh(mesh, (1, 2, 3), "refresh-int-5")
    mesh.call(1, "refresh_commit", digest)
    mesh.call(3, "refresh_commit", digest)
    # Signer 2 lost its staged share before committing, so its old share is useless: the
    # operator deletes it, and the repair uses the new package of the signers that committed.
    mesh.call(2, "refresh_abort")
    _lose_share(mesh, 2)
    _repair(mesh, 2, [1, 3])
    message, signature = _sign_with(tmp_path, (2, 3))
    Ed25519PublicKey.from_public_bytes(group_key).verify(signature, message)
