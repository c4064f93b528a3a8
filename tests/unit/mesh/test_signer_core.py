"""SignerCore without Ray: key generation relay, the nonce pool, and the signing checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mesh_unit_support import (
    FakeClock,
    LocalMesh,
    build_mesh,
    make_signer,
    report_verifier,
    token_claims,
    token_message,
)
from ray import cloudpickle

from actors import signer as signer_module
from actors.errors import (
    AssertionRejected,
    CallerRejected,
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
from actors.report_verification import mint_report_data
from authz.formats import TokenClaims


def _request(
    mesh: LocalMesh,
    identifiers: tuple[int, ...],
    message: bytes | None = None,
    claims: TokenClaims | None = None,
) -> dict[int, SignRequest]:
    """Publish one commitment per signer in ``identifiers`` and build a request over them."""
    batches = {i: mesh.call(i, "publish_commitments", 1) for i in identifiers}
    group_key = mesh.coordinator.group_public_key()
    if message is None:
        message = token_message(group_key, signers=identifiers)
    package = make_signing_package([batch.commitments[0] for batch in batches.values()], message)
    assertion = mesh.authenticator.assert_claims(claims or token_claims())
    return {i: SignRequest(batch.epoch, package, assertion) for i, batch in batches.items()}


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
    mesh = build_mesh(tmp_path, run_dkg=False)
    announcements = {i: mesh.call(i, "dkg_part1", 3, 2) for i in mesh.signers}
    sealed = {
        i: mesh.call(i, "dkg_part2", {j: a for j, a in announcements.items() if j != i})
        for i in mesh.signers
    }
    # Signer 1's package for signer 2, relayed to signer 3 as if it were addressed there.
    misrouted = dataclasses.replace(sealed[1][2], recipient=3)

    with pytest.raises(DkgPackageInvalid, match="from signer 1 to signer 3 failed authentication"):
        mesh.call(3, "dkg_part3", {1: misrouted, 2: sealed[2][3]})


def test_dkg_part1_rejects_signer_with_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    with pytest.raises(DkgError, match="already has a signing share"):
        mesh.call(1, "dkg_part1", 3, 2)


def test_dkg_part3_rejects_call_before_part1(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=False)

    with pytest.raises(DkgError, match="dkg_part3 called before dkg_part1"):
        mesh.call(1, "dkg_part3", {})


def test_sign_produces_share_and_bound_report(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    public = mesh.coordinator.public_key_package()
    message = requests[1].signing_package.message

    reply = mesh.call(1, "sign", requests[1])

    package = requests[1].signing_package
    verify_signature_share(
        reply.share, public.verifying_shares[1], package, public.group_public_key
    )
    assert reply.share.identifier == 1
    report_data = mint_report_data(message, reply.share.value, 1)
    report_verifier().verify(1, reply.evidence, report_data)


def test_sign_without_attestation_returns_no_report(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    requests = _request(mesh, (1, 2))

    reply = mesh.call(1, "sign", requests[1])

    assert reply.evidence is None


def test_sign_rejects_reused_nonce(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    mesh.call(1, "sign", requests[1])

    with pytest.raises(NonceUnavailable, match="used already or altered"):
        mesh.call(1, "sign", requests[1])


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
        mesh.call(1, "sign", dataclasses.replace(requests[1], signing_package=altered))


def test_sign_rejects_claims_naming_other_signers(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (2, 3))
    request = SignRequest(mesh.signers[1].epoch, requests[2].signing_package, requests[2].assertion)
    message = token_message(mesh.coordinator.group_public_key(), signers=(1, 2, 3))
    request = dataclasses.replace(
        request, signing_package=dataclasses.replace(request.signing_package, message=message)
    )

    with pytest.raises(MessageRejected, match="expected the same set"):
        mesh.call(1, "sign", request)


def test_sign_rejects_missing_own_commitment(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (2, 3))
    request = SignRequest(mesh.signers[1].epoch, requests[2].signing_package, requests[2].assertion)

    with pytest.raises(CommitmentMissing, match="0 commitments of signer 1"):
        mesh.call(1, "sign", request)


def test_sign_rejects_non_token_message(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2), message=b"transfer 100 EUR to mallory")

    with pytest.raises(MessageRejected, match="expected header.claims"):
        mesh.call(1, "sign", requests[1])


def test_sign_keeps_nonce_when_message_rejected(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    depth_before = mesh.signers[1].describe().pool_depth
    requests = _request(mesh, (1, 2), message=b"not a token")

    with pytest.raises(MessageRejected):
        mesh.call(1, "sign", requests[1])

    assert mesh.signers[1].describe().pool_depth == depth_before + 1


def test_sign_rejects_assertion_for_other_request(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    other = dataclasses.replace(token_claims(), scopes=("invoices:write",))
    requests = _request(mesh, (1, 2), claims=other)
    depth_before = mesh.signers[1].describe().pool_depth

    with pytest.raises(AssertionRejected, match="assertion was made for another request"):
        mesh.call(1, "sign", requests[1])
    assert mesh.signers[1].describe().pool_depth == depth_before


def test_sign_rejects_call_without_coordinator_token(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    depth_before = mesh.signers[1].describe().pool_depth

    with pytest.raises(CallerRejected, match="without a coordinator token"):
        mesh.signers[1].sign("", requests[1])
    assert mesh.signers[1].describe().pool_depth == depth_before


def test_sign_rejects_token_of_other_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    rogue = dataclasses.replace(mesh, coordinator_key=Ed25519PrivateKey.generate())
    token = rogue.issue(1, "sign", requests[1])

    with pytest.raises(CallerRejected, match="InvalidSignatureError"):
        mesh.signers[1].sign(token, requests[1])


def test_sign_rejects_stale_epoch_after_restart(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    old_key = mesh.signers[1].describe().public_key_package.group_public_key

    restarted = mesh.restart_signer(1)

    assert restarted.describe().public_key_package.group_public_key == old_key
    assert restarted.describe().pool_depth == 0
    with pytest.raises(StaleEpoch, match="fetch fresh commitments"):
        mesh.call(1, "sign", requests[1])


def test_restart_between_publish_and_sign_never_reuses_nonce(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    requests = _request(mesh, (1, 2))
    old_epoch = requests[1].epoch

    restarted = mesh.restart_signer(1)
    fresh = mesh.call(1, "publish_commitments", 4)
    replayed = dataclasses.replace(requests[1], epoch=restarted.epoch)

    assert fresh.epoch != old_epoch
    assert requests[1].signing_package.commitment_for(1) not in fresh.commitments
    with pytest.raises(NonceUnavailable):
        mesh.call(1, "sign", replayed)


def test_sign_rejects_signer_without_share(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=False)

    with pytest.raises(SignerNotReady, match="run key generation first"):
        mesh.call(1, "publish_commitments", 1)


def test_publish_commitments_caps_pool_size(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    capped = make_signer(1, tmp_path, mesh.coordinator_key, FakeClock(), max_pool_size=3)
    mesh.signers[1] = capped

    batch = mesh.call(1, "publish_commitments", 10)

    assert len(batch.commitments) == 3
    assert len(mesh.call(1, "publish_commitments", 10).commitments) == 0


def test_attest_binds_verifying_share(tmp_path: Path) -> None:
    from actors.report_verification import startup_report_data

    mesh = build_mesh(tmp_path)
    challenge = b"\x01" * 32
    share = mesh.coordinator.public_key_package().verifying_shares[2]

    evidence = mesh.call(2, "attest", challenge)

    expected = startup_report_data(challenge, 2, mesh.signers[2].epoch, share, None)
    report_verifier().verify(2, evidence, expected)


def test_signer_repr_hides_secrets(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    signing_share = mesh.signers[1]._key_package.signing_share

    assert signing_share.hex() not in repr(mesh.signers[1])
    assert signing_share.hex() not in repr(mesh.signers[1]._key_package)
