"""Errors of the key lifecycle: refresh, repair, escrow and break-glass.

Every error takes one message argument and keeps its other fields as attributes, the same
shape as ``actors.errors.MeshError``, so that Ray can pickle an error raised in an actor and
rebuild it in the caller with ``signer`` still readable.

Break-glass errors carry a stable ``reason`` code (``BreakGlassReason``) that is safe to
return to a client. The message contains the detail for the server log.
"""

from __future__ import annotations

from enum import StrEnum


class LifecycleError(Exception):
    """Base class of every error raised by ``actors.lifecycle``.

    Attributes:
        signer: FROST identifier of the signer the error is about, when there is one.
    """

    def __init__(self, message: str, *, signer: int | None = None) -> None:
        super().__init__(message)
        self.signer = signer


class SessionOutOfOrder(LifecycleError):
    """A refresh or repair step was called before the step it depends on, or twice."""


class SessionMismatch(LifecycleError):
    """A message belongs to another refresh or repair session, or names other participants."""


class SealedPackageInvalid(LifecycleError):
    """A relayed encrypted package failed authentication or does not parse.

    ``signer`` names the sender the package claims to come from.
    """


class RefreshFailed(LifecycleError):
    """A refresh step failed its checks; the old signing shares stay in use."""


class RefreshNotPending(LifecycleError):
    """A refresh commit found no pending signing share to install, and no finished refresh."""


class RepairFailed(LifecycleError):
    """A repair could not rebuild a signing share that matches the published verifying share."""


class EscrowError(LifecycleError):
    """Base class of guardian escrow errors."""


class EscrowBundleInvalid(EscrowError):
    """An escrow bundle does not parse or is inconsistent with itself."""


class EscrowPieceInvalid(EscrowError):
    """An escrow piece failed decryption (wrong guardian key or altered) or its commitment check.

    Attributes:
        guardian_index: the guardian index of the piece, when it is known.
    """

    def __init__(
        self, message: str, *, guardian_index: int | None = None, signer: int | None = None
    ) -> None:
        super().__init__(message, signer=signer)
        self.guardian_index = guardian_index


class TooFewGuardians(EscrowError):
    """Fewer guardians than the escrow threshold supplied decrypted pieces."""


class RecoveredShareMismatch(EscrowError):
    """The share interpolated from the guardians' pieces does not match the verifying share."""


class BreakGlassReason(StrEnum):
    """Stable reason codes of a rejected break-glass request or approval."""

    REQUEST_INVALID = "breakglass_request_invalid"
    DURATION_TOO_LONG = "breakglass_duration_too_long"
    REQUEST_EXPIRED = "breakglass_request_expired"
    ALREADY_GRANTED = "breakglass_already_granted"
    APPROVALS_BELOW_THRESHOLD = "breakglass_approvals_below_threshold"
    DUPLICATE_GUARDIAN = "breakglass_duplicate_guardian"
    UNKNOWN_GUARDIAN = "breakglass_unknown_guardian"
    APPROVAL_OUTSIDE_WINDOW = "breakglass_approval_outside_window"
    ASSERTION_INVALID = "breakglass_assertion_invalid"
    CHALLENGE_MISMATCH = "breakglass_challenge_mismatch"
    ORIGIN_MISMATCH = "breakglass_origin_mismatch"
    RP_ID_MISMATCH = "breakglass_rp_id_mismatch"
    USER_PRESENCE_MISSING = "breakglass_user_presence_missing"
    USER_VERIFICATION_MISSING = "breakglass_user_verification_missing"
    SIGNATURE_INVALID = "breakglass_signature_invalid"


class BreakGlassRejected(LifecycleError):
    """A break-glass request or one of its approvals was rejected.

    Attributes:
        reason: the stable reason code, set by each subclass.
    """

    reason: BreakGlassReason = BreakGlassReason.REQUEST_INVALID


class BreakGlassRequestInvalid(BreakGlassRejected):
    """A request field is missing, empty or malformed."""

    reason = BreakGlassReason.REQUEST_INVALID


class DurationTooLong(BreakGlassRejected):
    """The requested duration is above the 60-minute maximum."""

    reason = BreakGlassReason.DURATION_TOO_LONG


class RequestExpired(BreakGlassRejected):
    """The request is evaluated outside its validity window."""

    reason = BreakGlassReason.REQUEST_EXPIRED


class AlreadyGranted(BreakGlassRejected):
    """A grant was already issued for this request id; a grant is never extended."""

    reason = BreakGlassReason.ALREADY_GRANTED


class ApprovalsBelowThreshold(BreakGlassRejected):
    """Fewer distinct guardians than the threshold approved the request."""

    reason = BreakGlassReason.APPROVALS_BELOW_THRESHOLD


class DuplicateGuardian(BreakGlassRejected):
    """One guardian sent more than one approval for the same request."""

    reason = BreakGlassReason.DUPLICATE_GUARDIAN


class UnknownGuardian(BreakGlassRejected):
    """An approval names a guardian or credential that is not registered."""

    reason = BreakGlassReason.UNKNOWN_GUARDIAN


class ApprovalOutsideWindow(BreakGlassRejected):
    """An approval was received before the request was created or after it expired."""

    reason = BreakGlassReason.APPROVAL_OUTSIDE_WINDOW


class AssertionInvalid(BreakGlassRejected):
    """An approval's client data or authenticator data does not parse or has the wrong type."""

    reason = BreakGlassReason.ASSERTION_INVALID


class ChallengeMismatch(BreakGlassRejected):
    """An assertion signs another challenge than the one derived from the request digest."""

    reason = BreakGlassReason.CHALLENGE_MISMATCH


class OriginMismatch(BreakGlassRejected):
    """An assertion was made for another origin."""

    reason = BreakGlassReason.ORIGIN_MISMATCH


class RpIdMismatch(BreakGlassRejected):
    """An assertion's rpIdHash is not the hash of the configured RP ID."""

    reason = BreakGlassReason.RP_ID_MISMATCH


class UserPresenceMissing(BreakGlassRejected):
    """An assertion lacks the UP (user present) flag."""

    reason = BreakGlassReason.USER_PRESENCE_MISSING


class UserVerificationMissing(BreakGlassRejected):
    """An assertion lacks the UV (user verified) flag."""

    reason = BreakGlassReason.USER_VERIFICATION_MISSING


class AssertionSignatureInvalid(BreakGlassRejected):
    """An assertion signature does not verify under the guardian's credential public key."""

    reason = BreakGlassReason.SIGNATURE_INVALID
