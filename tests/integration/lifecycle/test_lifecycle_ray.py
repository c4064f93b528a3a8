"""Share refresh, repair and guardian escrow on a real local Ray instance with a 2-of-3 mesh.

One Ray instance and one mesh serve the module; the tests run in file order and each leaves
every signer with a share. Repair and restore delete signer 2's sealed share and sealing key,
restart its actor, and rebuild it through the coordinator actor or the ``ztmint`` commands.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import ray
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from ray.exceptions import RayActorError

from actors import admin
from actors.caller_auth import CallTokenIssuer, load_or_create_coordinator_key
from actors.coordinator import CoordinatorCore, CoordinatorSettings
from actors.frost.aggregate import aggregate
from actors.frost.errors import InvalidSignatureShare
from actors.frost.round1 import commit
from actors.frost.round2 import make_signing_package, sign
from actors.lifecycle.records import record_key_package, record_public_key_package
from actors.mesh import start_mesh
from actors.messages import SignerInfo
from actors.report_verification import AttestationSettings, ReportVerifier, policy_for
from actors.sealing import FileSealingKeyProvider, ShareStore, unseal_share
from actors.signer import (
    CONFIDENTIAL_NODE_GROUP,
    FAULT_DOMAIN_LABEL,
    NAMESPACE,
    NODE_GROUP_LABEL,
    signer_actor_name,
)
from actors.transport import RaySignerTransport
from authz.formats import TokenClaims
from authz.jwk import okp_ed25519_jwk, thumbprint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mesh"))
from mesh_unit_support import SoftAuthenticator  # noqa: E402

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir: Path = tmp_path_factory.mktemp("lifecycle-state")
    context = ray.init(
        num_cpus=2,
        labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "fd-1"},
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
    )
    # No background refill, so each test checks only the effects of the step under test.
    settings = CoordinatorSettings(sign_timeout=20.0, refill_interval=3600.0)
    coordinator = start_mesh(state_dir, n=3, t=2, settings=settings)
    yield {
        "coordinator": coordinator,
        "settings": settings,
        "state_dir": state_dir,
        "address": context.address_info["address"],
        "saved": {},
    }
    ray.shutdown()


def _store(state_dir: Path) -> ShareStore:
    return ShareStore(state_dir, FileSealingKeyProvider(state_dir))


def _claims(jti: str) -> TokenClaims:
    return TokenClaims(
        iss="https://mint.example",
        sub="alice@example.com",
        aud="billing",
        scopes=("invoices:read",),
        iat=int(time.time()),
        ttl=900,
        jti=jti,
    )


def _sign(coordinator: Any, jti: str, remote: bool = True) -> Any:
    """Sign a token through the coordinator actor (or a local CoordinatorCore) and verify it."""
    claims = _claims(jti)
    assertion = SoftAuthenticator().assert_claims(claims)
    if remote:
        group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
        kid = thumbprint(okp_ed25519_jwk(group_key))
        call = coordinator.sign_token.remote(claims, kid, assertion)
        result = ray.get(call, timeout=CALL_TIMEOUT)
    else:
        group_key = coordinator.group_public_key()
        kid = thumbprint(okp_ed25519_jwk(group_key))
        result = coordinator.sign_token(claims, kid, assertion)
    Ed25519PublicKey.from_public_bytes(group_key).verify(result.signature, result.signing_input)
    return result


def _state(coordinator: Any, identifier: int) -> str:
    rows = ray.get(coordinator.status.remote(), timeout=CALL_TIMEOUT)
    return str(next(r for r in rows if r["identifier"] == identifier)["state"])


def _lose_signer_2(mesh: dict[str, Any]) -> None:
    """Delete signer 2's sealed share and sealing key, then restart its actor."""
    state_dir = mesh["state_dir"]
    _store(state_dir).path(2).unlink()
    (state_dir / "sealing-keys" / "signer-2.key").unlink()
    handle = ray.get_actor(signer_actor_name(2), namespace=NAMESPACE)
    before: SignerInfo = ray.get(handle.describe.remote(), timeout=CALL_TIMEOUT)
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + CALL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            info: SignerInfo = ray.get(handle.describe.remote(), timeout=CALL_TIMEOUT)
        except RayActorError:
            continue
        if info.epoch != before.epoch:
            assert info.public_key_package is None
            return
    raise AssertionError(f"signer 2 did not restart within {CALL_TIMEOUT} s")


def _pair_coordinator(mesh: dict[str, Any]) -> CoordinatorCore:
    """A coordinator in this driver over signers 1 and 2 only, with the mesh's caller key."""
    state_dir = mesh["state_dir"]
    handles = {i: ray.get_actor(signer_actor_name(i), namespace=NAMESPACE) for i in (1, 2)}
    policy = policy_for(AttestationSettings(), state_dir)
    assert policy is not None
    coordinator = CoordinatorCore(
        RaySignerTransport(handles),
        [1, 2],
        CallTokenIssuer(load_or_create_coordinator_key(state_dir)),
        mesh["settings"],
        reports=ReportVerifier(policy, lambda: datetime.now(UTC)),
    )
    coordinator.refresh()
    coordinator.refill()
    return coordinator


def test_refresh_keeps_group_key_and_signs(mesh: dict[str, Any]) -> None:
    coordinator, state_dir = mesh["coordinator"], mesh["state_dir"]
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
    mesh["saved"]["old_share_1"] = _store(state_dir).path(1).read_bytes()
    old_records = {i: _store(state_dir).load(i) for i in (1, 2, 3)}

    package, lines = ray.get(coordinator.run_refresh.remote("refresh-ray-0001"), timeout=120)

    assert package.group_public_key == group_key
    assert lines[-1].startswith("refresh step 4 of 4")
    for identifier, old in old_records.items():
        new = _store(state_dir).load(identifier)
        assert new is not None and old is not None
        assert new.signing_share != old.signing_share
    assert all(_state(coordinator, i) == "up" for i in (1, 2, 3))
    _sign(coordinator, "jti-after-refresh")


def test_old_share_file_no_longer_combines(mesh: dict[str, Any]) -> None:
    state_dir = mesh["state_dir"]
    sealing_key = FileSealingKeyProvider(state_dir).get_key(1)
    old_1 = unseal_share(mesh["saved"]["old_share_1"], sealing_key)
    new_2 = _store(state_dir).load(2)
    assert new_2 is not None

    key_packages = {1: record_key_package(old_1), 2: record_key_package(new_2)}
    rounds = {i: commit(kp) for i, kp in key_packages.items()}
    package = make_signing_package([c for _, c in rounds.values()], b"message")
    shares = {i: sign(package, rounds[i][0], kp) for i, kp in key_packages.items()}

    with pytest.raises(InvalidSignatureShare) as caught:
        aggregate(package, shares, record_public_key_package(new_2))
    assert caught.value.culprit == 1


def test_repair_rebuilds_lost_signer(mesh: dict[str, Any]) -> None:
    coordinator, state_dir = mesh["coordinator"], mesh["state_dir"]
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
    _lose_signer_2(mesh)
    progress: list[str] = []
    start_mesh(state_dir, n=3, t=2, progress=progress.append, settings=mesh["settings"])
    ray.get(coordinator.refresh.remote(), timeout=CALL_TIMEOUT)

    assert any("[2] have no sealed share" in line for line in progress)
    assert _state(coordinator, 2) == "needs_repair"
    assert _sign(coordinator, "jti-without-2").signers == (1, 3)

    _, lines = ray.get(coordinator.run_repair.remote("repair-ray-0001", 2, [1, 3]), timeout=120)

    assert lines[-1] == "repair step 3 of 3: signer 2 sealed its rebuilt share"
    assert _state(coordinator, 2) == "up"
    repaired = _store(state_dir).load(2)
    assert repaired is not None
    assert repaired.group_public_key == group_key
    assert _sign(_pair_coordinator(mesh), "jti-pair-1-2", remote=False).signers == (1, 2)


def test_escrow_and_restore_through_commands(mesh: dict[str, Any], tmp_path: Path) -> None:
    coordinator, state_dir = mesh["coordinator"], mesh["state_dir"]
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
    original = _store(state_dir).load(2)
    guardian_files = []
    for index in range(1, 6):
        private_key = ec.generate_private_key(ec.SECP256R1())
        private_path = tmp_path / f"guardian-{index}.key.pem"
        public_path = tmp_path / f"guardian-{index}.pub.pem"
        private_path.write_bytes(
            private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        )
        public_path.write_bytes(
            private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        guardian_files.append((private_path, public_path))
    address = mesh["address"]

    out = io.StringIO()
    escrow_args = argparse.Namespace(
        address=address,
        guardian_key=[public for _, public in guardian_files],
        threshold=3,
        out=tmp_path / "bundles",
    )
    assert admin.run_escrow(escrow_args, out=out) == 0
    mesh["saved"]["bundles"] = tmp_path / "bundles"
    bundle_paths = sorted((tmp_path / "bundles").glob("*-signer-2.json"))
    assert len(bundle_paths) == 1
    assert original is not None
    assert original.signing_share not in bundle_paths[0].read_bytes()

    _lose_signer_2(mesh)
    ray.get(coordinator.refresh.remote(), timeout=CALL_TIMEOUT)
    piece_paths = []
    for index in (2, 4, 5):
        piece_path = tmp_path / f"piece-{index}.json"
        decrypt_args = argparse.Namespace(
            key=guardian_files[index - 1][0], bundle=bundle_paths[0], index=index, out=piece_path
        )
        assert admin.run_guardian_decrypt(decrypt_args, out=io.StringIO()) == 0
        piece_paths.append(piece_path)
    restore_args = argparse.Namespace(
        address=address, signer=2, bundle=bundle_paths[0], piece=piece_paths
    )

    assert admin.run_restore(restore_args, out=out) == 0
    assert f"restored under group key {group_key.hex()}" in out.getvalue()
    assert _store(state_dir).load(2) == original
    assert _state(coordinator, 2) == "up"
    assert _sign(_pair_coordinator(mesh), "jti-restored", remote=False).signers == (1, 2)


def test_restore_command_names_signer_with_share(
    mesh: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = next(mesh["saved"]["bundles"].glob("*-signer-1.json"))
    args = argparse.Namespace(address=mesh["address"], signer=1, bundle=bundle, piece=[])

    code = admin.run_restore(args, out=io.StringIO())

    errors = capsys.readouterr().err
    assert code == 1
    assert "signer 1 has a signing share" in errors
