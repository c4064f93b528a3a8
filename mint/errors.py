"""Reason codes and errors of the mint service.

A reason code is a stable, public string: the CLI, dashboards and runbooks match on it, so a
code may be added but never renamed or reused. Each reason has one HTTP status, kept in
``STATUS_BY_REASON``, which is the only place where mint errors meet HTTP.
"""

from __future__ import annotations

from enum import StrEnum


class MintReason(StrEnum):
    """Stable reason codes returned when the mint service rejects a request."""

    REQUEST_INVALID = "request_invalid"
    TTL_OUT_OF_RANGE = "ttl_out_of_range"
    USER_UNKNOWN = "user_unknown"
    CHALLENGE_UNKNOWN = "challenge_unknown"
    CHALLENGE_EXPIRED = "challenge_expired"
    CHALLENGE_USED = "challenge_used"
    CHALLENGE_MISMATCH = "challenge_mismatch"
    CREDENTIAL_UNKNOWN = "credential_unknown"
    CREDENTIAL_EXISTS = "credential_exists"
    CREDENTIAL_CLONED = "credential_cloned"
    ATTESTATION_INVALID = "attestation_invalid"
    ATTESTATION_UNTRUSTED = "attestation_untrusted"
    ASSERTION_INVALID = "assertion_invalid"
    ORIGIN_MISMATCH = "origin_mismatch"
    RP_ID_MISMATCH = "rp_id_mismatch"
    USER_PRESENCE_MISSING = "user_presence_missing"
    USER_VERIFICATION_MISSING = "user_verification_missing"
    BACKUP_FLAGS_INVALID = "backup_flags_invalid"
    SIGNING_FAILED = "signing_failed"
    AUDIT_FAILED = "audit_failed"
    INTERNAL_ERROR = "internal_error"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    RATE_LIMITED = "rate_limited"
    BREAKER_OPEN = "breaker_open"
    GLOBAL_BREAKER_OPEN = "global_breaker_open"
    POLICY_DENIED = "policy_denied"
    POLICY_UNAVAILABLE = "policy_unavailable"
    BREAKGLASS_DISABLED = "breakglass_disabled"
    BREAKGLASS_REQUEST_INVALID = "breakglass_request_invalid"
    BREAKGLASS_UNKNOWN = "breakglass_unknown"
    BREAKGLASS_NOT_REQUESTER = "breakglass_not_requester"
    BREAKGLASS_NOT_APPROVED = "breakglass_not_approved"
    BREAKGLASS_EXPIRED = "breakglass_expired"
    BREAKGLASS_ALREADY_GRANTED = "breakglass_already_granted"
    BREAKGLASS_DUPLICATE_APPROVAL = "breakglass_duplicate_approval"
    BREAKGLASS_SELF_APPROVAL = "breakglass_self_approval"
    BREAKGLASS_APPROVAL_INVALID = "breakglass_approval_invalid"
    BREAKGLASS_TTL_EXCEEDS_GRANT = "breakglass_ttl_exceeds_grant"
    GUARDIAN_UNKNOWN = "guardian_unknown"
    INVITATION_INVALID = "invitation_invalid"
    REQUEST_TOO_LARGE = "request_too_large"


STATUS_BY_REASON: dict[MintReason, int] = {
    MintReason.REQUEST_INVALID: 400,
    MintReason.TTL_OUT_OF_RANGE: 400,
    MintReason.USER_UNKNOWN: 404,
    MintReason.CHALLENGE_UNKNOWN: 400,
    MintReason.CHALLENGE_EXPIRED: 400,
    MintReason.CHALLENGE_USED: 409,
    MintReason.CHALLENGE_MISMATCH: 400,
    MintReason.CREDENTIAL_UNKNOWN: 401,
    MintReason.CREDENTIAL_EXISTS: 409,
    MintReason.CREDENTIAL_CLONED: 403,
    MintReason.ATTESTATION_INVALID: 400,
    MintReason.ATTESTATION_UNTRUSTED: 403,
    MintReason.ASSERTION_INVALID: 401,
    MintReason.ORIGIN_MISMATCH: 401,
    MintReason.RP_ID_MISMATCH: 401,
    MintReason.USER_PRESENCE_MISSING: 401,
    MintReason.USER_VERIFICATION_MISSING: 401,
    MintReason.BACKUP_FLAGS_INVALID: 401,
    MintReason.SIGNING_FAILED: 503,
    MintReason.AUDIT_FAILED: 503,
    MintReason.INTERNAL_ERROR: 500,
    MintReason.ROUTE_NOT_FOUND: 404,
    MintReason.METHOD_NOT_ALLOWED: 405,
    MintReason.RATE_LIMITED: 429,
    MintReason.BREAKER_OPEN: 429,
    MintReason.GLOBAL_BREAKER_OPEN: 429,
    MintReason.POLICY_DENIED: 403,
    MintReason.POLICY_UNAVAILABLE: 503,
    MintReason.BREAKGLASS_DISABLED: 403,
    MintReason.BREAKGLASS_REQUEST_INVALID: 400,
    MintReason.BREAKGLASS_UNKNOWN: 404,
    MintReason.BREAKGLASS_NOT_REQUESTER: 403,
    MintReason.BREAKGLASS_NOT_APPROVED: 403,
    MintReason.BREAKGLASS_EXPIRED: 403,
    MintReason.BREAKGLASS_ALREADY_GRANTED: 409,
    MintReason.BREAKGLASS_DUPLICATE_APPROVAL: 409,
    MintReason.BREAKGLASS_SELF_APPROVAL: 403,
    MintReason.BREAKGLASS_APPROVAL_INVALID: 403,
    MintReason.BREAKGLASS_TTL_EXCEEDS_GRANT: 400,
    MintReason.GUARDIAN_UNKNOWN: 403,
    MintReason.INVITATION_INVALID: 403,
    MintReason.REQUEST_TOO_LARGE: 413,
}


class MintError(Exception):
    """A mint, registration or assertion request was rejected.

    Attributes:
        reason: the stable code sent to the caller.
        detail: what failed and what to do about it. It is safe to show to the caller because
            no message in the mint puts a token, receipt, assertion, challenge or key in it.
        status: the HTTP status for ``reason``.
    """

    def __init__(self, reason: MintReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = STATUS_BY_REASON[reason]


class RequestInvalid(MintError):
    """The request's fields are malformed: bad syntax, bad base64url, wrong types."""


class ChallengeRejected(MintError):
    """The challenge is unknown, expired, already used, or bound to another request."""


class CredentialRejected(MintError):
    """The credential is unknown, already registered, or flagged as possibly cloned."""


class InvitationRejected(MintError):
    """The enrollment invitation is unknown, used, expired or issued for another user."""


class AttestationRejected(MintError):
    """The WebAuthn attestation of a new credential is invalid or not trusted."""


class AssertionRejected(MintError):
    """A WebAuthn check failed: origin, rpId, flags, signature or counter.

    Raised for assertions, and for the client data and flags of a registration.
    """


class Throttled(MintError):
    """A rate limit or circuit breaker rejected the request; retry after ``retry_after`` s."""

    def __init__(self, reason: MintReason, detail: str, retry_after: int) -> None:
        super().__init__(reason, detail)
        self.retry_after = max(1, retry_after)


class PolicyRejected(MintError):
    """The mint policy denied the request, or could not be asked (fail closed)."""


class ServiceUnavailable(MintError):
    """A backend (signer mesh, KMS, audit log) failed; the request may be retried."""
