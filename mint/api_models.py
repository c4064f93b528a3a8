"""Response models, documented request fields and the OpenAPI document of the mint HTTP API.

The request bodies live in ``mint.app``. Their fields use the annotated types below, which
publish the same syntax rules that ``mint.requests`` enforces (user id, scope and audience
patterns, scope count, TTL range) in the OpenAPI schema without enforcing them in pydantic.
The service keeps enforcing them itself, so a TTL outside the range is still rejected with
``ttl_out_of_range`` and not with the generic ``request_invalid``.

Every rejection has the body ``ErrorResponse``. FastAPI documents a 422 validation error by
default, but the mint rejects malformed bodies with 400 ``request_invalid``, so
``openapi_document`` removes the 422 entries and the routes document the statuses the mint
returns.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

from authz.formats import MAX_TTL_SECONDS, MIN_TTL_SECONDS
from mint.errors import STATUS_BY_REASON, MintReason
from mint.requests import AUDIENCE_PATTERN, MAX_SCOPES, SCOPE_PATTERN, USER_PATTERN

OPENAPI_VERSION = "3.1.0"
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def json_schema_pattern(pattern: re.Pattern[str]) -> str:
    r"""Translate a ``\A...\Z`` Python pattern into the ``^...$`` form JSON Schema uses.

    JSON Schema patterns are ECMA-262 regular expressions, where ``$`` matches only at the
    end of the string because the schema never sets the multiline flag.
    """
    source = pattern.pattern
    if not (source.startswith(r"\A") and source.endswith(r"\Z")):
        raise ValueError(f"pattern {source!r} must be anchored with \\A and \\Z")
    return "^" + source[2:-2] + "$"


UserId = Annotated[
    StrictStr,
    Field(
        description="User id: 1-64 characters of A-Z a-z 0-9 . _ @ -, starting with a letter "
        "or digit.",
        json_schema_extra={"pattern": json_schema_pattern(USER_PATTERN)},
    ),
]
Scopes = Annotated[
    list[
        Annotated[
            StrictStr, Field(json_schema_extra={"pattern": json_schema_pattern(SCOPE_PATTERN)})
        ]
    ],
    Field(
        min_length=1,
        description="Requested scopes, without duplicates; the challenge binds their order.",
        json_schema_extra={"maxItems": MAX_SCOPES, "uniqueItems": True},
    ),
]
Audience = Annotated[
    StrictStr,
    Field(
        description="The one service the token is for.",
        json_schema_extra={"pattern": json_schema_pattern(AUDIENCE_PATTERN)},
    ),
]


def _integral_float_to_int(value: object) -> object:
    # JSON Schema counts 900.0 as an integer, so the API accepts it as 900.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


TtlSeconds = Annotated[
    StrictInt,
    BeforeValidator(_integral_float_to_int),
    Field(
        description="Token lifetime in seconds; outside the range the mint rejects the "
        "request with ttl_out_of_range.",
        json_schema_extra={"minimum": MIN_TTL_SECONDS, "maximum": MAX_TTL_SECONDS},
    ),
]

# Canonical unpadded base64url (RFC 4648 section 5): whole 4-character groups, then an
# optional 2- or 3-character tail whose last character leaves the unused low bits zero.
_BASE64URL = {
    "type": "string",
    "pattern": "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$",
}


def _credential_json_schema(required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """Describe a ``PublicKeyCredential`` JSON form whose ``response`` carries ``required``."""
    members = {name: _BASE64URL for name in (*required, *optional)}
    return {
        "required": ["id", "rawId", "type", "response"],
        "properties": {
            "id": _BASE64URL,
            "rawId": _BASE64URL,
            "type": {"type": "string", "enum": ["public-key"]},
            "response": {
                "type": "object",
                "required": list(required),
                "properties": members,
            },
            "authenticatorAttachment": {"type": "string"},
            "clientExtensionResults": {"type": "object"},
        },
    }


RegistrationResponseJson = Annotated[
    dict[str, Any],
    Field(
        description="RegistrationResponseJSON (WebAuthn Level 3 section 5.1), as "
        "PublicKeyCredential.toJSON() returns it after navigator.credentials.create.",
        json_schema_extra=_credential_json_schema(("clientDataJSON", "attestationObject"), ()),
    ),
]
AuthenticationResponseJson = Annotated[
    dict[str, Any],
    Field(
        description="AuthenticationResponseJSON (WebAuthn Level 3 section 5.1), as "
        "PublicKeyCredential.toJSON() returns it after navigator.credentials.get.",
        json_schema_extra=_credential_json_schema(
            ("clientDataJSON", "authenticatorData", "signature"), ("userHandle",)
        ),
    ),
]

# The service returns python-fido2 option objects, which FastAPI's encoder turns into the
# WebAuthn JSON form (camelCase members, base64url binary values). Pydantic would serialize
# them as plain dataclasses, so the encoder runs before validation.
_WebAuthnJson = Annotated[dict[str, Any], BeforeValidator(jsonable_encoder)]


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChallengeResponse(_Response):
    """Body of ``POST /register`` and ``POST /assert``: a one-time challenge and its options."""

    challenge_id: str = Field(description="Id to send back with the authenticator's response.")
    expires_at: int = Field(description="Expiry of the challenge, seconds since the epoch.")
    publicKey: _WebAuthnJson = Field(  # noqa: N815 (the WebAuthn member name)
        description="PublicKeyCredentialCreationOptionsJSON for /register or "
        "PublicKeyCredentialRequestOptionsJSON for /assert (WebAuthn Level 3 sections 5.4 "
        "and 5.5), to pass to navigator.credentials.create or get.",
    )


class EnrollmentResponse(_Response):
    """Body of ``POST /register/complete``: the stored credential."""

    user: str
    credential_id: str = Field(description="The credential id, base64url without padding.")
    attestation_type: str = Field(
        description="How the WebAuthn attestation was trusted, for example self or basic."
    )


class AuditEvidence(_Response):
    """The audit record of a token and its RFC 9162 inclusion proof."""

    index: int = Field(description="Index of the token_minted record, the Merkle leaf index.")
    record: str = Field(description="The record line; its Merkle leaf is SHA-256(0x00 || line).")
    tree_size: int = Field(description="Size of the tree the proof and checkpoint are for.")
    inclusion_proof: list[str] = Field(
        description="The inclusion proof (RFC 9162 section 2.1.3), each node in base64."
    )
    checkpoint: str | None = Field(
        description="The signed checkpoint (tree size and root) the proof verifies against."
    )


class MintResponse(_Response):
    """Body of ``POST /mint``: the token, its receipt and where the audit log records it."""

    token: str = Field(description="The token: a compact JWS (EdDSA) to send as a Bearer token.")
    receipt: str = Field(description="The KMS receipt (compact JWS, ES256), sent as x-kms-sig.")
    jti: str = Field(description="The token's jti claim.")
    expires_at: int = Field(description="The token's exp claim, seconds since the epoch.")
    audit_index: int = Field(description="Index of the token_minted record in the audit log.")
    audit: AuditEvidence | None = Field(
        default=None, description="The audit record with its inclusion proof and checkpoint."
    )


class JwksResponse(_Response):
    """Body of ``GET /.well-known/jwks.json`` (RFC 7517 section 5)."""

    keys: list[dict[str, Any]] = Field(
        description="The group key (OKP Ed25519, alg EdDSA) and the receipt key (EC P-256, "
        "alg ES256), each with its RFC 7638 thumbprint as kid."
    )


class HealthResponse(_Response):
    """Body of ``GET /healthz``."""

    status: str
    issuer: str


class ErrorResponse(_Response):
    """Body of every rejection: a stable reason code and a message for a person."""

    error: MintReason = Field(description="Stable reason code; match on this, not the message.")
    message: str = Field(description="What failed and what to do about it.")


ERROR_RESPONSE_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Build the FastAPI ``responses`` entry that documents ``ErrorResponse`` for ``statuses``.

    Without arguments, every status of ``STATUS_BY_REASON`` is documented.
    """
    chosen = statuses or tuple(sorted(set(STATUS_BY_REASON.values())))
    return {
        status: {
            "model": ErrorResponse,
            "description": _describe_status(status),
        }
        for status in chosen
    }


def _describe_status(status: int) -> str:
    reasons = sorted(reason.value for reason, code in STATUS_BY_REASON.items() if code == status)
    if not reasons:
        return "Rejected."
    return "Rejected with reason " + ", ".join(reasons) + "."


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """Return the OpenAPI document of ``app``, built once and cached on the app.

    FastAPI's generated document is kept, except that every operation's 422 response and the
    validation error schemas are removed, because the mint rejects malformed requests with
    400 ``request_invalid`` and an ``ErrorResponse`` body, which the operations document.
    """
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=OPENAPI_VERSION,
        description=app.description,
        routes=app.routes,
    )
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    app.openapi_schema = document
    return document
