"""``MintService``: WebAuthn enrollment, one-time challenges, and minting tokens.

The service is the functional core of the mint HTTP API. Time and randomness are injected;
storage, the signer mesh, the KMS and the audit log are interfaces. The order of ``mint`` is
chosen so that bad input changes no state:

1. check the request syntax and parse the assertion (nothing read yet);
2. read the challenge and credential and verify the assertion (nothing written yet);
3. consume the challenge atomically, record the signature counter, and apply the rate
   limit, the mint policy and the global breaker (``MintGuard.admit``). Open breakers
   already reject in step 2, before the assertion is verified;
4. sign the token through the signer mesh and the receipt through the KMS;
5. append the audit record (fsync'd), sign a checkpoint of the log that includes it, and
   only then return the token with the record's inclusion proof.

Steps 1-2 reject without writing anything except the audit record of the rejection. Step 3
writes on purpose: a consumed challenge cannot be used again even if signing fails, and a
counter regression flags the credential as possibly cloned.

Enrollment needs an invitation (``mint.invitations``) unless the service runs with
``EnrollmentMode.OPEN``, which is for development only. The user row is created together with
the first credential at ``/register/complete``, so ``/register`` writes at most a challenge,
and expired challenges are deleted, a bounded batch at each new challenge.

Limitations:
    In open enrollment anyone who can reach ``/register`` can enroll a key for a user name
    that has no credential yet, and two concurrent first enrollments for the same name can
    both succeed. Rate limits, circuit breakers and the OPA mint policy apply only when a
    ``MintGuard`` with them is passed in (``mint.limits.build_guard``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from actors.assertion_check import AssertionEvidence, derive_challenge, request_digest
from authz.errors import AuthzError
from authz.formats import TokenClaims, assemble_compact, token_header, token_sha256
from authz.jose import b64url_decode, b64url_encode, json_loads_strict
from authz.jwk import PublishedKey, jwks_document, okp_ed25519_jwk, thumbprint
from mint.audit import AuditError, AuditLog, InclusionEvidence, canonical_json
from mint.errors import (
    AssertionRejected,
    ChallengeRejected,
    CredentialRejected,
    InvitationRejected,
    MintError,
    MintReason,
    ServiceUnavailable,
)
from mint.invitations import (
    DEFAULT_INVITATION_TTL_SECONDS,
    EnrollmentMode,
    create_invitation,
    find_usable_invitation,
)
from mint.kms import KmsError, ReceiptSigner, issue_receipt
from mint.limits import MintGuard
from mint.requests import TokenRequest, check_token_request, check_user
from mint.rotation import published_receipt_keys
from mint.signing import SigningError, TokenSigner
from mint.store import (
    Challenge,
    ChallengeKind,
    ConsumeStatus,
    Credential,
    CredentialExists,
    EnrollStatus,
    SignCountStatus,
    Store,
)
from mint.webauthn import (
    RelyingParty,
    creation_options,
    parse_authentication_response,
    parse_registration_response,
    request_options,
    verify_assertion,
    verify_registration,
)

if TYPE_CHECKING:
    from mint.breakglass import BreakGlassService

log = logging.getLogger(__name__)

CHALLENGE_TTL_SECONDS = 120
CHALLENGE_SIZE = 32
CHALLENGE_ID_SIZE = 16
USER_HANDLE_SIZE = 32
JTI_SIZE = 16
# Expired challenges stay this long so that a late retry still gets challenge_expired.
CHALLENGE_PURGE_GRACE_SECONDS = 600
CHALLENGE_PURGE_BATCH = 100

EVENT_CREDENTIAL_REGISTERED = "credential_registered"
EVENT_TOKEN_MINTED = "token_minted"  # noqa: S105 (an event name, not a secret)
EVENT_REQUEST_REJECTED = "request_rejected"
_INVITATION_INVALID_DETAIL = (
    "the invitation is unknown, used, expired or issued for another user; "
    "ask an operator for a new one (`ztmint users invite --user USER`)"
)
_USER_HANDLE_LABEL = b"ztmint user handle\x00"

Admission = Callable[[str, TokenRequest, int], Mapping[str, Any]]
"""Decides instead of ``MintGuard.admit`` whether ``(user, request, now)`` may be minted.

It raises a ``MintError`` to reject, or returns fields to add to the ``token_minted`` record.
"""


@dataclass(frozen=True)
class ChallengeOptions:
    """A new challenge: its id, the WebAuthn options JSON for the client, and its expiry."""

    challenge_id: str
    options: dict[str, Any]
    expires_at: int

    def __repr__(self) -> str:
        return f"ChallengeOptions(challenge_id={self.challenge_id!r}, <redacted>)"


@dataclass(frozen=True)
class RegistrationResult:
    """A stored credential: its owner, base64url id and how its attestation was trusted."""

    user: str
    credential_id: str
    attestation_type: str


@dataclass(frozen=True)
class MintResult:
    """A minted token with its receipt, audit record index and expiry time.

    Attributes:
        token: the compact JWS token.
        receipt: the compact JWS receipt, sent as ``x-kms-sig``.
        audit_index: index of the ``token_minted`` audit record.
        expires_at: the token's ``exp``.
        jti: the token's ``jti``.
        audit_evidence: the audit record, its inclusion proof and the signed checkpoint.
    """

    token: str
    receipt: str
    audit_index: int
    expires_at: int
    jti: str
    audit_evidence: InclusionEvidence | None = None

    def __repr__(self) -> str:
        return f"MintResult(jti={self.jti!r}, audit_index={self.audit_index}, <redacted>)"


class MintService:
    """Enrollment and token minting (see the module docstring for the order of checks).

    Args:
        store: users, credentials and challenges.
        signer: the threshold signer mesh.
        receipt_signer: the KMS key that co-signs every token.
        audit: the audit log; every mint and every rejection is appended to it.
        relying_party: the WebAuthn relying party settings.
        issuer: ``iss`` of tokens and receipts.
        clock: current time in seconds since the epoch.
        random_bytes: cryptographically secure random bytes.
        guard: rate limits, circuit breakers, the mint policy and metrics; default metrics
            only, with no limit or policy applied.
        enrollment: ``INVITATION`` (default) or ``OPEN`` (development only).
    """

    def __init__(
        self,
        *,
        store: Store,
        signer: TokenSigner,
        receipt_signer: ReceiptSigner,
        audit: AuditLog,
        relying_party: RelyingParty,
        issuer: str,
        clock: Callable[[], float],
        random_bytes: Callable[[int], bytes],
        guard: MintGuard | None = None,
        enrollment: EnrollmentMode = EnrollmentMode.INVITATION,
    ) -> None:
        self._store = store
        self.enrollment = enrollment
        self._signer = signer
        self._receipt_signer = receipt_signer
        self._audit = audit
        self._rp = relying_party
        self._issuer = issuer
        self._clock = clock
        self.clock = clock
        self._random_bytes = random_bytes
        self.guard = guard if guard is not None else MintGuard.unguarded()
        # Set by mint.app.service_from_settings; None serves no break-glass routes.
        self.breakglass: BreakGlassService | None = None

    @functools.cached_property
    def _group_key(self) -> PublishedKey:
        jwk = okp_ed25519_jwk(self._signer.group_public_key())
        return PublishedKey(kid=thumbprint(jwk), jwk=jwk)

    def jwks(self) -> dict[str, Any]:
        """Return the JWKS document with the group key and the published receipt keys."""
        return jwks_document([self._group_key], published_receipt_keys(self._receipt_signer))

    def invite(self, user: str, ttl_seconds: int = DEFAULT_INVITATION_TTL_SECONDS) -> str:
        """Create an enrollment invitation for ``user`` and return its one-time code.

        Raises:
            RequestInvalid: when ``user`` is not a valid user id.
            ValueError: when ``ttl_seconds`` is out of range (``mint.invitations``).
        """
        user = check_user(user)
        code = create_invitation(
            self._store, user, ttl_seconds, int(self._clock()), self._random_bytes
        )
        log.info("event=invitation_created sub=%s ttl_seconds=%d", user, ttl_seconds)
        return code

    def begin_registration(self, user: str, invitation: str | None = None) -> ChallengeOptions:
        """Issue a registration challenge and the WebAuthn creation options for ``user``.

        In invitation mode the invitation is checked first, and whether the user exists or
        is enrolled is not revealed. A user who already has a credential may enroll another
        one with an invitation, for example after a credential was flagged as cloned.
        """
        fields: dict[str, Any] = {"operation": "register"}
        with self._recording_rejections(fields):
            user = check_user(user)
            fields["sub"] = user
            now = int(self._clock())
            if self.enrollment is EnrollmentMode.INVITATION:
                found = None
                if isinstance(invitation, str):
                    found = find_usable_invitation(self._store, invitation, user, now)
                if found is None:
                    raise InvitationRejected(
                        MintReason.INVITATION_INVALID, _INVITATION_INVALID_DETAIL
                    )
                digest = found.code_sha256
            else:
                if self._store.credentials_for_user(user):
                    raise CredentialRejected(
                        MintReason.CREDENTIAL_EXISTS,
                        f"user {user!r} already has a credential; a second one needs an "
                        "invitation, which open enrollment does not use",
                    )
                digest = _user_digest(user)
            challenge = self._new_challenge(ChallengeKind.REGISTRATION, user, digest)
            existing = self._store.get_user(user)
            handle = existing.user_handle if existing else _new_user_handle(challenge.challenge)
            excluded = self._store.credentials_for_user(user) if existing else []
            options = creation_options(self._rp, user, handle, challenge.challenge, excluded)
            log.info(
                "event=registration_started sub=%s challenge_id=%s", user, challenge.challenge_id
            )
            return ChallengeOptions(challenge.challenge_id, options, challenge.expires_at)

    def complete_registration(
        self, challenge_id: str, credential: Mapping[str, Any]
    ) -> RegistrationResult:
        """Verify the WebAuthn attestation and store the credential.

        In invitation mode the invitation is used up in the transaction that stores the
        credential, so a registration that fails leaves it usable until it expires.
        """
        fields: dict[str, Any] = {"operation": "register_complete"}
        with self._recording_rejections(fields):
            response = parse_registration_response(credential)
            challenge = self._usable_challenge(challenge_id, ChallengeKind.REGISTRATION)
            user = challenge.user_id
            fields["sub"] = user
            invitation_sha256 = self._registration_invitation(challenge)
            registered = verify_registration(self._rp, response, challenge.challenge)
            if self._store.get_credential(registered.credential_id) is not None:
                raise CredentialRejected(
                    MintReason.CREDENTIAL_EXISTS, "this credential is already registered"
                )
            now = int(self._clock())
            self._consume(challenge_id, ChallengeKind.REGISTRATION, now)
            record = Credential(
                credential_id=registered.credential_id,
                user_id=user,
                public_key_cose=registered.public_key_cose,
                sign_count=registered.sign_count,
                aaguid=registered.aaguid,
                backup_eligible=registered.backup_eligible,
                backup_state=registered.backup_state,
                flagged_cloned=False,
                attestation_type=registered.attestation_type,
                created_at=now,
            )
            existing = self._store.get_user(user)
            handle = existing.user_handle if existing else _new_user_handle(challenge.challenge)
            try:
                status = self._store.enroll_credential(record, handle, invitation_sha256, now)
            except CredentialExists as exc:
                raise CredentialRejected(MintReason.CREDENTIAL_EXISTS, str(exc)) from exc
            if status is EnrollStatus.INVITATION_INVALID:
                raise InvitationRejected(MintReason.INVITATION_INVALID, _INVITATION_INVALID_DETAIL)
            credential_id = b64url_encode(registered.credential_id)
            self._append_audit(
                EVENT_CREDENTIAL_REGISTERED,
                {
                    "sub": user,
                    "credential_id": credential_id,
                    "aaguid": registered.aaguid.hex(),
                    "attestation_type": registered.attestation_type,
                    "enrollment": self.enrollment.value,
                },
            )
            log.info("event=credential_registered sub=%s credential_id=%s", user, credential_id)
            return RegistrationResult(user, credential_id, registered.attestation_type)

    def _registration_invitation(self, challenge: Challenge) -> bytes | None:
        """Return the invitation digest a registration challenge is bound to (None when open).

        An invitation-mode challenge stores the SHA-256 of its invitation code as its request
        digest; an open-mode challenge stores the digest of its user id.
        """
        if self.enrollment is EnrollmentMode.OPEN:
            if not hmac.compare_digest(challenge.request_digest, _user_digest(challenge.user_id)):
                raise ChallengeRejected(
                    MintReason.CHALLENGE_MISMATCH, "challenge was issued for another request"
                )
            if self._store.credentials_for_user(challenge.user_id):
                raise CredentialRejected(
                    MintReason.CREDENTIAL_EXISTS,
                    f"user {challenge.user_id!r} already has a credential",
                )
            return None
        invitation = self._store.get_invitation(challenge.request_digest)
        if invitation is None or not invitation.is_usable(challenge.user_id, int(self._clock())):
            raise InvitationRejected(MintReason.INVITATION_INVALID, _INVITATION_INVALID_DETAIL)
        return invitation.code_sha256

    def begin_assertion(
        self, user: str, scopes: object, audience: object, ttl_seconds: object
    ) -> ChallengeOptions:
        """Issue a challenge bound to this exact token request, with WebAuthn request options."""
        fields: dict[str, Any] = {"operation": "assert"}
        with self._recording_rejections(fields):
            user = check_user(user)
            fields["sub"] = user
            request = check_token_request(scopes, audience, ttl_seconds)
            fields.update(_request_fields(request))
            credentials = self._store.credentials_for_user(user)
            if not credentials:
                raise CredentialRejected(
                    MintReason.USER_UNKNOWN,
                    f"user {user!r} has no credential; run `ztmint enroll` first",
                )
            challenge = self._new_challenge(ChallengeKind.ASSERTION, user, request.digest())
            webauthn_challenge = _assertion_challenge(challenge.challenge, user, request)
            options = request_options(self._rp, webauthn_challenge, credentials)
            return ChallengeOptions(challenge.challenge_id, options, challenge.expires_at)

    def mint(
        self,
        challenge_id: str,
        scopes: object,
        audience: object,
        ttl_seconds: object,
        assertion: Mapping[str, Any],
        *,
        admission: Admission | None = None,
    ) -> MintResult:
        """Verify the assertion for this exact request and return a signed token and receipt.

        ``admission``, when given, replaces the rate limit, mint policy and global breaker of
        ``MintGuard.admit`` (break-glass passes its grant check here, ``mint.breakglass``).
        """
        fields: dict[str, Any] = {"operation": "mint"}
        with self._recording_rejections(fields):
            request = check_token_request(scopes, audience, ttl_seconds)
            fields.update(_request_fields(request))
            response = parse_authentication_response(assertion)

            challenge = self._usable_challenge(challenge_id, ChallengeKind.ASSERTION)
            fields["sub"] = challenge.user_id
            self.guard.check_breakers(challenge.user_id, self._clock())
            if not hmac.compare_digest(challenge.request_digest, request.digest()):
                raise ChallengeRejected(
                    MintReason.CHALLENGE_MISMATCH,
                    "scopes, audience or ttl_seconds differ from the /assert request; "
                    "send exactly the values the challenge was issued for",
                )
            credential = self._owned_credential(response.raw_id, challenge.user_id)
            webauthn_challenge = _assertion_challenge(
                challenge.challenge, challenge.user_id, request
            )
            with self.guard.stage("webauthn"):
                verified = verify_assertion(self._rp, response, webauthn_challenge, credential)

            now = int(self._clock())
            self._consume(challenge_id, ChallengeKind.ASSERTION, now)
            self._record_sign_count(credential, verified.sign_count, verified.backup_state)
            if admission is None:
                self.guard.admit(challenge.user_id, request, now)
                extra_audit_fields: Mapping[str, Any] = {}
            else:
                extra_audit_fields = admission(challenge.user_id, request, now)

            amr = _authentication_methods(credential, verified.user_verified)
            evidence = AssertionEvidence(
                credential_public_key=credential.public_key_cose,
                authenticator_data=bytes(response.response.authenticator_data),
                client_data_json=bytes(response.response.client_data),
                signature=bytes(response.response.signature),
                challenge_salt=challenge.challenge,
            )
            minted = self._issue(
                challenge.user_id, request, amr, now, fields, evidence, extra_audit_fields
            )
            self.guard.record_minted()
            return minted

    def record_rejection(self, fields: Mapping[str, Any]) -> None:
        """Append a ``request_rejected`` audit record for a rejection made outside the service.

        The HTTP layer calls this for bodies it cannot parse, so that those rejections are
        in the audit log too.
        """
        self.guard.record_refusal(MintReason(fields.get("reason", MintReason.REQUEST_INVALID)))
        self._append_rejection(dict(fields))

    def record_rejection_summary(self, fields: Mapping[str, Any]) -> None:
        """Append one ``request_rejected`` record counting ``fields["repeated"]`` rejections.

        The HTTP layer audits the first rejections of a kind from one client each minute one
        by one and the rest through this summary (``mint.http_guard.RejectionSampler``).
        """
        self._append_rejection(dict(fields))

    def _issue(
        self,
        user: str,
        request: TokenRequest,
        amr: tuple[str, ...],
        now: int,
        fields: dict[str, Any],
        assertion: AssertionEvidence,
        extra_audit_fields: Mapping[str, Any],
    ) -> MintResult:
        jti = b64url_encode(self._random_bytes(JTI_SIZE))
        fields["jti"] = jti
        group_key = self._group_key
        claims = TokenClaims(
            iss=self._issuer,
            sub=user,
            aud=request.audience,
            scopes=request.scopes,
            iat=now,
            ttl=request.ttl_seconds,
            jti=jti,
            amr=amr,
        )
        try:
            with self.guard.stage("signing"):
                result = self._signer.sign_token(claims, group_key.kid, assertion)
        except SigningError as exc:
            raise ServiceUnavailable(
                MintReason.SIGNING_FAILED, f"the signer mesh did not sign: {exc}; retry shortly"
            ) from exc
        signing_input = result.signing_input
        try:
            VerifyKey(group_key.raw).verify(signing_input, result.signature)
        except (BadSignatureError, ValueError) as exc:
            raise ServiceUnavailable(
                MintReason.SIGNING_FAILED,
                "the signer mesh returned a signature that does not verify under the group key",
            ) from exc
        # The mesh completed only the ztm claim; everything the engineer asked for and the
        # mint decided must come back unchanged, or the mesh signed something else.
        if _claims_without_ztm(signing_input, group_key.kid) != _claims_json_without_ztm(claims):
            raise ServiceUnavailable(
                MintReason.SIGNING_FAILED,
                "the signer mesh changed claims other than ztm; no token was issued",
            )

        token = assemble_compact(signing_input, result.signature)
        try:
            with self.guard.stage("kms"):
                receipt = issue_receipt(self._receipt_signer, token, self._issuer, now, jti)
        except KmsError as exc:
            raise ServiceUnavailable(
                MintReason.SIGNING_FAILED, f"the KMS did not sign the receipt: {exc}"
            ) from exc

        evidence = self._append_audit_with_proof(
            EVENT_TOKEN_MINTED,
            {
                **_request_fields(request),
                "sub": user,
                "jti": jti,
                "token_sha256": b64url_encode(token_sha256(token)),
                "signers": list(result.signers),
                "evidence": result.evidence,
                "amr": list(amr),
                **extra_audit_fields,
            },
        )
        log.info(
            "event=token_minted sub=%s jti=%s aud=%s audit_index=%d",
            user,
            jti,
            request.audience,
            evidence.index,
        )
        expires_at = now + request.ttl_seconds
        return MintResult(token, receipt, evidence.index, expires_at, jti, evidence)

    def _new_challenge(self, kind: ChallengeKind, user: str, digest: bytes) -> Challenge:
        challenge = Challenge(
            challenge_id=b64url_encode(self._random_bytes(CHALLENGE_ID_SIZE)),
            kind=kind,
            user_id=user,
            challenge=self._random_bytes(CHALLENGE_SIZE),
            request_digest=digest,
            expires_at=int(self._clock()) + CHALLENGE_TTL_SECONDS,
        )
        self._store.purge_expired_challenges(
            int(self._clock()) - CHALLENGE_PURGE_GRACE_SECONDS, CHALLENGE_PURGE_BATCH
        )
        self._store.add_challenge(challenge)
        return challenge

    def _usable_challenge(self, challenge_id: object, kind: ChallengeKind) -> Challenge:
        return usable_challenge(self._store, challenge_id, kind, int(self._clock()))

    def _consume(self, challenge_id: str, kind: ChallengeKind, now: int) -> None:
        consume_challenge(self._store, challenge_id, kind, now)

    def _owned_credential(self, credential_id: bytes, user: str) -> Credential:
        return owned_credential(self._store, credential_id, user)

    def _record_sign_count(
        self, credential: Credential, sign_count: int, backup_state: bool
    ) -> None:
        record_sign_count(self._store, credential, sign_count, backup_state)

    def _append_audit(self, event: str, fields: Mapping[str, Any]) -> int:
        try:
            return self._audit.append(event, fields)
        except (AuditError, OSError) as exc:
            log.error("event=audit_append_failed audit_event=%s error=%s", event, exc)
            raise ServiceUnavailable(
                MintReason.AUDIT_FAILED, "the audit log could not be written; nothing was issued"
            ) from exc

    def _append_audit_with_proof(self, event: str, fields: Mapping[str, Any]) -> InclusionEvidence:
        try:
            with self.guard.stage("audit"):
                return self._audit.append_with_proof(event, fields)
        except (AuditError, OSError) as exc:
            log.error("event=audit_append_failed audit_event=%s error=%s", event, exc)
            raise ServiceUnavailable(
                MintReason.AUDIT_FAILED, "the audit log could not be written; nothing was issued"
            ) from exc

    def _append_rejection(self, fields: dict[str, Any]) -> None:
        try:
            self._audit.append(EVENT_REQUEST_REJECTED, fields)
        except (AuditError, OSError) as exc:
            log.error(
                "event=audit_append_failed audit_event=%s error=%s", EVENT_REQUEST_REJECTED, exc
            )

    @contextlib.contextmanager
    def _recording_rejections(self, fields: dict[str, Any]) -> Iterator[None]:
        try:
            yield
        except MintError as exc:
            self.guard.record_refusal(exc.reason)
            if exc.reason is not MintReason.AUDIT_FAILED:
                self._append_rejection({**fields, "reason": exc.reason.value})
            log.info(
                "event=request_rejected operation=%s sub=%s reason=%s detail=%s",
                fields.get("operation"),
                fields.get("sub"),
                exc.reason.value,
                exc.detail,
            )
            raise


def _user_digest(user: str) -> bytes:
    return hashlib.sha256(canonical_json({"register": user})).digest()


def _new_user_handle(registration_challenge: bytes) -> bytes:
    """Derive a new user's WebAuthn user handle from the random registration challenge.

    Deriving it lets ``/register/complete`` create the user row with the handle the
    authenticator was given, without ``/register`` writing a user row first. The handle is
    random and carries no personal information (WebAuthn Level 3 section 14.6.1).
    """
    return hashlib.sha256(_USER_HANDLE_LABEL + registration_challenge).digest()


def _request_fields(request: TokenRequest) -> dict[str, Any]:
    return {"aud": request.audience, "scopes": list(request.scopes), "ttl": request.ttl_seconds}


def _authentication_methods(credential: Credential, user_verified: bool) -> tuple[str, ...]:
    """Return RFC 8176 ``amr`` values: ``hwk`` only for attested hardware, ``swk`` otherwise."""
    key = "swk" if credential.attestation_type == "self" else "hwk"
    methods = [key, "user"]
    if user_verified:
        methods.append("mfa")
    return tuple(methods)


def _assertion_challenge(salt: bytes, user: str, request: TokenRequest) -> bytes:
    """Derive the WebAuthn challenge of an assertion challenge from its stored salt.

    The challenge is ``SHA-256(salt || request_digest)`` (``actors.assertion_check``), so
    every signer can check, from the claims it signs, that the assertion approved exactly
    this subject, scope set, audience and lifetime.
    """
    digest = request_digest(user, request.scopes, request.audience, request.ttl_seconds)
    return derive_challenge(salt, digest)


def _claims_json_without_ztm(claims: TokenClaims) -> dict[str, Any]:
    body = claims.to_json()
    body.pop("ztm", None)
    return body


def _claims_without_ztm(signing_input: bytes, kid: str) -> dict[str, Any] | None:
    """Return the claims of a signing input without ``ztm``, or None if it is not a token."""
    try:
        header, payload = signing_input.decode("ascii").split(".")
        if json_loads_strict(b64url_decode(header)) != token_header(kid):
            return None
        body = json_loads_strict(b64url_decode(payload))
    except (UnicodeDecodeError, ValueError, AuthzError):
        return None
    body.pop("ztm", None)
    return body


def usable_challenge(
    store: Store, challenge_id: object, kind: ChallengeKind, now: int
) -> Challenge:
    """Return the stored challenge ``challenge_id`` of ``kind`` if it is unused and unexpired.

    Raises:
        ChallengeRejected: the challenge is unknown, of another kind, used or expired.
    """
    if not isinstance(challenge_id, str):
        raise ChallengeRejected(MintReason.CHALLENGE_UNKNOWN, "challenge_id must be a string")
    challenge = store.get_challenge(challenge_id)
    if challenge is None or challenge.kind != kind:
        raise ChallengeRejected(
            MintReason.CHALLENGE_UNKNOWN, "challenge_id is unknown; request a new challenge"
        )
    if challenge.consumed:
        raise ChallengeRejected(
            MintReason.CHALLENGE_USED, "challenge was already used; request a new one"
        )
    if now >= challenge.expires_at:
        raise ChallengeRejected(
            MintReason.CHALLENGE_EXPIRED,
            f"challenge expired after {CHALLENGE_TTL_SECONDS} s; request a new one",
        )
    return challenge


def consume_challenge(store: Store, challenge_id: str, kind: ChallengeKind, now: int) -> None:
    """Mark the challenge used in the store's one atomic step, or raise why it cannot be.

    Raises:
        ChallengeRejected: another caller used it first, or it expired or vanished.
    """
    status = store.consume_challenge(challenge_id, kind, now).status
    if status is ConsumeStatus.CONSUMED:
        return
    reason = {
        ConsumeStatus.USED: MintReason.CHALLENGE_USED,
        ConsumeStatus.EXPIRED: MintReason.CHALLENGE_EXPIRED,
        ConsumeStatus.UNKNOWN: MintReason.CHALLENGE_UNKNOWN,
    }[status]
    raise ChallengeRejected(reason, f"challenge could not be consumed: it is {status.value}")


def owned_credential(store: Store, credential_id: bytes, user: str) -> Credential:
    """Return ``user``'s credential ``credential_id`` unless it is unknown or flagged as cloned.

    Raises:
        CredentialRejected: the credential is not registered for ``user``, or is blocked.
    """
    credential = store.get_credential(credential_id)
    if credential is None or credential.user_id != user:
        raise CredentialRejected(
            MintReason.CREDENTIAL_UNKNOWN,
            "the assertion's credential is not registered for this user; run `ztmint enroll`",
        )
    if credential.flagged_cloned:
        raise CredentialRejected(
            MintReason.CREDENTIAL_CLONED,
            "credential is flagged as possibly cloned; enroll a new authenticator",
        )
    return credential


def record_sign_count(
    store: Store, credential: Credential, sign_count: int, backup_state: bool
) -> None:
    """Store an assertion's sign count; a count that did not increase blocks the credential.

    Raises:
        CredentialRejected: the credential was removed meanwhile.
        AssertionRejected: the count did not increase (WebAuthn Level 3 section 6.1.1), so
            the authenticator may be cloned; the store has flagged the credential.
    """
    status = store.record_sign_count(credential.credential_id, sign_count, backup_state)
    if status is SignCountStatus.UPDATED:
        return
    if status is SignCountStatus.UNKNOWN:
        raise CredentialRejected(MintReason.CREDENTIAL_UNKNOWN, "credential was removed")
    log.warning(
        "event=credential_flagged_cloned sub=%s credential_id=%s sign_count=%d stored=%d",
        credential.user_id,
        b64url_encode(credential.credential_id),
        sign_count,
        credential.sign_count,
    )
    raise AssertionRejected(
        MintReason.CREDENTIAL_CLONED,
        "signature counter did not increase, so the authenticator may be cloned; "
        "the credential is now blocked, enroll a new authenticator",
    )
