"""CoordinatorCore without Ray: sign_token, naming bad signers, retries, restarted signers and
attestation reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mesh_unit_support import (
    SwitchableTransport,
    build_mesh,
    coordinator_for,
    development_provider,
    kid_of,
    token_claims,
)

from actors import coordinator as coordinator_module
from actors.attestation.binding import evidence_digest
from actors.coordinator import STATE_DOWN, STATE_EXCLUDED, STATE_UP, CoordinatorCore
from actors.errors import (
    AggregateSignatureInvalid,
    AssertionRejected,
    DkgError,
    DkgInconsistent,
    MessageRejected,
    MintFailed,
    NotEnoughSigners,
)
from actors.frost.ciphersuite import scalar_add, scalar_from_int
from actors.messages import SignatureReply
from authz.jose import b64url_decode


def _corrupt(reply: object) -> object:
    assert isinstance(reply, SignatureReply)
    share = dataclasses.replace(
        reply.share, value=scalar_add(reply.share.value, scalar_from_int(1))
    )
    return dataclasses.replace(reply, share=share)


def _report_for_other_mint(reply: object) -> object:
    assert isinstance(reply, SignatureReply)
    return dataclasses.replace(reply, evidence=development_provider().get_report(bytes(64)))


def _status_of(coordinator: CoordinatorCore, identifier: int) -> dict[str, object]:
    return next(s for s in coordinator.status() if s["identifier"] == identifier)


def _claims_of(signing_input: bytes) -> dict[str, object]:
    return json.loads(b64url_decode(signing_input.split(b".")[1].decode()))


def test_sign_token_produces_ed25519_signature(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()

    signed = mesh.sign_token()

    Ed25519PublicKey.from_public_bytes(group_key).verify(signed.signature, signed.signing_input)
    assert len(signed.signers) == 2


def test_sign_token_completes_signers_and_evidence(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    signed = mesh.sign_token()

    claims = _claims_of(signed.signing_input)
    last = [mesh.coordinator._reports.last(i).evidence for i in signed.signers]
    assert claims["ztm"]["signers"] == list(signed.signers)
    assert claims["ztm"]["evidence"] == signed.evidence
    assert signed.evidence == evidence_digest(last)


def test_sign_token_without_attestation_has_no_evidence(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)

    signed = mesh.sign_token()

    assert signed.evidence is None
    assert "evidence" not in _claims_of(signed.signing_input)["ztm"]
    assert _status_of(mesh.coordinator, 1)["attestation"] == "off"


def test_sign_token_names_bad_share_and_redoes_claims(tmp_path: Path) -> None:
    # Without attestation the share check is the only one that can catch the altered share.
    mesh = build_mesh(tmp_path, attested=False)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    group_key = mesh.coordinator.group_public_key()

    signed = mesh.sign_token()

    Ed25519PublicKey.from_public_bytes(group_key).verify(signed.signature, signed.signing_input)
    assert signed.signers == (2, 3)
    assert _claims_of(signed.signing_input)["ztm"]["signers"] == [2, 3]
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_EXCLUDED
    assert "invalid signature share" in str(_status_of(mesh.coordinator, 1)["last_error"])


def test_sign_token_excludes_signer_with_altered_share(tmp_path: Path) -> None:
    # The per-share report binds the share value, so an altered share fails the report check.
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    group_key = mesh.coordinator.group_public_key()

    signed = mesh.sign_token()

    Ed25519PublicKey.from_public_bytes(group_key).verify(signed.signature, signed.signing_input)
    assert signed.signers == (2, 3)
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_EXCLUDED
    assert "report_data_mismatch" in str(_status_of(mesh.coordinator, 1)["last_error"])


def test_sign_token_excludes_signer_with_bad_report(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _report_for_other_mint

    signed = mesh.sign_token()

    assert signed.signers == (2, 3)
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_EXCLUDED
    assert "report_data_mismatch" in str(_status_of(mesh.coordinator, 1)["last_error"])


def test_sign_token_excludes_signer_without_report(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 2)] = lambda reply: dataclasses.replace(reply, evidence=None)

    signed = mesh.sign_token()

    assert signed.signers == (1, 3)
    assert "sent no attestation report" in str(_status_of(mesh.coordinator, 2)["last_error"])
    assert _status_of(mesh.coordinator, 2)["state"] == STATE_EXCLUDED


def test_sign_token_retries_after_timeout(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 2)] = lambda _reply: TimeoutError("sign timed out after 5 s")

    signed = mesh.sign_token()

    assert signed.signers == (1, 3)
    assert _status_of(mesh.coordinator, 2)["state"] == STATE_DOWN
    assert "timed out" in str(_status_of(mesh.coordinator, 2)["last_error"])


def test_sign_token_rejects_when_too_many_bad_shares(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, attested=False)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    mesh.transport.rewrites[("sign", 3)] = _corrupt

    with pytest.raises(MintFailed, match="1 \\(invalid signature share") as caught:
        mesh.sign_token()

    assert sorted(caught.value.failures) == [1, 3]


def test_sign_token_names_every_bad_share_of_attempt(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=3, t=3, attested=False)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    mesh.transport.rewrites[("sign", 3)] = _corrupt

    with pytest.raises(MintFailed) as caught:
        mesh.sign_token()

    sign_calls = [entry for entry in mesh.transport.log if entry[0] == "sign"]
    assert len(sign_calls) == 1
    assert sorted(caught.value.failures) == [1, 3]


def test_sign_token_rejects_wrong_kid(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    claims = token_claims()
    calls_before = len(mesh.transport.log)

    with pytest.raises(MessageRejected, match="is not the thumbprint of the group key"):
        mesh.coordinator.sign_token(claims, "other-kid", mesh.authenticator.assert_claims(claims))
    assert len(mesh.transport.log) == calls_before


def test_sign_token_rejects_assertion_for_other_request(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    claims = token_claims()
    other = dataclasses.replace(claims, aud="payroll")
    kid = kid_of(mesh.coordinator.group_public_key())
    depths = [s["pool_depth"] for s in mesh.coordinator.status()]

    with pytest.raises(AssertionRejected, match="made for another request"):
        mesh.coordinator.sign_token(claims, kid, mesh.authenticator.assert_claims(other))
    assert [s["pool_depth"] for s in mesh.coordinator.status()] == depths


def test_sign_token_rejects_too_long_lifetime(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    with pytest.raises(MessageRejected, match="token lifetime"):
        mesh.sign_token(token_claims(ttl=7200))


def test_sign_token_retries_past_restarted_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    restarted = mesh.restart_signer(1)

    # Signer 1 is chosen first (deepest pool, lowest id) but its commitments are stale.
    signed = mesh.sign_token()

    assert signed.signers == (2, 3)
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_DOWN
    mesh.coordinator.refresh()
    mesh.coordinator.refill()
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP
    assert _status_of(mesh.coordinator, 1)["attestation"] == "verified"
    assert _status_of(mesh.coordinator, 1)["pool_depth"] == restarted.describe().pool_depth
    assert mesh.coordinator.group_public_key() == group_key


def test_refresh_drops_commitments_of_restarted_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    assert _status_of(mesh.coordinator, 1)["pool_depth"] > 0
    mesh.restart_signer(1)

    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 1)["pool_depth"] == 0
    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP


def test_status_shows_attestation_of_each_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    row = _status_of(mesh.coordinator, 3)

    assert row["attestation"] == "verified"
    assert row["policy_id"] == "ztmint-development"
    assert row["measurement"] == development_provider().settings.measurement.hex()[:16]
    assert row["verified_at"] is not None


def test_sign_token_uses_each_commitment_once(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)

    for n in range(6):
        mesh.sign_token(token_claims(jti=f"jti-{n}"))

    sent = [
        arguments[1].signing_package.commitment_for(i).hiding
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

    signed = mesh.sign_token()

    assert {domains[i] for i in signed.signers} == {"fd-a", "fd-b"}


def test_sign_token_rejects_without_enough_signers(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    for identifier in (2, 3):
        mesh.transport.signers.pop(identifier)
    mesh.coordinator.refresh()

    with pytest.raises(NotEnoughSigners, match="1 signers are up with commitments, 2 are needed"):
        mesh.sign_token()


def test_readmit_restores_excluded_signer(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 1)] = _corrupt
    mesh.sign_token()
    del mesh.transport.rewrites[("sign", 1)]

    mesh.coordinator.readmit(1)
    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 1)["state"] == STATE_UP


def test_refresh_excludes_signer_with_bad_startup_report(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.restart_signer(2)
    mesh.transport.rewrites[("attest", 2)] = lambda _evidence: development_provider().get_report(
        bytes(64)
    )

    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 2)["state"] == STATE_EXCLUDED
    assert _status_of(mesh.coordinator, 2)["attestation"] == "none"


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


def test_dkg_round1_rejects_unproven_box_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, run_dkg=False)
    mesh.transport.rewrites[("attest", 2)] = lambda _evidence: development_provider().get_report(
        bytes(64)
    )

    with pytest.raises(DkgError, match="signer 2 did not prove its X25519 key") as caught:
        mesh.coordinator.dkg_round1(2)

    assert caught.value.signer == 2


def test_refresh_loads_sealed_group_key(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    group_key = mesh.coordinator.group_public_key()
    for identifier in (1, 2, 3):
        mesh.restart_signer(identifier)
    fresh = coordinator_for(mesh, mesh.transport)

    fresh.refresh()

    assert fresh.group_public_key() == group_key


def test_refresh_rejects_signers_of_different_groups(tmp_path: Path) -> None:
    first = build_mesh(tmp_path / "first")
    second = build_mesh(tmp_path / "second")
    mixed = {1: first.signers[1], 2: second.signers[2], 3: second.signers[3]}
    coordinator = coordinator_for(first, SwitchableTransport(mixed))

    with pytest.raises(DkgInconsistent, match="report 2 different group keys"):
        coordinator.refresh()


def test_sign_token_rejects_invalid_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mesh = build_mesh(tmp_path)
    monkeypatch.setattr(coordinator_module, "aggregate", lambda *_args: bytes(64))

    with pytest.raises(AggregateSignatureInvalid, match="does not verify under the group key"):
        mesh.sign_token()


def test_refresh_marks_down_signer_whose_attest_fails(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.restart_signer(2)
    mesh.transport.rewrites[("attest", 2)] = lambda _evidence: TimeoutError("attest timed out")

    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 2)["state"] == STATE_DOWN
    assert "attest timed out" in str(_status_of(mesh.coordinator, 2)["last_error"])


def test_status_clears_error_when_signer_recovers(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    mesh.transport.rewrites[("sign", 2)] = lambda _reply: TimeoutError("sign timed out after 5 s")
    mesh.sign_token()
    assert "timed out" in str(_status_of(mesh.coordinator, 2)["last_error"])

    del mesh.transport.rewrites[("sign", 2)]
    mesh.coordinator.refresh()

    assert _status_of(mesh.coordinator, 2)["state"] == STATE_UP
    assert _status_of(mesh.coordinator, 2)["last_error"] is None
