"""CoordinatorCore without Ray: signing, naming bad signers, retries and restarted signers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mesh_unit_support import SwitchableTransport, build_mesh, token_message

from actors import coordinator as coordinator_module
from actors.coordinator import STATE_DOWN, STATE_EXCLUDED, STATE_UP, CoordinatorCore
from actors.errors import (
    AggregateSignatureInvalid,
    DkgError,
    DkgInconsistent,
    MessageRejected,
    MintFailed,
    NotEnoughSigners,
)
from actors.frost.ciphersuite import scalar_add, scalar_from_int
from actors.frost.round2 import SignatureShare


def _corrupt(share: object) -> object:
    assert isinstance(share, SignatureShare)
    return dataclasses.replace(share, value=scalar_add(share.value, scalar_from_int(1)))


def _status_of(coordinator: CoordinatorCore, identifier: int) -> dict[str, object]:
    return next(s for s in coordinator.status() if s["identifier"] == identifier)


def test_coordinator_sign_produces_ed25519_signature(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    message = token_message(group_key)

    result = mesh.coordinator.sign(message)

    Ed25519PublicKey.from_public_bytes(group_key).verify(result.signature, message)
    assert len(result.signers) == 2


def test_coordinator_sign_names_bad_share_and_retries(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    group_key = mesh.coordinator.group_public_key()
    message = token_message(group_key)

    result = mesh.coordinator.sign(message)

    Ed25519PublicKey.from_public_bytes(group_key).verify(result.signature, message)
    assert result.signers == (2, 3)
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_EXCLUDED
    assert "invalid signature share" in str(_status_of(mesh.coordinator, 1)["last_error"])


def test_coordinator_sign_retries_after_timeout(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 2)] = lambda _share: TimeoutError("sign timed out after 5 s")

    result = mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))

    assert result.signers == (1, 3)
    assert _status_of(mesh.coordinator, 2)["state"] == STATE_DOWN
    assert "timed out" in str(_status_of(mesh.coordinator, 2)["last_error"])


def test_coordinator_sign_rejects_when_too_many_bad_shares(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    mesh.transport.rewrites[("sign", 3)] = _corrupt

    with pytest.raises(MintFailed, match="1 \\(invalid signature share") as caught:
        mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))

    assert sorted(caught.value.failures) == [1, 3]


def test_coordinator_sign_rejects_non_token_message(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    depths = [s["pool_depth"] for s in mesh.coordinator.status()]
    calls_before = len(mesh.transport.log)

    with pytest.raises(MessageRejected, match="expected header.claims"):
        mesh.coordinator.sign(b"arbitrary bytes")

    assert [s["pool_depth"] for s in mesh.coordinator.status()] == depths
    assert len(mesh.transport.log) == calls_before


def test_coordinator_sign_retries_past_restarted_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    restarted = mesh.restart_signer(1)

    # Signer 1 is chosen first (deepest pool, lowest id) but its commitments are stale.
    result = mesh.coordinator.sign(token_message(group_key))

    assert result.signers == (2, 3)
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_DOWN
    mesh.coordinator.refresh()
    mesh.coordinator.refill()
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP
    assert _status_of(mesh.coordinator, 1)["pool_depth"] == restarted.describe().pool_depth
    assert mesh.coordinator.group_public_key() == group_key


def test_coordinator_refresh_drops_commitments_of_restarted_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    assert _status_of(mesh.coordinator, 1)["pool_depth"] > 0
    mesh.restart_signer(1)

    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 1)["pool_depth"] == 0
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP


def test_coordinator_sign_uses_each_commitment_once(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()

    for _ in range(6):
        mesh.coordinator.sign(token_message(group_key))

    sent = [
        (arguments[0].signing_package.commitment_for(i).hiding)
        for method, calls, _ in mesh.transport.log
        if method == "sign"
        for i, arguments in calls.items()
    ]
    assert len(sent) == len(set(sent))


def test_coordinator_prefers_distinct_fault_domains(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=4, t=2)
    domains = {1: "fd-a", 2: "fd-a", 3: "fd-b", 4: "fd-b"}
    for identifier, domain in domains.items():
        mesh.coordinator._slots[identifier].fault_domain = domain

    result = mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))

    assert {domains[i] for i in result.signers} == {"fd-a", "fd-b"}


def test_coordinator_sign_rejects_without_enough_signers(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    for identifier in (2, 3):
        mesh.transport.signers.pop(identifier)
    mesh.coordinator.refresh()

    with pytest.raises(NotEnoughSigners, match="1 signers are up with commitments, 2 are needed"):
        mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))


def test_coordinator_readmit_restores_excluded_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))
    del mesh.transport.rewrites[("sign", 1)]

    mesh.coordinator.readmit(1)
    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP


def test_dkg_round2_rejects_call_before_round1(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=False)

    with pytest.raises(DkgError, match="out of order"):
        mesh.coordinator.dkg_round2()


def test_dkg_round1_rejects_existing_group_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    with pytest.raises(DkgError, match="a group key exists already"):
        mesh.coordinator.dkg_round1(2)


def test_dkg_round1_names_failing_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=False)
    mesh.transport.signers.pop(3)

    with pytest.raises(DkgError, match="signer 3 failed dkg_part1") as caught:
        mesh.coordinator.dkg_round1(2)

    assert caught.value.signer == 3


def test_coordinator_refresh_loads_sealed_group_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    for identifier in (1, 2, 3):
        mesh.restart_signer(identifier)
    fresh = CoordinatorCore(mesh.transport, [1, 2, 3])

    fresh.refresh()

    assert fresh.group_public_key() == group_key


def test_refresh_rejects_signers_of_different_groups(tmp_path: Path) -> None:
    first = build_mesh(tmp_path / "first")
    second = build_mesh(tmp_path / "second")
    mixed = {1: first.signers[1], 2: second.signers[2], 3: second.signers[3]}
    coordinator = CoordinatorCore(SwitchableTransport(mixed), [1, 2, 3])

    with pytest.raises(DkgInconsistent, match="report 2 different group keys"):
        coordinator.refresh()


def test_sign_rejects_invalid_aggregate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = build_mesh(tmp_path)
    monkeypatch.setattr(coordinator_module, "aggregate", lambda *_args: bytes(64))

    with pytest.raises(AggregateSignatureInvalid, match="does not verify under the group key"):
        mesh.coordinator.sign(token_message(mesh.coordinator.group_public_key()))
