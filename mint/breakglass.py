"""Break-glass in the mint: an emergency token approved by t_g guardians' assertions.

The pure rules live in ``actors.lifecycle.breakglass`` (the request and its canonical
digest, the guardians' challenge, ``BreakGlassEvaluator`` and the ``Grant``). This module is
the service around them, with storage, audit and the token signing of ``MintService``:

1. ``begin_request`` / ``file_request``: the requester proves who they are with an assertion
   over a challenge bound to the request fields (scopes, audience, duration, reason), and
   the mint stores a ``BreakGlassRequest`` (``breakglass_requested``).
2. ``approve``: a guardian (a user listed in ``ZTMINT_GUARDIANS``) makes an assertion with
   user verification over the request's derived challenge. The mint verifies it at once and
   stores it (``breakglass_approved``); a guardian counts once per request.
3. ``begin_mint`` / ``mint``: the requester makes an ordinary mint assertion for the
   request's scopes and audience. ``MintService.mint`` verifies it and calls ``_admit``
   instead of the guard's rate limit and mint policy. ``_admit`` re-checks every stored
   approval with ``BreakGlassEvaluator``, persists the grant (``breakglass_granted``, logged
   at CRITICAL) and caps the token at the grant's expiry. The ``token_minted`` record
   carries ``"breakglass": <request id>``.

A grant is issued at most once per request id, because the grants table is the persisted set
of granted ids and its insert is the single deciding statement. So a request yields one
token, never a second grant, and never a token that outlives the grant.

Security:
    Every approval needs UP and UV. A guardian cannot approve a request they filed. The
    token's scopes and audience are the request's and nothing else: the mint policy is
    skipped only for them. Checks that read state run before any write, so a rejected call
    changes nothing except the ``request_rejected`` audit record.

Limitations:
    The grant is persisted before the token is signed. If the signer mesh or the KMS then
    fails, the grant is used up without a token and the requester files a new request.
    Open circuit breakers still reject a break-glass mint, but the rate limit does not apply
    and a break-glass mint does not count towards the global breaker.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fido2 import cbor
from fido2.cose import CoseKey

from actors.assertion_check import derive_challenge
from actors.lifecycle import errors as lifecycle_errors
from actors.lifecycle.breakglass import (
    AUDIT_LEVEL,
    MAX_DURATION_SECONDS,
    Approval,
    BreakGlassEvaluator,
    BreakGlassRequest,
    Grant,
    GuardianCredential,
    new_request,
)
from authz.formats import MAX_TTL_SECONDS, MIN_TTL_SECONDS
from authz.jose import b64url_encode
from mint.audit import AuditError, AuditLog, canonical_json
from mint.breakglass_store import BreakGlassRecords
from mint.errors import MintError, MintReason, ServiceUnavailable
from mint.requests import TokenRequest, check_token_request, check_user
from mint.service import (
    CHALLENGE_TTL_SECONDS,
    ChallengeOptions,
    MintResult,
    MintService,
    consume_challenge,
    owned_credential,
    record_sign_count,
    usable_challenge,
)
from mint.store import Challenge, ChallengeKind, Credential, Store
from mint.webauthn import (
    RelyingParty,
    parse_authentication_response,
    request_options,
    verify_assertion,
)

log = logging.getLogger(__name__)

EVENT_REQUESTED = "breakglass_requested"
EVENT_APPROVED = "breakglass_approved"
EVENT_GRANTED = "breakglass_granted"
MAX_REASON_LENGTH = 1000
CHALLENGE_SALT_SIZE = 32
CHALLENGE_ID_SIZE = 16


class BreakGlassSettingsError(ValueError):
    """``ZTMINT_GUARDIANS`` or ``ZTMINT_GUARDIAN_THRESHOLD`` has an unusable value."""


@dataclass(frozen=True)
class BreakGlassSettings:
    """The guardians' user ids and the approval threshold t_g.

    Attributes:
        guardians: user ids of the guardians (``ZTMINT_GUARDIANS``, comma-separated); empty
            turns break-glass off.
        threshold: t_g, the distinct guardians that must approve (``ZTMINT_GUARDIAN_THRESHOLD``,
            default 2, at least 2 and at most the number of guardians).
    """

    guardians: tuple[str, ...] = ()
    threshold: int = 2

    def __post_init__(self) -> None:
        if self.threshold < 2:
            raise BreakGlassSettingsError(
                f"ZTMINT_GUARDIAN_THRESHOLD is {self.threshold}; expected at least 2 so that "
                "no single guardian can approve alone"
            )
        if len(set(self.guardians)) != len(self.guardians):
            raise BreakGlassSettingsError("ZTMINT_GUARDIANS lists a guardian more than once")
        if self.guardians and self.threshold > len(self.guardians):
            raise BreakGlassSettingsError(
                f"ZTMINT_GUARDIAN_THRESHOLD is {self.threshold} but ZTMINT_GUARDIANS names "
                f"only {len(self.guardians)} guardians; lower the threshold or add guardians"
            )

    @property
    def enabled(self) -> bool:
        """Whether guardians are configured."""
        return bool(self.guardians)


def breakglass_settings_from_env(
    env: Mapping[str, str], error: type[ValueError] = BreakGlassSettingsError
) -> BreakGlassSettings:
    """Read ``ZTMINT_GUARDIANS`` and ``ZTMINT_GUARDIAN_THRESHOLD``; unset means off and 2.

    Raises:
        error: (``BreakGlassSettingsError`` unless given) naming the unusable variable.
    """
    names = tuple(name.strip() for name in env.get("ZTMINT_GUARDIANS", "").split(",") if name)
    text = env.get("ZTMINT_GUARDIAN_THRESHOLD") or "2"
    try:
        for name in names:
            check_user(name)
    except MintError:
        raise error(
            f"ZTMINT_GUARDIANS is {env.get('ZTMINT_GUARDIANS')!r}; expected comma-separated "
            "user ids"
        ) from None
    try:
        threshold = int(text)
    except ValueError:
        raise error(f"ZTMINT_GUARDIAN_THRESHOLD is {text!r}; expected an integer") from None
    try:
        return BreakGlassSettings(names, threshold)
    except BreakGlassSettingsError as exc:
        raise error(str(exc)) from exc


class BreakGlassRejected(MintError):
    """A break-glass request, approval or mint was rejected; ``reason`` names why."""


# Each rejection of the pure evaluator, re-checking stored approvals at mint time.
_REASON_BY_LIFECYCLE_REASON = {
    lifecycle_errors.BreakGlassReason.REQUEST_INVALID: MintReason.BREAKGLASS_REQUEST_INVALID,
    lifecycle_errors.BreakGlassReason.DURATION_TOO_LONG: MintReason.BREAKGLASS_REQUEST_INVALID,
    lifecycle_errors.BreakGlassReason.REQUEST_EXPIRED: MintReason.BREAKGLASS_EXPIRED,
    lifecycle_errors.BreakGlassReason.ALREADY_GRANTED: MintReason.BREAKGLASS_ALREADY_GRANTED,
    lifecycle_errors.BreakGlassReason.APPROVALS_BELOW_THRESHOLD: (
        MintReason.BREAKGLASS_NOT_APPROVED
    ),
    lifecycle_errors.BreakGlassReason.DUPLICATE_GUARDIAN: MintReason.BREAKGLASS_DUPLICATE_APPROVAL,
    lifecycle_errors.BreakGlassReason.UNKNOWN_GUARDIAN: MintReason.GUARDIAN_UNKNOWN,
    lifecycle_errors.BreakGlassReason.APPROVAL_OUTSIDE_WINDOW: MintReason.BREAKGLASS_EXPIRED,
}


@dataclass(frozen=True)
class FiledRequest:
    """A stored request and the WebAuthn request options guardians sign to approve it.

    Attributes:
        request: the stored request.
        guardian_options: ``PublicKeyCredentialRequestOptions`` over ``request.challenge()``,
            listing every enrolled guardian credential and requiring user verification.
        approvals: guardians that approved so far, in the order they approved.
        granted: whether the request was granted (and so used up).
        threshold: t_g.
    """

    request: BreakGlassRequest
    guardian_options: dict[str, Any]
    approvals: tuple[str, ...]
    granted: bool
    threshold: int

    def to_json(self) -> dict[str, Any]:
        """Return the HTTP form: the request's fields, approvals and the guardians' options."""
        request = self.request
        return {
            "request_id": request.request_id,
            "requester": request.requester,
            "reason": request.reason,
            "scopes": list(request.scopes),
            "audience": request.audience,
            "duration_seconds": request.duration_seconds,
            "created_at": request.created_at,
            "expires_at": request.expires_at,
            "request_digest": request.digest().hex(),
            "approvals": list(self.approvals),
            "threshold": self.threshold,
            "granted": self.granted,
            "publicKey": self.guardian_options,
        }


class BreakGlassService:
    """Filing, approving and minting break-glass requests (see the module docstring).

    Args:
        mint: the mint service that verifies the requester's mint assertion and signs.
        store: credentials and challenges (the same store as ``mint``).
        records: the break-glass tables of ``store``.
        audit: the audit log of ``mint``.
        relying_party: the WebAuthn relying party of ``mint``.
        settings: the guardians and t_g.
        clock: current time in seconds since the epoch.
        random_bytes: cryptographically secure random bytes.
    """

    def __init__(
        self,
        *,
        mint: MintService,
        store: Store,
        records: BreakGlassRecords,
        audit: AuditLog,
        relying_party: RelyingParty,
        settings: BreakGlassSettings,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
    ) -> None:
        self._mint = mint
        self._store = store
        self._records = records
        self._audit = audit
        self._rp = relying_party
        # Approvals need UV whatever the mint's own user verification setting is.
        self._guardian_rp = dataclasses.replace(relying_party, user_verification="required")
        self._settings = settings
        self._clock = clock
        self._random_bytes = random_bytes

    @property
    def settings(self) -> BreakGlassSettings:
        """The guardians and t_g."""
        return self._settings

    def begin_request(
        self, user: object, scopes: object, audience: object, duration: object, reason: object
    ) -> ChallengeOptions:
        """Issue the requester's challenge, bound to these exact request fields."""
        fields: dict[str, Any] = {"operation": "breakglass_assert"}
        with self._recording_rejections(fields):
            self._require_enabled()
            user = check_user(user)
            fields["sub"] = user
            token_request, duration, reason = _check_request_fields(
                scopes, audience, duration, reason
            )
            credentials = self._store.credentials_for_user(user)
            if not credentials:
                raise BreakGlassRejected(
                    MintReason.USER_UNKNOWN,
                    f"user {user!r} has no credential; run `ztmint enroll` first",
                )
            digest = _filing_digest(user, token_request, duration, reason)
            challenge = Challenge(
                challenge_id=b64url_encode(self._random_bytes(CHALLENGE_ID_SIZE)),
                kind=ChallengeKind.ASSERTION,
                user_id=user,
                challenge=self._random_bytes(CHALLENGE_SALT_SIZE),
                request_digest=digest,
                expires_at=int(self._clock()) + CHALLENGE_TTL_SECONDS,
            )
            self._store.add_challenge(challenge)
            options = request_options(
                self._rp, derive_challenge(challenge.challenge, digest), credentials
            )
            return ChallengeOptions(challenge.challenge_id, options, challenge.expires_at)

    def file_request(
        self,
        challenge_id: object,
        scopes: object,
        audience: object,
        duration: object,
        reason: object,
        assertion: Mapping[str, Any],
    ) -> FiledRequest:
        """Verify the requester's assertion, then store and announce the request.

        Raises:
            BreakGlassRejected: the fields are invalid or break-glass is off.
            MintError: the challenge or the assertion failed, with the reason of
                ``MintService.mint``'s checks.
        """
        fields: dict[str, Any] = {"operation": "breakglass_request"}
        with self._recording_rejections(fields):
            self._require_enabled()
            token_request, duration, reason = _check_request_fields(
                scopes, audience, duration, reason
            )
            response = parse_authentication_response(assertion)
            challenge = usable_challenge(
                self._store, challenge_id, ChallengeKind.ASSERTION, int(self._clock())
            )
            fields["sub"] = challenge.user_id
            digest = _filing_digest(challenge.user_id, token_request, duration, reason)
            if not hmac.compare_digest(challenge.request_digest, digest):
                raise BreakGlassRejected(
                    MintReason.CHALLENGE_MISMATCH,
                    "scopes, audience, duration_seconds or reason differ from the "
                    "/breakglass/assert request; send exactly the values the challenge was "
                    "issued for",
                )
            credential = owned_credential(self._store, response.raw_id, challenge.user_id)
            expected = derive_challenge(challenge.challenge, digest)
            verified = verify_assertion(self._rp, response, expected, credential)

            now = int(self._clock())
            consume_challenge(self._store, challenge.challenge_id, ChallengeKind.ASSERTION, now)
            record_sign_count(self._store, credential, verified.sign_count, verified.backup_state)
            request = new_request(
                requester=challenge.user_id,
                reason=reason,
                scopes=token_request.scopes,
                audience=token_request.audience,
                duration_seconds=duration,
                now=now,
                rng=self._random_bytes,
            )
            self._records.add_request(request)
            fields["request_id"] = request.request_id
            self._append_audit(EVENT_REQUESTED, _request_audit_fields(request))
            log.warning(
                "event=%s request_id=%s sub=%s aud=%s scopes=%s duration_seconds=%d",
                EVENT_REQUESTED,
                request.request_id,
                request.requester,
                request.audience,
                " ".join(request.scopes),
                request.duration_seconds,
            )
            return self._filed(request)

    def describe(self, request_id: object) -> FiledRequest:
        """Return a stored request with its approvals and the guardians' WebAuthn options."""
        fields: dict[str, Any] = {"operation": "breakglass_describe"}
        with self._recording_rejections(fields):
            self._require_enabled()
            return self._filed(self._known_request(request_id, fields))

    def approve(
        self, request_id: object, guardian: object, assertion: Mapping[str, Any]
    ) -> FiledRequest:
        """Verify a guardian's assertion over the request's challenge and store it.

        Raises:
            BreakGlassRejected: ``guardian_unknown``, ``breakglass_unknown``,
                ``breakglass_self_approval``, ``breakglass_expired``,
                ``breakglass_already_granted`` or ``breakglass_duplicate_approval``.
            MintError: the assertion failed a WebAuthn check (its own reason code).
        """
        fields: dict[str, Any] = {"operation": "breakglass_approve"}
        with self._recording_rejections(fields):
            self._require_enabled()
            guardian = check_user(guardian)
            fields["sub"] = guardian
            response = parse_authentication_response(assertion)
            request = self._known_request(request_id, fields)
            if guardian not in self._settings.guardians:
                raise BreakGlassRejected(
                    MintReason.GUARDIAN_UNKNOWN,
                    f"user {guardian!r} is not a guardian; guardians are listed in "
                    "ZTMINT_GUARDIANS",
                )
            if guardian == request.requester:
                raise BreakGlassRejected(
                    MintReason.BREAKGLASS_SELF_APPROVAL,
                    f"guardian {guardian!r} filed request {request.request_id} and cannot "
                    "approve it; ask other guardians",
                )
            now = int(self._clock())
            self._check_open(request, now)
            approved = {
                approval.guardian_id for approval in self._records.approvals(request.request_id)
            }
            if guardian in approved:
                raise _duplicate_approval(guardian, request)
            credential = self._guardian_credential(guardian, response.raw_id)
            verified = verify_assertion(
                self._guardian_rp, response, request.challenge(), credential
            )

            record_sign_count(self._store, credential, verified.sign_count, verified.backup_state)
            approval = Approval(
                guardian_id=guardian,
                credential_id=credential.credential_id,
                authenticator_data=bytes(response.response.authenticator_data),
                client_data_json=bytes(response.response.client_data),
                signature=bytes(response.response.signature),
                received_at=now,
            )
            if not self._records.add_approval(request.request_id, approval):
                raise _duplicate_approval(guardian, request)
            filed = self._filed(request)
            self._append_audit(
                EVENT_APPROVED,
                {
                    "request_id": request.request_id,
                    "guardian": guardian,
                    "credential_id": b64url_encode(credential.credential_id),
                    "approvals": len(filed.approvals),
                    "threshold": self._settings.threshold,
                },
            )
            log.warning(
                "event=%s request_id=%s guardian=%s approvals=%d threshold=%d",
                EVENT_APPROVED,
                request.request_id,
                guardian,
                len(filed.approvals),
                self._settings.threshold,
            )
            return filed

    def begin_mint(
        self, request_id: object, user: object, ttl_seconds: object
    ) -> tuple[ChallengeOptions, int]:
        """Issue the requester's mint challenge for the request's scopes and audience.

        ``ttl_seconds`` None picks the longest lifetime that still ends before the request
        expires if the mint follows within the challenge's lifetime.

        Returns:
            The challenge and the token lifetime it is bound to.

        Raises:
            BreakGlassRejected: the request is unknown, not the user's, not approved by t_g
                guardians yet, expired, used up, or the lifetime outlives it.
        """
        fields: dict[str, Any] = {"operation": "breakglass_mint_assert"}
        with self._recording_rejections(fields):
            self._require_enabled()
            user = check_user(user)
            fields["sub"] = user
            request = self._known_request(request_id, fields)
            now = int(self._clock())
            if ttl_seconds is None:
                remaining = request.expires_at - now - CHALLENGE_TTL_SECONDS
                ttl_seconds = max(MIN_TTL_SECONDS, min(MAX_TTL_SECONDS, remaining))
            token_request = self._mintable(request, user, ttl_seconds, now)
        started = self._mint.begin_assertion(
            user, list(token_request.scopes), token_request.audience, token_request.ttl_seconds
        )
        return started, token_request.ttl_seconds

    def mint(
        self,
        request_id: object,
        challenge_id: object,
        ttl_seconds: object,
        assertion: Mapping[str, Any],
    ) -> MintResult:
        """Grant the request and mint its one token with the requester's assertion.

        The checks of ``begin_mint`` run first without writing anything. Then
        ``MintService.mint`` verifies the assertion and calls the grant check in place of
        the rate limit and the mint policy.
        """
        fields: dict[str, Any] = {"operation": "breakglass_mint"}
        with self._recording_rejections(fields):
            self._require_enabled()
            request = self._known_request(request_id, fields)
            challenge = None
            if isinstance(challenge_id, str):
                challenge = self._store.get_challenge(challenge_id)
            # An unknown challenge is rejected by MintService.mint with its own reason.
            user = challenge.user_id if challenge is not None else request.requester
            token_request = self._mintable(request, user, ttl_seconds, int(self._clock()))

        def admit(sub: str, minted: TokenRequest, now: int) -> Mapping[str, Any]:
            self._mintable(request, sub, minted.ttl_seconds, now)
            self._grant(request, now)
            return {"breakglass": request.request_id}

        return self._mint.mint(
            challenge_id,
            list(token_request.scopes),
            token_request.audience,
            token_request.ttl_seconds,
            assertion,
            admission=admit,
        )

    def _mintable(
        self, request: BreakGlassRequest, user: str, ttl_seconds: object, now: int
    ) -> TokenRequest:
        """Check, without writing, that ``user`` may mint the request now for this lifetime."""
        if user != request.requester:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_NOT_REQUESTER,
                f"request {request.request_id} was filed by {request.requester!r}; only the "
                "requester can mint with it",
            )
        self._check_open(request, now)
        if request.expires_at - now < MIN_TTL_SECONDS:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_EXPIRED,
                f"request {request.request_id} expires in {request.expires_at - now} s, less "
                f"than the shortest token lifetime of {MIN_TTL_SECONDS} s; file a new request",
            )
        approvals = {
            approval.guardian_id for approval in self._records.approvals(request.request_id)
        }
        if len(approvals) < self._settings.threshold:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_NOT_APPROVED,
                f"request {request.request_id} has approvals from {len(approvals)} guardians "
                f"and needs {self._settings.threshold}; ask more guardians to run "
                f"`ztmint breakglass approve {request.request_id}`",
            )
        token_request = check_token_request(list(request.scopes), request.audience, ttl_seconds)
        if now + token_request.ttl_seconds > request.expires_at:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_TTL_EXCEEDS_GRANT,
                f"a token of {token_request.ttl_seconds} s would outlive request "
                f"{request.request_id}, which expires in {request.expires_at - now} s; ask "
                "for a shorter ttl_seconds",
            )
        return token_request

    def _grant(self, request: BreakGlassRequest, now: int) -> Grant:
        """Evaluate the stored approvals, persist the grant once, and record it loudly."""
        credentials = {
            guardian: GuardianCredential(
                guardian, credential.credential_id, _cose_key(credential.public_key_cose)
            )
            for guardian in self._settings.guardians
            for credential in self._store.credentials_for_user(guardian)[:1]
        }
        granted = []
        if self._records.get_grant(request.request_id) is not None:
            granted.append(request.request_id)

        evaluator = BreakGlassEvaluator(
            self._rp.rp_id, self._rp.origin, self._settings.threshold, granted
        )
        try:
            grant = evaluator.evaluate(
                request, self._records.approvals(request.request_id), credentials, now
            )
        except lifecycle_errors.BreakGlassRejected as exc:
            reason = _REASON_BY_LIFECYCLE_REASON.get(
                exc.reason, MintReason.BREAKGLASS_APPROVAL_INVALID
            )
            raise BreakGlassRejected(reason, str(exc)) from exc
        if not self._records.add_grant(grant):
            raise _already_granted(request)

        audit_fields = grant.audit_fields()
        audit_fields.pop("event")
        self._append_audit(EVENT_GRANTED, audit_fields)
        log.log(
            AUDIT_LEVEL,
            "event=%s request_id=%s sub=%s aud=%s scopes=%s guardians=%s expires_at=%d",
            EVENT_GRANTED,
            request.request_id,
            request.requester,
            request.audience,
            " ".join(request.scopes),
            ",".join(grant.guardians),
            grant.expires_at,
        )
        return grant

    def _check_open(self, request: BreakGlassRequest, now: int) -> None:
        if self._records.get_grant(request.request_id) is not None:
            raise _already_granted(request)
        if not request.created_at <= now < request.expires_at:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_EXPIRED,
                f"request {request.request_id} was open from {request.created_at} until "
                f"{request.expires_at} and it is now {now}; file a new request",
            )

    def _known_request(self, request_id: object, fields: dict[str, Any]) -> BreakGlassRequest:
        request = None
        if isinstance(request_id, str) and len(request_id) <= 64:
            request = self._records.get_request(request_id)
        if request is None:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_UNKNOWN,
                "break-glass request id is unknown; check the id printed by "
                "`ztmint breakglass request`",
            )
        fields["request_id"] = request.request_id
        return request

    def _guardian_credential(self, guardian: str, credential_id: bytes) -> Credential:
        credential = self._store.get_credential(credential_id)
        if credential is None or credential.user_id != guardian:
            raise BreakGlassRejected(
                MintReason.GUARDIAN_UNKNOWN,
                f"the assertion's credential is not enrolled for guardian {guardian!r}; the "
                "guardian enrolls with `ztmint enroll` first",
            )
        if credential.flagged_cloned:
            raise BreakGlassRejected(
                MintReason.CREDENTIAL_CLONED,
                "credential is flagged as possibly cloned; enroll a new authenticator",
            )
        return credential

    def _filed(self, request: BreakGlassRequest) -> FiledRequest:
        guardian_credentials = [
            credential
            for guardian in self._settings.guardians
            for credential in self._store.credentials_for_user(guardian)
        ]
        options = request_options(self._guardian_rp, request.challenge(), guardian_credentials)
        approvals = tuple(
            approval.guardian_id for approval in self._records.approvals(request.request_id)
        )
        granted = self._records.get_grant(request.request_id) is not None
        return FiledRequest(request, options, approvals, granted, self._settings.threshold)

    def _require_enabled(self) -> None:
        if not self._settings.enabled:
            raise BreakGlassRejected(
                MintReason.BREAKGLASS_DISABLED,
                "break-glass is off on this mint; set ZTMINT_GUARDIANS to the guardians' user "
                "ids to turn it on",
            )

    def _append_audit(self, event: str, fields: Mapping[str, Any]) -> None:
        try:
            self._audit.append(event, fields)
        except (AuditError, OSError) as exc:
            log.error("event=audit_append_failed audit_event=%s error=%s", event, exc)
            raise ServiceUnavailable(
                MintReason.AUDIT_FAILED,
                "the audit log could not be written; retry after the log is repaired",
            ) from exc

    def _recording_rejections(self, fields: dict[str, Any]) -> _RecordingRejections:
        return _RecordingRejections(self._mint, fields)


class _RecordingRejections:
    """Append a ``request_rejected`` audit record and log every ``MintError`` raised inside."""

    def __init__(self, mint: MintService, fields: dict[str, Any]) -> None:
        self._mint = mint
        self._fields = fields

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if not isinstance(exc, MintError):
            return
        if exc.reason is not MintReason.AUDIT_FAILED:
            self._mint.record_rejection({**self._fields, "reason": exc.reason.value})
        log.info(
            "event=request_rejected operation=%s sub=%s request_id=%s reason=%s detail=%s",
            self._fields.get("operation"),
            self._fields.get("sub"),
            self._fields.get("request_id"),
            exc.reason.value,
            exc.detail,
        )


def _check_request_fields(
    scopes: object, audience: object, duration: object, reason: object
) -> tuple[TokenRequest, int, str]:
    """Check the request fields; the TTL slot of the returned request is the minimum TTL."""
    token_request = check_token_request(scopes, audience, MIN_TTL_SECONDS)
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise BreakGlassRejected(
            MintReason.BREAKGLASS_REQUEST_INVALID, "duration_seconds must be an integer"
        )
    if not MIN_TTL_SECONDS <= duration <= MAX_DURATION_SECONDS:
        raise BreakGlassRejected(
            MintReason.BREAKGLASS_REQUEST_INVALID,
            f"duration_seconds is {duration}; expected {MIN_TTL_SECONDS} to "
            f"{MAX_DURATION_SECONDS} (5 to 60 minutes)",
        )
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise BreakGlassRejected(
            MintReason.BREAKGLASS_REQUEST_INVALID,
            f"reason must be 1 to {MAX_REASON_LENGTH} characters saying why the emergency "
            "access is needed",
        )
    return token_request, duration, reason


def _filing_digest(user: str, request: TokenRequest, duration: int, reason: str) -> bytes:
    """Return the digest a filing challenge binds; its key differs from every mint digest."""
    body = {
        "breakglass_request": {
            "sub": user,
            "scope": list(request.scopes),
            "aud": request.audience,
            "duration": duration,
            "reason": reason,
        }
    }
    return hashlib.sha256(canonical_json(body)).digest()


def _request_audit_fields(request: BreakGlassRequest) -> dict[str, Any]:
    return {
        "request_id": request.request_id,
        "request_digest": request.digest().hex(),
        "sub": request.requester,
        "reason": request.reason,
        "scopes": list(request.scopes),
        "aud": request.audience,
        "duration_seconds": request.duration_seconds,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
    }


def _cose_key(public_key_cose: bytes) -> CoseKey:
    return CoseKey.parse(cbor.decode(public_key_cose))


def _duplicate_approval(guardian: str, request: BreakGlassRequest) -> BreakGlassRejected:
    return BreakGlassRejected(
        MintReason.BREAKGLASS_DUPLICATE_APPROVAL,
        f"guardian {guardian!r} already approved request {request.request_id}; each guardian "
        "counts once, so ask another guardian",
    )


def _already_granted(request: BreakGlassRequest) -> BreakGlassRejected:
    return BreakGlassRejected(
        MintReason.BREAKGLASS_ALREADY_GRANTED,
        f"request {request.request_id} was already granted and used; a grant is never "
        "extended or repeated, so file a new request",
    )
