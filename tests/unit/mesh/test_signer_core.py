"""SignerCore without Ray: key generation relay, the nonce pool, and the signing checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mesh_unit_support import build_mesh, share_store, token_message
from ray import cloudpickle

from actors import signer as signer_module
from actors.errors import (
    CommitmentMissing,
    DkgError,
    DkgPackageInvalid,
    MessageRejected,
    NonceUnavailable,
    SignerNotReady,
    StaleEpoch,
)
from actors.frost.aggregate import verify_signature_share
from actors.frost.round2 import make_signing_package
from actors.messages import SealedRound2Package, SignRequest
from actors.signer import SignerCore


def _request(mesh, identifiers, message=None):
    """Publish one commitment per signer in ``identifiers`` and build a request over them."""
    batches = {i: mesh.signers[i].publish_commitments(1) for i in identifiers}
    group_key = mesh.coordinator.group_public_key()
    package = make_signing_package(
        [batch.commitments[0] for batch in batches.values()],
        message if message is not None else token_message(group_key),
    )
    return {i: SignRequest(batch.epoch, package) for i, batch in batches.items()}


def test_dkg_through_relay_yields_one_group_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    keys = {i: s.describe().public_key_package.group_public_key for i, s in mesh.signers.items()}

    assert len(set(keys.values())) == 1
    assert mesh.coordinator.group_public_key() == keys[1]


def test_dkg_relay_sees_only_ciphertext(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext_shares: list[bytes] = []
    original_part2 = signer_module.dkg.part2

    def recording_part2(secret, round1_packages):
        result = original_part2(secret, round1_packages)
        plaintext_shares.extend(package.signing_share for package in result[1].values())
        return result

    monkeypatch.setattr(signer_module.dkg, "part2", recording_part2)
    mesh = build_mesh(tmp_path)
    # Serialise as Ray does on the wire: this is everything the relay could read.
    relayed = cloudpickle.dumps(mesh.transport.log)
    final_shares = [s._key_package.signing_share for s in mesh.signers.values()]

    assert len(plaintext_shares) == 6
    for share in plaintext_shares + final_shares:
        assert share not in relayed
    part2_results = [results for method, _, results in mesh.transport.log if method == "dkg_part2"]
    for results in part2_results:
        for packages in results.values():
            assert all(isinstance(p, SealedRound2Package) for p in packages.values())


def test_dkg_part3_rejects_package_for_another_signer(tmp_path: Path) -> None:
    signers = {i: SignerCore(i, share_store(tmp_path)) for i in (1, 2, 3)}
    announcements = {i: s.dkg_part1(3, 2) for i, s in signers.items()}
    sealed = {
        i: s.dkg_part2({j: a for j, a in announcements.items() if j != i})
        for i, s in signers.items()
    }
    # Signer 1's package for signer 2, relayed to signer 3 as if it were addressed there.
    misrouted = dataclasses.replace(sealed[1][2], recipient=3)

    with pytest.raises(DkgPackageInvalid, match="from signer 1 to signer 3 failed authentication"):
        signers[3].dkg_part3({1: misrouted, 2: sealed[2][3]})


def test_dkg_part1_rejects_signer_with_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    with pytest.raises(DkgError, match="already has a signing share"):
        mesh.signers[1].dkg_part1(3, 2)


def test_dkg_part3_rejects_call_before_part1(tmp_path: Path) -> None:
    signer = SignerCore(1, share_store(tmp_path))

    with pytest.raises(DkgError, match="dkg_part3 called before dkg_part1"):
        signer.dkg_part3({})


def test_sign_produces_share_that_verifies(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    public = mesh.coordinator.public_key_package()

    share = mesh.signers[1].sign(requests[1])

    verify_signature_share(
        share,
        public.verifying_shares[1],
        requests[1].signing_package,
        public.group_public_key,
    )
    assert share.identifier == 1


def test_sign_rejects_reused_nonce(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    mesh.signers[1].sign(requests[1])

    with pytest.raises(NonceUnavailable, match="used already or altered"):
        mesh.signers[1].sign(requests[1])


def test_sign_rejects_altered_commitment(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    package = requests[1].signing_package
    other = package.commitment_for(2)
    own = package.commitment_for(1)
    # Keep a valid group element but swap in signer 2's hiding commitment.
    altered_own = dataclasses.replace(own, hiding=other.hiding)
    altered = make_signing_package([altered_own, other], package.message)

    with pytest.raises(NonceUnavailable):
        mesh.signers[1].sign(SignRequest(requests[1].epoch, altered))


def test_sign_rejects_package_without_own_commitment(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (2, 3))

    with pytest.raises(CommitmentMissing, match="0 commitments of signer 1"):
        mesh.signers[1].sign(SignRequest(mesh.signers[1].epoch, requests[2].signing_package))


def test_sign_rejects_non_token_message(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2), message=b"transfer 100 EUR to mallory")

    with pytest.raises(MessageRejected, match="expected header.claims"):
        mesh.signers[1].sign(requests[1])


def test_sign_keeps_nonce_when_message_rejected(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    depth_before = mesh.signers[1].describe().pool_depth
    requests = _request(mesh, (1, 2), message=b"not a token")

    with pytest.raises(MessageRejected):
        mesh.signers[1].sign(requests[1])

    assert mesh.signers[1].describe().pool_depth == depth_before + 1


def test_sign_rejects_stale_epoch_after_restart(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    old_key = mesh.signers[1].describe().public_key_package.group_public_key

    restarted = mesh.restart_signer(1)

    assert restarted.describe().public_key_package.group_public_key == old_key
    assert restarted.describe().pool_depth == 0
    with pytest.raises(StaleEpoch, match="fetch fresh commitments"):
        restarted.sign(requests[1])


def test_sign_rejects_signer_without_share(tmp_path: Path) -> None:
    signer = SignerCore(1, share_store(tmp_path))

    with pytest.raises(SignerNotReady, match="run key generation first"):
        signer.publish_commitments(1)


def test_publish_commitments_caps_pool_size(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=True)
    capped = SignerCore(1, share_store(tmp_path), max_pool_size=3)

    batch = capped.publish_commitments(10)

    assert len(batch.commitments) == 3
    assert len(capped.publish_commitments(10).commitments) == 0
    assert mesh.signers[1].epoch != capped.epoch


def test_signer_repr_hides_secrets(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    signing_share = mesh.signers[1]._key_package.signing_share

    assert signing_share.hex() not in repr(mesh.signers[1])
    assert signing_share.hex() not in repr(mesh.signers[1]._key_package)
