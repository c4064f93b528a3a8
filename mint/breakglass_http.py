"""The break-glass routes of the mint HTTP API, a thin shell around ``BreakGlassService``.

Routes (all JSON; rejections are ``ErrorResponse`` bodies mapped by ``mint.app``):

- ``POST /breakglass/assert``: the requester's challenge for filing a request.
- ``POST /breakglass``: file the request with the assertion; returns the request id and the
  WebAuthn options guardians sign.
- ``GET /breakglass/{request_id}``: the request, its approvals and the guardians' options.
- ``POST /breakglass/{request_id}/approve``: one guardian's assertion with user verification.
- ``POST /breakglass/{request_id}/assert``: the requester's mint challenge, once approved.
- ``POST /breakglass/{request_id}/mint``: grant the request and mint its one token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

from mint.api_models import (
    Audience,
    AuthenticationResponseJson,
    ChallengeResponse,
    MintResponse,
    Scopes,
    TtlSeconds,
    UserId,
    error_responses,
)
from mint.breakglass import BreakGlassService
from mint.service import ChallengeOptions, MintResult

# python-fido2 option objects become WebAuthn JSON before validation, as in mint.api_models.
WebAuthnJson = Annotated[dict[str, Any], BeforeValidator(jsonable_encoder)]
DurationSeconds = Field(
    description="How long the emergency access may last, in seconds: 300 to 3600. The token "
    "expires no later than created_at + duration_seconds."
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BreakGlassAssertBody(_Body):
    """Body of ``POST /breakglass/assert``: the requester and the request to be filed."""

    user: UserId
    scopes: Scopes
    audience: Audience
    duration_seconds: StrictInt = DurationSeconds
    reason: StrictStr = Field(description="Why the emergency access is needed; audited.")


class BreakGlassFileBody(_Body):
    """Body of ``POST /breakglass``: the same request as the challenge plus the assertion."""

    challenge_id: StrictStr
    scopes: Scopes
    audience: Audience
    duration_seconds: StrictInt = DurationSeconds
    reason: StrictStr
    assertion: AuthenticationResponseJson


class BreakGlassApproveBody(_Body):
    """Body of ``POST /breakglass/{request_id}/approve``: the guardian and its assertion."""

    guardian: UserId
    assertion: AuthenticationResponseJson


class BreakGlassMintAssertBody(_Body):
    """Body of ``POST /breakglass/{request_id}/assert``: the requester and the lifetime."""

    user: UserId
    ttl_seconds: TtlSeconds | None = Field(
        default=None,
        description="Token lifetime in seconds; default the longest that ends before the "
        "request expires.",
    )


class BreakGlassMintBody(_Body):
    """Body of ``POST /breakglass/{request_id}/mint``: the challenge's values and assertion."""

    challenge_id: StrictStr
    ttl_seconds: TtlSeconds
    assertion: AuthenticationResponseJson


class BreakGlassChallengeResponse(ChallengeResponse):
    """Body of ``POST /breakglass/{request_id}/assert``: a mint challenge and its lifetime."""

    ttl_seconds: int = Field(description="The token lifetime the challenge is bound to.")


class BreakGlassRequestResponse(BaseModel):
    """A break-glass request, its approvals and the options guardians sign to approve it."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    requester: str
    reason: str
    scopes: list[str]
    audience: str
    duration_seconds: int
    created_at: int = Field(description="When the request was filed, seconds since the epoch.")
    expires_at: int = Field(description="When the request and any token from it expire.")
    request_digest: str = Field(description="SHA-256 of the request's canonical JSON, in hex.")
    approvals: list[str] = Field(description="Guardians that approved, in order.")
    threshold: int = Field(description="How many distinct guardians must approve.")
    granted: bool = Field(description="Whether the request was granted and its token minted.")
    publicKey: WebAuthnJson = Field(  # noqa: N815 (the WebAuthn member name)
        description="PublicKeyCredentialRequestOptionsJSON over the request's challenge, "
        "requiring user verification, for the guardians' navigator.credentials.get."
    )


def add_breakglass_routes(app: FastAPI, breakglass: BreakGlassService) -> None:
    """Add the break-glass routes to the mint application."""

    @app.post("/breakglass/assert", response_model=ChallengeResponse, responses=error_responses())
    def breakglass_assert(body: BreakGlassAssertBody) -> dict[str, Any]:
        started = breakglass.begin_request(
            body.user, body.scopes, body.audience, body.duration_seconds, body.reason
        )
        return _challenge_json(started)

    @app.post("/breakglass", response_model=BreakGlassRequestResponse, responses=error_responses())
    def breakglass_file(body: BreakGlassFileBody) -> dict[str, Any]:
        filed = breakglass.file_request(
            body.challenge_id,
            body.scopes,
            body.audience,
            body.duration_seconds,
            body.reason,
            body.assertion,
        )
        return filed.to_json()

    @app.get(
        "/breakglass/{request_id}",
        response_model=BreakGlassRequestResponse,
        responses=error_responses(),
    )
    def breakglass_describe(request_id: str) -> dict[str, Any]:
        return breakglass.describe(request_id).to_json()

    @app.post(
        "/breakglass/{request_id}/approve",
        response_model=BreakGlassRequestResponse,
        responses=error_responses(),
    )
    def breakglass_approve(request_id: str, body: BreakGlassApproveBody) -> dict[str, Any]:
        return breakglass.approve(request_id, body.guardian, body.assertion).to_json()

    @app.post(
        "/breakglass/{request_id}/assert",
        response_model=BreakGlassChallengeResponse,
        responses=error_responses(),
    )
    def breakglass_mint_assert(request_id: str, body: BreakGlassMintAssertBody) -> dict[str, Any]:
        started, ttl_seconds = breakglass.begin_mint(request_id, body.user, body.ttl_seconds)
        return {**_challenge_json(started), "ttl_seconds": ttl_seconds}

    @app.post(
        "/breakglass/{request_id}/mint", response_model=MintResponse, responses=error_responses()
    )
    def breakglass_mint(request_id: str, body: BreakGlassMintBody) -> dict[str, Any]:
        result = breakglass.mint(request_id, body.challenge_id, body.ttl_seconds, body.assertion)
        return _mint_json(result)


def _challenge_json(started: ChallengeOptions) -> dict[str, Any]:
    return {
        "challenge_id": started.challenge_id,
        "expires_at": started.expires_at,
        "publicKey": started.options,
    }


def _mint_json(result: MintResult) -> dict[str, Any]:
    return {
        "token": result.token,
        "receipt": result.receipt,
        "jti": result.jti,
        "expires_at": result.expires_at,
        "audit_index": result.audit_index,
        "audit": result.audit_evidence.to_json() if result.audit_evidence else None,
    }
