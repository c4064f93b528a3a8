"""The mint HTTP API (FastAPI), a thin shell around ``MintService``.

Routes:

- ``POST /register`` and ``POST /register/complete``: enroll a WebAuthn credential; unless
  enrollment is open, ``/register`` needs an invitation (``mint.invitations``).
- ``POST /assert``: get a one-time challenge bound to scopes, audience and TTL.
- ``POST /mint``: exchange the assertion over that challenge for a token and receipt.
- ``GET /.well-known/jwks.json``: the group key (EdDSA) and the receipt key (ES256).
- ``GET /healthz``: liveness.
- ``GET /metrics``: Prometheus metrics (``mint.metrics``).
- ``GET /ui/``: the enrollment and mint page (``mint.web``).
- ``GET /openapi.json``: the OpenAPI document (``mint.api_models``).

Before any route runs, ``mint.http_guard.RequestAdmission`` applies the per-client rate limit
(429 ``rate_limited``) and the body size limit (413 ``request_too_large``) to every POST.

Every rejection is a 4xx, 500 or 503 JSON body ``{"error": <reason code>, "message": <detail>}``
with an ``X-Request-Id`` header, mapped in ``_error_response`` only. Logs carry the request
id, method, path, status and reason, never a token, receipt, assertion, challenge or key.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from mint.api_models import (
    Audience,
    AuthenticationResponseJson,
    ChallengeResponse,
    EnrollmentResponse,
    HealthResponse,
    JwksResponse,
    MintResponse,
    RegistrationResponseJson,
    Scopes,
    TtlSeconds,
    UserId,
    error_responses,
    openapi_document,
)
from mint.audit import AuditLog, checkpoint_signer
from mint.breakglass import BreakGlassService
from mint.breakglass_http import add_breakglass_routes
from mint.errors import STATUS_BY_REASON, MintError, MintReason, Throttled
from mint.http_guard import ClientRateLimiter, RejectionSampler, RejectionSummary, RequestAdmission
from mint.invitations import EnrollmentMode
from mint.kms_select import open_receipt_key_ring
from mint.limits import build_guard
from mint.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mint.service import MintService
from mint.settings import Settings
from mint.shipping import AuditShipping
from mint.signing import TokenSigner
from mint.store_postgres import open_store
from mint.web import add_ui_routes
from mint.webauthn import RelyingParty, load_trust_roots

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
_REASON_BY_FRAMEWORK_STATUS = {
    404: MintReason.ROUTE_NOT_FOUND,
    405: MintReason.METHOD_NOT_ALLOWED,
}
_OPERATION_BY_PATH = {
    "/register": "register",
    "/register/complete": "register_complete",
    "/assert": "assert",
    "/mint": "mint",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterBody(_Body):
    """Body of ``POST /register``: the user and, unless enrollment is open, an invitation."""

    user: UserId
    invitation: StrictStr | None = Field(
        default=None, max_length=128, description="invitation code from `ztmint users invite`"
    )


class RegisterCompleteBody(_Body):
    """Body of ``POST /register/complete``: the challenge id and ``RegistrationResponseJSON``."""

    challenge_id: StrictStr
    credential: RegistrationResponseJson


class AssertBody(_Body):
    """Body of ``POST /assert``: the user and the exact token request the challenge binds."""

    user: UserId
    scopes: Scopes
    audience: Audience
    ttl_seconds: TtlSeconds


class MintBody(_Body):
    """Body of ``POST /mint``: the same request as ``/assert`` plus the assertion over it."""

    challenge_id: StrictStr
    scopes: Scopes
    audience: Audience
    ttl_seconds: TtlSeconds
    assertion: AuthenticationResponseJson


def create_app(service: MintService, settings: Settings) -> FastAPI:
    """Build the FastAPI application serving ``service``."""
    app = FastAPI(title="ztmint mint", docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    if settings.enrollment is EnrollmentMode.OPEN:
        log.warning(
            "event=open_enrollment anyone who reaches /register can enroll a key for a user "
            "without a credential; set ZTMINT_ENROLLMENT=invitation outside development"
        )
    sampler = RejectionSampler(per_window=settings.rejection_audit_per_minute)
    clock = service.clock

    def audit_http_rejection(client: str, path: str, reason: MintReason) -> None:
        operation = _OPERATION_BY_PATH.get(path, path)
        audit_now, summaries = sampler.observe((client, operation, reason.value), clock())
        if audit_now:
            service.record_rejection({"operation": operation, "reason": reason.value})
        else:
            service.guard.record_refusal(reason)
        for summary in summaries:
            service.record_rejection_summary(_summary_fields(summary))

    limiter = ClientRateLimiter(settings.client_rate) if settings.client_rate else None
    app.add_middleware(
        RequestAdmission,
        max_body_bytes=settings.max_body_bytes,
        limiter=limiter,
        clock=clock,
        on_reject=audit_http_rejection,
    )

    @app.middleware("http")
    async def request_id_middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _CLIENT_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        request.state.request_id = request_id
        started = time.perf_counter()
        response = await call_next(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        log.info(
            "event=http_request request_id=%s method=%s path=%s status=%d duration_ms=%.1f",
            request_id,
            request.method,
            request.url.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    @app.exception_handler(MintError)
    async def mint_error_handler(request: Request, exc: MintError) -> JSONResponse:
        response = _error_response(request, exc.reason, exc.detail, exc.status)
        if isinstance(exc, Throttled):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error_handler(
        request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        if request.url.path not in _OPERATION_BY_PATH and request.method in ("GET", "HEAD"):
            # A bad query parameter of a page: nothing to audit, and no body was sent.
            message = _describe_validation_errors(exc, "query")
            return _error_response(request, MintReason.REQUEST_INVALID, message, 400)
        message = _describe_validation_errors(exc, "body")
        audit_http_rejection(_client_of(request), request.url.path, MintReason.REQUEST_INVALID)
        return _error_response(request, MintReason.REQUEST_INVALID, message, 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Raised by the framework itself: an unknown path, a method the path does not
        # serve, or a body that cannot be read as JSON.
        reason = _REASON_BY_FRAMEWORK_STATUS.get(exc.status_code, MintReason.REQUEST_INVALID)
        message = f"{request.method} {request.url.path} rejected: {exc.detail}"
        operation = _OPERATION_BY_PATH.get(request.url.path)
        if operation is not None and reason is MintReason.REQUEST_INVALID:
            audit_http_rejection(_client_of(request), request.url.path, reason)
        response = _error_response(request, reason, message, STATUS_BY_REASON[reason])
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
        log.exception(
            "event=internal_error request_id=%s path=%s",
            getattr(request.state, "request_id", ""),
            request.url.path,
        )
        message = "the mint failed unexpectedly; retry, and report the X-Request-Id if it persists"
        return _error_response(request, MintReason.INTERNAL_ERROR, message, 500)

    @app.post("/register", response_model=ChallengeResponse, responses=error_responses())
    def register(body: RegisterBody) -> dict[str, Any]:
        started = service.begin_registration(body.user, body.invitation)
        return {
            "challenge_id": started.challenge_id,
            "expires_at": started.expires_at,
            "publicKey": started.options,
        }

    @app.post("/register/complete", response_model=EnrollmentResponse, responses=error_responses())
    def register_complete(body: RegisterCompleteBody) -> dict[str, Any]:
        result = service.complete_registration(body.challenge_id, body.credential)
        return {
            "user": result.user,
            "credential_id": result.credential_id,
            "attestation_type": result.attestation_type,
        }

    @app.post("/assert", response_model=ChallengeResponse, responses=error_responses())
    def assert_(body: AssertBody) -> dict[str, Any]:
        started = service.begin_assertion(body.user, body.scopes, body.audience, body.ttl_seconds)
        return {
            "challenge_id": started.challenge_id,
            "expires_at": started.expires_at,
            "publicKey": started.options,
        }

    @app.post("/mint", response_model=MintResponse, responses=error_responses())
    def mint(body: MintBody) -> dict[str, Any]:
        result = service.mint(
            body.challenge_id, body.scopes, body.audience, body.ttl_seconds, body.assertion
        )
        return {
            "token": result.token,
            "receipt": result.receipt,
            "jti": result.jti,
            "expires_at": result.expires_at,
            "audit_index": result.audit_index,
            "audit": result.audit_evidence.to_json() if result.audit_evidence else None,
        }

    @app.get("/.well-known/jwks.json", response_model=JwksResponse, responses=error_responses(500))
    def jwks() -> dict[str, Any]:
        return service.jwks()

    @app.get("/healthz", response_model=HealthResponse, responses=error_responses(500))
    def healthz() -> dict[str, str]:
        return {"status": "ok", "issuer": settings.issuer}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(service.guard.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    if service.breakglass is not None:
        add_breakglass_routes(app, service.breakglass)
    add_ui_routes(app)
    return app


def service_from_settings(
    settings: Settings,
    signer: TokenSigner,
    clock: Callable[[], float] = time.time,
    random_bytes: Callable[[int], bytes] = os.urandom,
    *,
    shipping: AuditShipping | None = None,
) -> MintService:
    """Wire a ``MintService`` with the embedded backends in ``settings.state_dir``.

    The backends are SQLite (or PostgreSQL when ``settings.database_url`` is set), the KMS
    chosen by ``settings.kms`` (``mint.kms_select``), and the local audit file whose
    checkpoints the KMS key signs. When ``shipping`` is given, every audit append is handed to
    it and its backlog metrics join the mint's /metrics; the caller starts and stops it.
    """
    if not settings.state_dir.exists():
        settings.state_dir.mkdir(mode=0o700, parents=True)
    roots: tuple[bytes, ...] = ()
    if settings.attestation_roots is not None:
        roots = load_trust_roots(Path(settings.attestation_roots).read_bytes())
    relying_party = RelyingParty(
        rp_id=settings.rp_id,
        origin=settings.origin,
        user_verification=settings.user_verification,
        allow_self_attestation=settings.allow_self_attestation,
        trust_roots=roots,
    )
    kms = open_receipt_key_ring(settings.kms, settings.state_dir, clock)
    note_signer = checkpoint_signer(kms, settings.checkpoint_origin)
    store = open_store(settings.database_url, settings.database_path)
    on_append = shipping.record_appended if shipping is not None else None
    audit = AuditLog(settings.audit_path, clock, note_signer=note_signer, on_append=on_append)
    guard = build_guard(settings.guard, store, audit)
    if shipping is not None:
        shipping.register_metrics(guard.metrics.registry)
    service = MintService(
        store=store,
        signer=signer,
        receipt_signer=kms,
        audit=audit,
        relying_party=relying_party,
        issuer=settings.issuer,
        clock=clock,
        random_bytes=random_bytes,
        guard=guard,
        enrollment=settings.enrollment,
    )
    service.breakglass = BreakGlassService(
        mint=service,
        store=store,
        records=store.breakglass_records(),
        audit=audit,
        relying_party=relying_party,
        settings=settings.breakglass,
        clock=clock,
        random_bytes=random_bytes,
    )
    return service


def _error_response(
    request: Request, reason: MintReason, message: str, status: int
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "")
    log.info(
        "event=request_rejected request_id=%s path=%s status=%d reason=%s detail=%s",
        request_id,
        request.url.path,
        status,
        reason.value,
        message,
    )
    return JSONResponse(
        status_code=status,
        content={"error": reason.value, "message": message},
        headers={REQUEST_ID_HEADER: request_id},
    )


def _describe_validation_errors(exc: RequestValidationError, part: str) -> str:
    """Describe what is wrong with the body or query without echoing the values sent."""
    problems = []
    for error in exc.errors()[:5]:
        if error.get("type") == "json_invalid":
            position = error.get("ctx", {}).get("position")
            if position is None and len(error.get("loc", ())) > 1:
                position = error["loc"][1]
            return f"request body is not valid JSON at character {position}"
        location = ".".join(str(part) for part in error.get("loc", ())[1:])
        problems.append(f"{location or part}: {error.get('msg', 'invalid')}")
    if part == "query":
        return "query parameter is invalid: " + "; ".join(problems)
    return "request body is invalid: " + "; ".join(problems)


def _client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _summary_fields(summary: RejectionSummary) -> dict[str, Any]:
    client, operation, reason = summary.key
    return {
        "operation": operation,
        "reason": reason,
        "client": client,
        "repeated": summary.suppressed,
        "window_start": int(summary.window_start),
        "window_seconds": int(summary.window_seconds),
    }
