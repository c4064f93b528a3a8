"""CoordinatorCore's refresh, repair and escrow runs over in-process signers with attestation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mesh_unit_support import (
    LocalMesh,
    SwitchableTransport,
    build_mesh,
    coordinator_for,
    kid_of,
    share_store,
    token_claims,
)
from ray import cloudpickle

from actors.admin import seal_pieces
from actors.coordinator import STATE_UP
from actors.coordinator_lifecycle import STATE_NEEDS_REPAIR
from actors.errors import LifecycleStepFailed, SigningPaused
from actors.lifecycle.channel import SealedScalar
from actors.lifecycle.escrow import decrypt_piece
from actors.lifecycle.guardian_keys import SoftwareGuardianKey
from actors.lifecycle.refresh import pending_share_store


def _state(mesh: LocalMesh, identifier: int) -> str:
    row = next(r for r in mesh.coordinator.status() if r["identifier"] == identifier)
    return str(row["state"])


def _signing_shares(mesh: LocalMesh) -> list[bytes]:
    return [
        s._key_package.signing_share for s in mesh.signers.values() if s._key_package is not None
    ]


def _lose_share(mesh: LocalMesh, identifier: int) -> None:
    share_store(mesh.state_dir).path(identifier).unlink()
    mesh.restart_signer(identifier)
    mesh.coordinator.refresh()


def test_run_refresh_keeps_group_key_and_signs(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    before = mesh.coordinator.public_key_package()

    after = mesh.coordinator.run_refresh("refresh-0001")

    assert after.group_public_key == before.group_public_key
    assert after.verifying_shares != before.verifying_shares
    assert mesh.coordinator.public_key_package() == after
    assert all(_state(mesh, i) == STATE_UP for i in (1, 2, 3))
    assert mesh.sign_token().signature


def test_run_refresh_relays_only_ciphertext(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    old_shares = _signing_shares(mesh)
    mesh.transport.log.clear()

    mesh.coordinator.run_refresh("refresh-0001")

    relayed = cloudpickle.dumps(mesh.transport.log)
    for share in old_shares + _signing_shares(mesh):
        assert share not in relayed
    part2 = [results for method, _, results in mesh.transport.log if method == "refresh_part2"]
    for results in part2:
        for sealed in results.values():
            assert all(isinstance(value, SealedScalar) for value in sealed.values())


def test_run_refresh_failure_aborts_every_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    before = mesh.coordinator.public_key_package()
    mesh.transport.rewrites[("refresh_part3", 2)] = lambda _result: RuntimeError("disk full")

    with pytest.raises(LifecycleStepFailed, match="disk full") as caught:
        mesh.coordinator.run_refresh("refresh-0001")

    assert caught.value.signer == 2
    pending = pending_share_store(share_store(tmp_path))
    assert all(not pending.path(i).exists() for i in (1, 2, 3))
    assert mesh.coordinator.public_key_package() == before
    assert mesh.sign_token().signature


def test_run_refresh_partial_commit_pauses_signing(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("refresh_commit", 3)] = lambda _result: TimeoutError("timed out")

    with pytest.raises(LifecycleStepFailed, match="--resume") as caught:
        mesh.coordinator.run_refresh("refresh-0001")

    assert caught.value.signer == 3
    with pytest.raises(SigningPaused, match="refresh-0001"):
        mesh.sign_token()
    with pytest.raises(LifecycleStepFailed, match="mix old and new"):
        mesh.coordinator.abort_refresh()


def test_resume_refresh_commits_remaining_and_signs(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    mesh.transport.rewrites[("refresh_commit", 3)] = lambda _result: TimeoutError("timed out")
    with pytest.raises(LifecycleStepFailed):
        mesh.coordinator.run_refresh("refresh-0001")
    del mesh.transport.rewrites[("refresh_commit", 3)]

    package = mesh.coordinator.resume_refresh()

    assert package.group_public_key == group_key
    assert mesh.coordinator.signing_paused() is None
    assert mesh.sign_token().signature


def test_run_refresh_rejects_signer_that_needs_repair(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    _lose_share(mesh, 2)

    with pytest.raises(LifecycleStepFailed, match="needs_repair") as caught:
        mesh.coordinator.run_refresh("refresh-0001")
    assert caught.value.signer == 2


def test_signer_without_share_is_needs_repair(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    _lose_share(mesh, 2)

    assert _state(mesh, 2) == STATE_NEEDS_REPAIR
    row = next(r for r in mesh.coordinator.status() if r["identifier"] == 2)
    assert "ztmint signers repair --signer 2" in str(row["last_error"])
    assert mesh.sign_token().signers == (1, 3)


def test_run_repair_share_signs_with_signer_1(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    original = share_store(tmp_path).load(2)
    _lose_share(mesh, 2)
    mesh.transport.log.clear()

    mesh.coordinator.run_repair("repair-0001", 2, [1, 3])

    assert _state(mesh, 2) == STATE_UP
    assert share_store(tmp_path).load(2) == original
    relayed = cloudpickle.dumps(mesh.transport.log)
    for share in _signing_shares(mesh):
        assert share not in relayed
    pair = SwitchableTransport({1: mesh.signers[1], 2: mesh.signers[2]})
    coordinator = coordinator_for(mesh, pair)
    coordinator.refresh()
    coordinator.refill()
    request = token_claims(jti="jti-pair")
    signed = coordinator.sign_token(
        request, kid_of(coordinator.group_public_key()), mesh.authenticator.assert_claims(request)
    )
    assert signed.signers == (1, 2)


def test_run_repair_rejects_helper_that_is_not_up(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    _lose_share(mesh, 2)
    _lose_share(mesh, 3)

    with pytest.raises(LifecycleStepFailed, match="not up") as caught:
        mesh.coordinator.run_repair("repair-0001", 2, [1, 3])
    assert caught.value.signer == 3


def test_escrow_restore_rebuilds_share_from_three_of_five(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    original = share_store(tmp_path).load(2)
    guardians = [SoftwareGuardianKey.generate() for _ in range(5)]
    keys = [
        g.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        for g in guardians
    ]
    mesh.transport.log.clear()
    bundles = mesh.coordinator.run_escrow("escrow-0001", keys, 3)
    _lose_share(mesh, 2)

    bundle = bundles[2]
    pieces = {i: decrypt_piece(bundle, i, guardians[i - 1]) for i in (1, 3, 5)}
    request = mesh.coordinator.begin_restore(2, "restore-0001")
    sender, sealed = seal_pieces(request, pieces)
    restored = mesh.coordinator.finish_restore(2, bundle, sender, sealed)

    assert restored.group_public_key == group_key
    assert share_store(tmp_path).load(2) == original
    assert _state(mesh, 2) == STATE_UP
    relayed = cloudpickle.dumps(mesh.transport.log)
    for secret in _signing_shares(mesh) + [p.value for p in pieces.values()]:
        assert secret not in relayed


def test_finish_restore_rejects_too_few_pieces(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    guardians = [SoftwareGuardianKey.generate() for _ in range(3)]
    keys = [
        g.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        for g in guardians
    ]
    bundle = mesh.coordinator.run_escrow("escrow-0001", keys, 2)[2]
    _lose_share(mesh, 2)
    request = mesh.coordinator.begin_restore(2, "restore-0001")
    sender, sealed = seal_pieces(request, {1: decrypt_piece(bundle, 1, guardians[0])})

    with pytest.raises(LifecycleStepFailed, match="TooFewGuardians") as caught:
        mesh.coordinator.finish_restore(2, bundle, sender, sealed)
    assert caught.value.signer == 2
    assert _state(mesh, 2) == STATE_NEEDS_REPAIR


def test_resume_refresh_skips_signer_that_lost_staged_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()

    def lose_staged_share(result: object) -> object:
        pending_share_store(share_store(tmp_path)).path(3).unlink()
        return result

    mesh.transport.rewrites[("refresh_part3", 3)] = lose_staged_share
    with pytest.raises(LifecycleStepFailed, match="RefreshNotPending"):
        mesh.coordinator.run_refresh("refresh-0001")
    with pytest.raises(LifecycleStepFailed, match="cannot be skipped") as caught:
        mesh.coordinator.resume_refresh(skip=[3])
    assert caught.value.signer == 3

    _lose_share(mesh, 3)
    package = mesh.coordinator.resume_refresh(skip=[3])

    assert package.group_public_key == group_key
    assert _state(mesh, 3) == STATE_NEEDS_REPAIR
    mesh.coordinator.run_repair("repair-0001", 3, [1, 2])
    assert _state(mesh, 3) == STATE_UP
    assert mesh.sign_token().signature
