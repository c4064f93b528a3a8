"""Unit tests of actors.lifecycle.breakglass with software authenticators.

Each guardian is a P-256 key from ``cryptography``. Its assertions are built from python-fido2's
``AuthenticatorData`` and ``CollectedClientData``, in the layout WebAuthn Level 3 defines for
every authenticator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pickle
from collections.abc import Mapping

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ES256
from fido2.webauthn import AuthenticatorData, CollectedClientData

from actors.lifecycle.breakglass import (
    AUDIT_EVENT,
    MAX_GRANT_AFTER_APPROVAL_SECONDS,
    Approval,
    BreakGlassEvaluator,
    BreakGlassRequest,
    GuardianCredential,
    new_request,
)
from actors.lifecycle.errors import (
    AlreadyGranted,
    ApprovalOutsideWindow,
    ApprovalsBelowThreshold,
    AssertionInvalid,
    AssertionSignatureInvalid,
    BreakGlassReason,
    BreakGlassRequestInvalid,
    ChallengeMismatch,
    DuplicateGuardian,
    DurationTooLong,
    OriginMismatch,
    RequestExpired,
    RpIdMismatch,
    UnknownGuardian,
    UserPresenceMissing,
    UserVerificationMissing,
)

RP_ID = "mint.example"
ORIGIN = "https://mint.example"
CREATED_AT = 1_800_000_000
UP_UV = AuthenticatorData.FLAG.UP | AuthenticatorData.FLAG.UV


@dataclasses.dataclass
class SoftwareGuardian:
    guardian_id: str
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey

    def credential(self) -> GuardianCredential:
        return GuardianCredential(
            self.guardian_id,
            self.credential_id,
            ES256.from_cryptography_key(self.private_key.public_key()),
        )

    def approve(
        self,
        challenge: bytes,
        received_at: int,
        *,
        flags: AuthenticatorData.FLAG = UP_UV,
        origin: str = ORIGIN,
        rp_id: str = RP_ID,
        client_type: str = CollectedClientData.TYPE.GET,
        signer: ec.EllipticCurvePrivateKey | None = None,
    ) -> Approval:
        client_data = CollectedClientData.create(
            type=client_type, challenge=challenge, origin=origin
        )
        auth_data = AuthenticatorData.create(hashlib.sha256(rp_id.encode()).digest(), flags, 7)
        key = signer or self.private_key
        signature = key.sign(bytes(auth_data) + client_data.hash, ec.ECDSA(hashes.SHA256()))
        return Approval(
            self.guardian_id,
            self.credential_id,
            bytes(auth_data),
            bytes(client_data),
            signature,
            received_at,
        )


@pytest.fixture(scope="module")
def guardians() -> list[SoftwareGuardian]:
    return [
        SoftwareGuardian(f"guardian-{i}", bytes([i]) * 16, ec.generate_private_key(ec.SECP256R1()))
        for i in range(1, 4)
    ]


@pytest.fixture(scope="module")
def credentials(guardians: list[SoftwareGuardian]) -> Mapping[str, GuardianCredential]:
    return {g.guardian_id: g.credential() for g in guardians}


def _request(**changes: object) -> BreakGlassRequest:
    fields: dict[str, object] = {
        "request_id": "bg-00000001",
        "requester": "alice@example.com",
        "reason": "billing outage, incident 42",
        "scopes": ("invoices:write",),
        "audience": "billing",
        "duration_seconds": 1800,
        "created_at": CREATED_AT,
        "nonce": bytes(range(32)),
    }
    fields.update(changes)
    return BreakGlassRequest(**fields)  # type: ignore[arg-type]


def _evaluator() -> BreakGlassEvaluator:
    return BreakGlassEvaluator(RP_ID, ORIGIN, guardian_threshold=2)


def test_evaluate_grants_with_two_guardians(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + 60)]
    approvals.append(guardians[2].approve(request.challenge(), CREATED_AT + 120))
    grant = _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 130)
    assert grant.guardians == ("guardian-1", "guardian-3")
    assert grant.granted_at == CREATED_AT + 120
    assert grant.expires_at == CREATED_AT + 1800


def test_grant_expiry_is_capped_one_hour_after_threshold(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request(duration_seconds=3600)
    approvals = [g.approve(request.challenge(), CREATED_AT + 10) for g in guardians[:2]]
    grant = _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 20)
    assert grant.expires_at == min(
        request.expires_at, CREATED_AT + 10 + MAX_GRANT_AFTER_APPROVAL_SECONDS
    )


def test_grant_audit_fields_name_event_and_level(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [g.approve(request.challenge(), CREATED_AT + 5) for g in guardians[:2]]
    fields = _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5).audit_fields()
    assert fields["event"] == AUDIT_EVENT
    assert fields["level"] == logging.getLevelName(logging.CRITICAL)
    assert fields["request_digest"] == request.digest().hex()


def test_evaluate_rejects_second_evaluation_of_granted_request(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [g.approve(request.challenge(), CREATED_AT + 5) for g in guardians[:2]]
    evaluator = _evaluator()
    evaluator.evaluate(request, approvals, credentials, CREATED_AT + 5)
    with pytest.raises(AlreadyGranted, match="never extended") as caught:
        evaluator.evaluate(request, approvals, credentials, CREATED_AT + 600)
    assert caught.value.reason == BreakGlassReason.ALREADY_GRANTED


def test_evaluator_rejects_request_granted_before_restart(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [g.approve(request.challenge(), CREATED_AT + 5) for g in guardians[:2]]
    evaluator = BreakGlassEvaluator(RP_ID, ORIGIN, 2, granted_request_ids=[request.request_id])
    with pytest.raises(AlreadyGranted):
        evaluator.evaluate(request, approvals, credentials, CREATED_AT + 5)


def test_evaluate_rejects_approvals_below_threshold(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + 5)]
    with pytest.raises(ApprovalsBelowThreshold, match="1 guardians") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.APPROVALS_BELOW_THRESHOLD


def test_evaluate_rejects_duplicate_guardian(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + t) for t in (5, 6)]
    with pytest.raises(DuplicateGuardian, match="more than once") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 6)
    assert caught.value.reason == BreakGlassReason.DUPLICATE_GUARDIAN


def test_evaluate_rejects_assertion_for_other_request(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    other = _request(scopes=("invoices:write", "ledger:write"))
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + 5)]
    approvals.append(guardians[1].approve(other.challenge(), CREATED_AT + 5))
    with pytest.raises(ChallengeMismatch, match="guardian-2") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.CHALLENGE_MISMATCH


def test_evaluate_rejects_expired_request(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [g.approve(request.challenge(), CREATED_AT + 5) for g in guardians[:2]]
    with pytest.raises(RequestExpired, match="file a new request") as caught:
        _evaluator().evaluate(request, approvals, credentials, request.expires_at)
    assert caught.value.reason == BreakGlassReason.REQUEST_EXPIRED


def test_evaluate_rejects_approval_after_window(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + 5)]
    approvals.append(guardians[1].approve(request.challenge(), CREATED_AT - 1))
    with pytest.raises(ApprovalOutsideWindow) as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.APPROVAL_OUTSIDE_WINDOW


def test_evaluate_rejects_missing_user_verification(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [guardians[0].approve(request.challenge(), CREATED_AT + 5)]
    approvals.append(
        guardians[1].approve(request.challenge(), CREATED_AT + 5, flags=AuthenticatorData.FLAG.UP)
    )
    with pytest.raises(UserVerificationMissing, match="lacks the UV flag") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.USER_VERIFICATION_MISSING


def test_evaluate_rejects_missing_user_presence(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approvals = [
        guardians[0].approve(request.challenge(), CREATED_AT + 5, flags=AuthenticatorData.FLAG.UV)
    ]
    with pytest.raises(UserPresenceMissing, match="lacks the UP flag") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.USER_PRESENCE_MISSING


def test_request_rejects_duration_above_one_hour() -> None:
    with pytest.raises(DurationTooLong, match="maximum is 3600 s") as caught:
        _request(duration_seconds=3601)
    assert caught.value.reason == BreakGlassReason.DURATION_TOO_LONG


def test_request_rejects_short_nonce() -> None:
    with pytest.raises(BreakGlassRequestInvalid, match="at least 16 random bytes") as caught:
        _request(nonce=b"short")
    assert caught.value.reason == BreakGlassReason.REQUEST_INVALID


def test_request_rejects_empty_scopes() -> None:
    with pytest.raises(BreakGlassRequestInvalid, match="scopes"):
        _request(scopes=())


def test_evaluate_rejects_unknown_guardian(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    stranger = SoftwareGuardian("mallory", b"\x09" * 16, ec.generate_private_key(ec.SECP256R1()))
    approvals = [stranger.approve(request.challenge(), CREATED_AT + 5)]
    with pytest.raises(UnknownGuardian, match="'mallory'") as caught:
        _evaluator().evaluate(request, approvals, credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.UNKNOWN_GUARDIAN


def test_evaluate_rejects_signature_of_other_key(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    forged = guardians[0].approve(
        request.challenge(), CREATED_AT + 5, signer=ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(AssertionSignatureInvalid, match="does not verify") as caught:
        _evaluator().evaluate(request, [forged], credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.SIGNATURE_INVALID


def test_evaluate_rejects_other_origin(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approval = guardians[0].approve(
        request.challenge(), CREATED_AT + 5, origin="https://evil.example"
    )
    with pytest.raises(OriginMismatch, match="evil.example") as caught:
        _evaluator().evaluate(request, [approval], credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.ORIGIN_MISMATCH


def test_evaluate_rejects_other_rp_id(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approval = guardians[0].approve(request.challenge(), CREATED_AT + 5, rp_id="evil.example")
    with pytest.raises(RpIdMismatch) as caught:
        _evaluator().evaluate(request, [approval], credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.RP_ID_MISMATCH


def test_evaluate_rejects_registration_client_data(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approval = guardians[0].approve(
        request.challenge(), CREATED_AT + 5, client_type=CollectedClientData.TYPE.CREATE
    )
    with pytest.raises(AssertionInvalid, match="expected 'webauthn.get'") as caught:
        _evaluator().evaluate(request, [approval], credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.ASSERTION_INVALID


def test_request_digest_changes_with_every_field() -> None:
    base = _request()
    variants = [
        _request(request_id="bg-00000002"),
        _request(requester="bob@example.com"),
        _request(reason="another reason"),
        _request(scopes=("invoices:read",)),
        _request(audience="ledger"),
        _request(duration_seconds=1799),
        _request(created_at=CREATED_AT + 1),
        _request(nonce=bytes(32)),
    ]
    for variant in variants:
        assert variant.digest() != base.digest(), variant


def test_new_request_draws_distinct_ids() -> None:
    first = new_request(
        requester="alice@example.com",
        reason="outage",
        scopes=["invoices:write"],
        audience="billing",
        duration_seconds=600,
        now=CREATED_AT,
    )
    second = dataclasses.replace(first)
    third = new_request(
        requester="alice@example.com",
        reason="outage",
        scopes=["invoices:write"],
        audience="billing",
        duration_seconds=600,
        now=CREATED_AT,
    )
    assert second.challenge() == first.challenge()
    assert third.request_id != first.request_id


def test_evaluator_rejects_threshold_of_one() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        BreakGlassEvaluator(RP_ID, ORIGIN, guardian_threshold=1)


def test_evaluate_rejects_unparseable_client_data(
    guardians: list[SoftwareGuardian], credentials: Mapping[str, GuardianCredential]
) -> None:
    request = _request()
    approval = guardians[0].approve(request.challenge(), CREATED_AT + 5)
    garbled = dataclasses.replace(approval, client_data_json=b"not json")
    with pytest.raises(AssertionInvalid, match="does not parse") as caught:
        _evaluator().evaluate(request, [garbled], credentials, CREATED_AT + 5)
    assert caught.value.reason == BreakGlassReason.ASSERTION_INVALID


def test_breakglass_rejected_survives_pickling() -> None:
    error = DuplicateGuardian("guardian-1 approved twice")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- bytes made by this test
    assert isinstance(copy, DuplicateGuardian)
    assert copy.reason == BreakGlassReason.DUPLICATE_GUARDIAN
