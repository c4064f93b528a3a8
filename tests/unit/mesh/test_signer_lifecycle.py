"""SignerCore's refresh, repair and escrow steps without Ray: what each step rejects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mesh_unit_support import LocalMesh, build_mesh, share_store

from actors.errors import CallerRejected, SignerNotReady, StaleEpoch
from actors.lifecycle.errors import (
    EscrowBundleInvalid,
    RefreshFailed,
    RefreshNotPending,
    RepairFailed,
    SessionMismatch,
    SessionOutOfOrder,
)
from actors.lifecycle.refresh import RefreshAnnouncement
from actors.lifecycle.repair import RepairRequest
from actors.messages import SignRequest


def _guardian_keys(count: int = 3) -> tuple[bytes, ...]:
    return tuple(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        for _ in range(count)
    )


def _mesh_without_share_2(tmp_path: Path) -> LocalMesh:
    """A 2-of-3 mesh whose signer 2 lost its sealed share and restarted."""
    mesh = build_mesh(tmp_path, attested=False)
    share_store(tmp_path).path(2).unlink()
    mesh.restart_signer(2)
    return mesh


def _calls(mesh: LocalMesh) -> dict[str, tuple[Any, ...]]:
    package = mesh.coordinator.public_key_package()
    return {
        "refresh_part1": ("session-0001",),
        "refresh_part2": ({},),
        "refresh_part3": ({},),
        "refresh_commit": ("0" * 64,),
        "refresh_abort": (),
        "repair_start": ("session-0001", (1, 3), package),
        "repair_help": (RepairRequest("session-0001", 2, (1, 3), bytes(32), "0" * 64),),
        "repair_deltas": ({},),
        "repair_sigma": ({},),
        "repair_finish": ({}, {}),
        "escrow_create": ("escrow-0001", _guardian_keys(), 2),
        "escrow_restore_start": ("session-0001",),
    }


METHODS = [
    "refresh_part1",
    "refresh_part2",
    "refresh_part3",
    "refresh_commit",
    "refresh_abort",
    "repair_start",
    "repair_help",
    "repair_deltas",
    "repair_sigma",
    "repair_finish",
    "escrow_create",
    "escrow_restore_start",
]


@pytest.mark.parametrize("method", METHODS)
def test_lifecycle_step_rejects_token_for_other_method(tmp_path: Path, method: str) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    arguments = _calls(mesh)[method]
    token = mesh.issue(1, "publish_commitments", *arguments)

    with pytest.raises(CallerRejected):
        getattr(mesh.signers[1], method)(token, *arguments)


@pytest.mark.parametrize("method", METHODS)
def test_lifecycle_step_rejects_missing_token(tmp_path: Path, method: str) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(CallerRejected, match="without a coordinator token"):
        getattr(mesh.signers[1], method)("", *_calls(mesh)[method])


def test_refresh_part1_rejects_signer_without_share(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)

    with pytest.raises(SignerNotReady):
        mesh.call(2, "refresh_part1", "session-0001")


def test_refresh_part1_rejects_invalid_session_id(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(SessionMismatch, match="session id"):
        mesh.call(1, "refresh_part1", "bad id")


def test_refresh_part2_rejects_call_before_part1(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(SessionOutOfOrder):
        mesh.call(1, "refresh_part2", {})


def test_refresh_part2_rejects_other_session(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    mesh.call(1, "refresh_part1", "session-0001")
    others: dict[int, RefreshAnnouncement] = {
        i: mesh.call(i, "refresh_part1", "session-0002") for i in (2, 3)
    }

    with pytest.raises(SessionMismatch, match="session-0002") as caught:
        mesh.call(1, "refresh_part2", others)
    assert caught.value.signer == 2


def test_refresh_part3_rejects_call_before_part2(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    mesh.call(1, "refresh_part1", "session-0001")

    with pytest.raises(SessionOutOfOrder):
        mesh.call(1, "refresh_part3", {})


def test_refresh_part1_rejects_while_share_is_staged(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    _run_refresh_steps(mesh, "session-0001")

    with pytest.raises(RefreshFailed, match="staged"):
        mesh.call(1, "refresh_part1", "session-0002")


def test_refresh_abort_deletes_staged_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    _run_refresh_steps(mesh, "session-0001")

    assert mesh.call(1, "refresh_abort") is True
    assert mesh.call(1, "refresh_abort") is False


def test_refresh_commit_rejects_unknown_digest(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(RefreshNotPending) as caught:
        mesh.call(1, "refresh_commit", "0" * 64)
    assert caught.value.signer == 1


def test_refresh_commit_starts_new_epoch_and_drops_commitments(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    batch = mesh.call(1, "publish_commitments", 2)
    digest = _run_refresh_steps(mesh, "session-0001")

    mesh.call(1, "refresh_commit", digest)

    signer = mesh.signers[1]
    assert signer.epoch != batch.epoch
    assert signer.describe().pool_depth == 0
    request = SignRequest(batch.epoch, None, None)  # type: ignore[arg-type]
    with pytest.raises(StaleEpoch):
        mesh.call(1, "sign", request)


def test_refresh_commit_repeats_without_new_epoch(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    digest = _run_refresh_steps(mesh, "session-0001")
    first = mesh.call(1, "refresh_commit", digest)
    epoch = mesh.signers[1].epoch

    again = mesh.call(1, "refresh_commit", digest)

    assert again == first
    assert mesh.signers[1].epoch == epoch


def test_repair_start_rejects_signer_with_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    package = mesh.coordinator.public_key_package()

    with pytest.raises(RepairFailed, match="has a signing share"):
        mesh.call(2, "repair_start", "session-0001", (1, 3), package)


def test_repair_help_rejects_signer_without_share(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)
    request = RepairRequest("session-0001", 1, (2, 3), bytes(32), "0" * 64)

    with pytest.raises(SignerNotReady):
        mesh.call(2, "repair_help", request)


def test_repair_help_rejects_request_not_listing_helper(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)
    package = mesh.coordinator.public_key_package()
    request = mesh.call(2, "repair_start", "session-0001", (1, 3), package)
    other = RepairRequest(request.session_id, 2, (1, 3), request.box_public_key, "0" * 64)

    with pytest.raises(SessionMismatch, match="public key package"):
        mesh.call(1, "repair_help", other)


def test_repair_deltas_rejects_call_before_help(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(SessionOutOfOrder):
        mesh.call(1, "repair_deltas", {})


def test_repair_deltas_rejects_other_session(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)
    package = mesh.coordinator.public_key_package()
    request = mesh.call(2, "repair_start", "session-0001", (1, 3), package)
    mesh.call(1, "repair_help", request)
    other = RepairRequest(
        "session-0002", 2, (1, 3), request.box_public_key, request.public_key_package_digest
    )
    foreign = mesh.call(3, "repair_help", other)

    with pytest.raises(SessionMismatch, match="session-0002"):
        mesh.call(1, "repair_deltas", {3: foreign})


def test_repair_finish_rejects_call_before_start(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)

    with pytest.raises(SessionOutOfOrder):
        mesh.call(2, "repair_finish", {}, {})


def test_escrow_create_rejects_signer_without_share(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)

    with pytest.raises(SignerNotReady):
        mesh.call(2, "escrow_create", "escrow-0001", _guardian_keys(), 2)


def test_escrow_create_rejects_key_that_is_no_point(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    keys = (*_guardian_keys(2), b"\x04" + bytes(64))

    with pytest.raises(EscrowBundleInvalid, match="guardian 3"):
        mesh.call(1, "escrow_create", "escrow-0001", keys, 2)


def test_escrow_restore_start_rejects_signer_with_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    with pytest.raises(EscrowBundleInvalid, match="has a signing share"):
        mesh.call(1, "escrow_restore_start", "session-0001")


def test_escrow_restore_rejects_call_before_start(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)
    bundle = mesh.call(1, "escrow_create", "escrow-0001", _guardian_keys(), 2)
    package = mesh.coordinator.public_key_package()

    with pytest.raises(SessionOutOfOrder):
        mesh.call(2, "escrow_restore", bundle, package, bytes(32), {})


def test_escrow_restore_rejects_bundle_of_other_signer(tmp_path: Path) -> None:
    mesh = _mesh_without_share_2(tmp_path)
    bundle = mesh.call(1, "escrow_create", "escrow-0001", _guardian_keys(), 2)
    package = mesh.coordinator.public_key_package()
    mesh.call(2, "escrow_restore_start", "session-0001")

    with pytest.raises(EscrowBundleInvalid, match="of signer 1"):
        mesh.call(2, "escrow_restore", bundle, package, bytes(32), {})


def _run_refresh_steps(mesh: LocalMesh, session_id: str) -> str:
    """Run refresh steps 1 to 3 on every signer directly and return the new package digest."""
    from actors.lifecycle.records import public_key_package_digest

    identifiers = sorted(mesh.signers)
    announcements = {i: mesh.call(i, "refresh_part1", session_id) for i in identifiers}
    sealed = {
        i: mesh.call(i, "refresh_part2", {j: a for j, a in announcements.items() if j != i})
        for i in identifiers
    }
    packages = {
        i: mesh.call(i, "refresh_part3", {j: sealed[j][i] for j in identifiers if j != i})
        for i in identifiers
    }
    digests = {public_key_package_digest(p) for p in packages.values()}
    assert len(digests) == 1
    return digests.pop()
