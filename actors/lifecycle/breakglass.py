"""Break-glass: a short emergency grant approved by t_g guardians with WebAuthn assertions.

A requester files a ``BreakGlassRequest`` (who, why, which scopes for which audience, for how
long, when, and a random nonce). Its canonical digest is SHA-256 over a canonical JSON form,
and the WebAuthn challenge each guardian signs is SHA-256(``CHALLENGE_DOMAIN`` || digest), so
an approval is bound to every field of the request and cannot be reused for another request or
confused with a mint assertion. ``BreakGlassEvaluator.evaluate`` checks the approvals as a
WebAuthn relying party does for an assertion (WebAuthn Level 3 section 7.2: type, challenge,
origin, rpIdHash, UP, UV, signature over authenticatorData || SHA-256(clientDataJSON)) and
returns a ``Grant`` once t_g distinct guardians approved.

A grant lasts until min(created_at + duration, threshold time + 60 minutes), where the
threshold time is when the t_g-th approval arrived. A grant is never extended: a second
evaluation of the same request id is rejected, and the requester files a new request.

The caller (the mint service) writes the grant's ``audit_fields()`` to the audit log and logs
them at CRITICAL (``AUDIT_LEVEL``). This module writes no log itself.

Security:
    Every approval must carry both UP and UV: a guardian's touch alone, without PIN or
    biometrics, does not approve. Any invalid approval rejects the whole evaluation rather than
    being skipped, so that an attempt to forge one is visible instead of silently outvoted.

Limitations:
    The evaluator remembers granted request ids in memory only. The mint service must keep
    them in its store (``granted_request_ids``) across restarts. Signature counters are not
    checked, because guardian assertions are rare and the counters live in the mint store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time
from fido2.cose import CoseKey
from fido2.webauthn import AuthenticatorData, CollectedClientData

from actors.lifecycle.channel import RandomSource
from actors.lifecycle.errors import (
    AlreadyGranted,
    ApprovalOutsideWindow,
    ApprovalsBelowThreshold,
    AssertionInvalid,
    AssertionSignatureInvalid,
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
from authz.jose import b64url_encode, json_dumps_compact

MAX_DURATION_SECONDS = 60 * 60
"""Maximum duration of a break-glass request, in seconds."""

MAX_GRANT_AFTER_APPROVAL_SECONDS = 60 * 60
"""Maximum lifetime of a grant after the approval that reached the threshold, in seconds."""

MIN_NONCE_SIZE = 16
CHALLENGE_DOMAIN = b"ztmint/breakglass/approval/v1\x00"
AUDIT_EVENT = "breakglass_granted"
AUDIT_LEVEL = logging.CRITICAL
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True)
class BreakGlassRequest:
    """An emergency request for a grant.

    Attributes:
        request_id: unique id, 8 to 64 of [A-Za-z0-9_-].
        requester: the subject the grant is for.
        reason: why, in words; recorded in the audit log.
        scopes: the requested scopes, at least one.
        audience: the service the grant is for.
        duration_seconds: requested lifetime, 1 to 3600 seconds.
        created_at: Unix time the request was filed.
        nonce: at least 16 random bytes, so two identical requests differ.

    Raises:
        BreakGlassRequestInvalid: a field is empty or malformed.
        DurationTooLong: ``duration_seconds`` is above 3600.
    """

    request_id: str
    requester: str
    reason: str
    scopes: tuple[str, ...]
    audience: str
    duration_seconds: int
    created_at: int
    nonce: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", tuple(self.scopes))
        if not isinstance(self.request_id, str) or not _REQUEST_ID_PATTERN.fullmatch(
            self.request_id
        ):
            raise BreakGlassRequestInvalid(
                f"request_id {self.request_id!r} is invalid: expected 8 to 64 of [A-Za-z0-9_-]"
            )
        for name in ("requester", "reason", "audience"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise BreakGlassRequestInvalid(f"break-glass request field {name} is empty")
        if not self.scopes or any(
            not isinstance(scope, str) or not scope or " " in scope for scope in self.scopes
        ):
            raise BreakGlassRequestInvalid(
                f"scopes {list(self.scopes)!r} are invalid: expected at least one non-empty "
                "scope without spaces"
            )
        if not _is_integer(self.duration_seconds) or self.duration_seconds < 1:
            raise BreakGlassRequestInvalid(
                f"duration_seconds {self.duration_seconds!r} is invalid: expected a positive "
                "integer"
            )
        if self.duration_seconds > MAX_DURATION_SECONDS:
            raise DurationTooLong(
                f"requested duration is {self.duration_seconds} s, the maximum is "
                f"{MAX_DURATION_SECONDS} s; ask for 60 minutes or less and file a new request "
                "when it runs out"
            )
        if not _is_integer(self.created_at) or self.created_at < 0:
            raise BreakGlassRequestInvalid(f"created_at {self.created_at!r} is not a Unix time")
        if not isinstance(self.nonce, bytes) or len(self.nonce) < MIN_NONCE_SIZE:
            raise BreakGlassRequestInvalid(
                f"request nonce must be at least {MIN_NONCE_SIZE} random bytes"
            )

    @property
    def expires_at(self) -> int:
        """The end of the request's validity window: created_at + duration_seconds."""
        return self.created_at + self.duration_seconds

    def canonical_json(self) -> bytes:
        """Return the canonical JSON form: fixed member order, no whitespace, UTF-8."""
        return json_dumps_compact(
            {
                "v": 1,
                "request_id": self.request_id,
                "requester": self.requester,
                "reason": self.reason,
                "scopes": list(self.scopes),
                "audience": self.audience,
                "duration_seconds": self.duration_seconds,
                "created_at": self.created_at,
                "nonce": b64url_encode(self.nonce),
            }
        )

    def digest(self) -> bytes:
        """Return SHA-256 of ``canonical_json()``."""
        return hashlib.sha256(self.canonical_json()).digest()

    def challenge(self) -> bytes:
        """Return the WebAuthn challenge guardians sign: SHA-256(CHALLENGE_DOMAIN || digest)."""
        return hashlib.sha256(CHALLENGE_DOMAIN + self.digest()).digest()


def new_request(
    *,
    requester: str,
    reason: str,
    scopes: Sequence[str],
    audience: str,
    duration_seconds: int,
    now: int,
    rng: RandomSource = os.urandom,
) -> BreakGlassRequest:
    """Build a request with a random id and nonce, created at ``now``."""
    return BreakGlassRequest(
        request_id=rng(16).hex(),
        requester=requester,
        reason=reason,
        scopes=tuple(scopes),
        audience=audience,
        duration_seconds=duration_seconds,
        created_at=now,
        nonce=rng(32),
    )


@dataclass(frozen=True)
class GuardianCredential:
    """A guardian's registered WebAuthn credential.

    Attributes:
        guardian_id: the guardian's name in the guardian set.
        credential_id: the WebAuthn credential id.
        public_key: the credential public key (COSE).
    """

    guardian_id: str
    credential_id: bytes
    public_key: CoseKey


@dataclass(frozen=True)
class Approval:
    """One guardian's assertion over a request's challenge.

    Attributes:
        guardian_id: the guardian that approved.
        credential_id: the credential that made the assertion.
        authenticator_data: raw authenticatorData.
        client_data_json: raw clientDataJSON.
        signature: the assertion signature over authenticatorData || SHA-256(clientDataJSON).
        received_at: Unix time the mint service received the assertion.
    """

    guardian_id: str
    credential_id: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    received_at: int


@dataclass(frozen=True)
class Grant:
    """An issued break-glass grant.

    Attributes:
        request: the approved request.
        guardians: the guardians whose approvals counted, sorted.
        granted_at: the threshold time, when the t_g-th approval arrived.
        expires_at: min(created_at + duration, granted_at + 60 minutes).
    """

    request: BreakGlassRequest
    guardians: tuple[str, ...]
    granted_at: int
    expires_at: int

    def audit_fields(self) -> dict[str, object]:
        """Return the audit event fields; log them at ``AUDIT_LEVEL`` (CRITICAL)."""
        return {
            "event": AUDIT_EVENT,
            "level": logging.getLevelName(AUDIT_LEVEL),
            "request_id": self.request.request_id,
            "request_digest": self.request.digest().hex(),
            "requester": self.request.requester,
            "reason": self.request.reason,
            "scopes": list(self.request.scopes),
            "audience": self.request.audience,
            "guardians": list(self.guardians),
            "created_at": self.request.created_at,
            "granted_at": self.granted_at,
            "expires_at": self.expires_at,
        }


class BreakGlassEvaluator:
    """Check guardian approvals of break-glass requests and issue each grant at most once.

    "At most once" holds per evaluator and across restarts only if the caller persists the
    granted ids and passes them back in ``granted_request_ids``.

    Args:
        rp_id: the WebAuthn RP ID guardians' credentials are registered for.
        origin: the exact origin the guardians' browsers or CLI report.
        guardian_threshold: t_g, distinct guardians needed (at least 2).
        granted_request_ids: ids already granted, loaded from the mint store.
    """

    def __init__(
        self,
        rp_id: str,
        origin: str,
        guardian_threshold: int,
        granted_request_ids: Iterable[str] = (),
    ) -> None:
        if guardian_threshold < 2:
            raise ValueError(
                f"guardian_threshold is {guardian_threshold}, expected at least 2 so that no "
                "single guardian can approve alone"
            )
        self._rp_id_hash = hashlib.sha256(rp_id.encode("utf-8")).digest()
        self._rp_id = rp_id
        self._origin = origin
        self._threshold = guardian_threshold
        self._granted = set(granted_request_ids)

    def evaluate(
        self,
        request: BreakGlassRequest,
        approvals: Sequence[Approval],
        guardian_credentials: Mapping[str, GuardianCredential],
        now: int,
    ) -> Grant:
        """Check every approval and issue the grant if t_g distinct guardians approved.

        Args:
            request: the request being approved.
            approvals: the guardians' approvals, in any order.
            guardian_credentials: the registered guardian credentials, by guardian id.
            now: the current Unix time.

        Returns:
            The grant; its request id is recorded so it is never granted again.

        Raises:
            AlreadyGranted: this request id was granted before.
            RequestExpired: ``now`` is before ``created_at`` or not before ``expires_at``.
            DuplicateGuardian: a guardian approved twice.
            UnknownGuardian: an approval names an unregistered guardian or credential.
            ApprovalOutsideWindow: an approval arrived outside the request's window or after
                ``now``.
            AssertionInvalid, ChallengeMismatch, OriginMismatch, RpIdMismatch,
                UserPresenceMissing, UserVerificationMissing, AssertionSignatureInvalid: an
                assertion failed the named WebAuthn check.
            ApprovalsBelowThreshold: fewer than t_g guardians approved.
        """
        if request.request_id in self._granted:
            raise AlreadyGranted(
                f"request {request.request_id} was already granted; a grant is never "
                "extended, so file a new request"
            )
        if not request.created_at <= now < request.expires_at:
            raise RequestExpired(
                f"request {request.request_id} is valid from {request.created_at} until "
                f"{request.expires_at}, evaluated at {now}; file a new request"
            )

        seen: set[str] = set()
        for approval in approvals:
            if approval.guardian_id in seen:
                raise DuplicateGuardian(
                    f"guardian {approval.guardian_id!r} approved request "
                    f"{request.request_id} more than once; each guardian counts once"
                )
            seen.add(approval.guardian_id)
            self._check_approval(request, approval, guardian_credentials, now)

        if len(seen) < self._threshold:
            raise ApprovalsBelowThreshold(
                f"request {request.request_id} has approvals from {len(seen)} guardians "
                f"({sorted(seen)}), {self._threshold} are needed; ask more guardians"
            )

        arrival = sorted(approval.received_at for approval in approvals)
        granted_at = arrival[self._threshold - 1]
        expires_at = min(request.expires_at, granted_at + MAX_GRANT_AFTER_APPROVAL_SECONDS)
        self._granted.add(request.request_id)
        return Grant(request, tuple(sorted(seen)), granted_at, expires_at)

    def _check_approval(
        self,
        request: BreakGlassRequest,
        approval: Approval,
        guardian_credentials: Mapping[str, GuardianCredential],
        now: int,
    ) -> None:
        credential = guardian_credentials.get(approval.guardian_id)
        if credential is None or not constant_time.bytes_eq(
            credential.credential_id, approval.credential_id
        ):
            raise UnknownGuardian(
                f"approval names guardian {approval.guardian_id!r} with a credential that is "
                "not registered for that guardian; register the guardian's key first"
            )
        if not request.created_at <= approval.received_at < request.expires_at or (
            approval.received_at > now
        ):
            raise ApprovalOutsideWindow(
                f"approval of guardian {approval.guardian_id!r} was received at "
                f"{approval.received_at}, outside the request window {request.created_at} to "
                f"{request.expires_at} (now {now})"
            )
        try:
            client_data = CollectedClientData(approval.client_data_json)
            auth_data = AuthenticatorData(approval.authenticator_data)
        except (ValueError, TypeError, KeyError) as exc:
            raise AssertionInvalid(
                f"approval of guardian {approval.guardian_id!r} has clientDataJSON or "
                f"authenticatorData that does not parse: {exc}"
            ) from exc
        self._check_client_data(request, approval.guardian_id, client_data)
        self._check_authenticator_data(approval.guardian_id, auth_data)
        try:
            credential.public_key.verify(
                approval.authenticator_data + client_data.hash, approval.signature
            )
        except (InvalidSignature, ValueError) as exc:
            raise AssertionSignatureInvalid(
                f"assertion signature of guardian {approval.guardian_id!r} does not verify "
                "under the guardian's registered credential key"
            ) from exc

    def _check_client_data(
        self, request: BreakGlassRequest, guardian_id: str, client_data: CollectedClientData
    ) -> None:
        if client_data.type != CollectedClientData.TYPE.GET:
            raise AssertionInvalid(
                f"clientDataJSON.type of guardian {guardian_id!r} is {client_data.type!r}, "
                "expected 'webauthn.get'"
            )
        if not constant_time.bytes_eq(client_data.challenge, request.challenge()):
            raise ChallengeMismatch(
                f"assertion of guardian {guardian_id!r} signs another challenge than the one "
                f"derived from request {request.request_id}; approve this exact request"
            )
        if client_data.origin != self._origin:
            raise OriginMismatch(
                f"assertion of guardian {guardian_id!r} is for origin {client_data.origin!r}, "
                f"expected {self._origin!r}"
            )

    def _check_authenticator_data(self, guardian_id: str, auth_data: AuthenticatorData) -> None:
        if not constant_time.bytes_eq(auth_data.rp_id_hash, self._rp_id_hash):
            raise RpIdMismatch(
                f"assertion of guardian {guardian_id!r} has an rpIdHash that is not SHA-256 of "
                f"{self._rp_id!r}"
            )
        if not auth_data.is_user_present():
            raise UserPresenceMissing(
                f"assertion of guardian {guardian_id!r} lacks the UP flag; touch the key"
            )
        if not auth_data.is_user_verified():
            raise UserVerificationMissing(
                f"assertion of guardian {guardian_id!r} lacks the UV flag; approvals need the "
                "authenticator's PIN or biometrics"
            )


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
