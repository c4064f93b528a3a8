"""Refusal reasons of the token and receipt checks, and the error that carries them.

A reason code is a stable, public string: services, dashboards and the Go and Node SDKs
match on it. Add new codes freely, but never rename or reuse one. The human-readable detail
of an ``AuthzError`` goes to the server log only, because it can describe how a forged token
failed and that helps an attacker more than a caller.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable reason codes returned to callers when a token or receipt is refused."""

    TOKEN_MISSING = "token_missing"
    TOKEN_MALFORMED = "token_malformed"
    TOKEN_HEADER_INVALID = "token_header_invalid"
    TOKEN_ALG_UNSUPPORTED = "token_alg_unsupported"
    TOKEN_KID_UNKNOWN = "token_kid_unknown"
    TOKEN_SIGNATURE_INVALID = "token_signature_invalid"
    TOKEN_CLAIMS_INVALID = "token_claims_invalid"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_NOT_YET_VALID = "token_not_yet_valid"
    TOKEN_AUDIENCE_MISMATCH = "token_audience_mismatch"
    TOKEN_ISSUER_MISMATCH = "token_issuer_mismatch"
    TOKEN_TTL_EXCEEDED = "token_ttl_exceeded"
    TOKEN_REPLAYED = "token_replayed"
    REPLAY_CACHE_FULL = "replay_cache_full"
    RECEIPT_MISSING = "receipt_missing"
    RECEIPT_MALFORMED = "receipt_malformed"
    RECEIPT_HEADER_INVALID = "receipt_header_invalid"
    RECEIPT_ALG_UNSUPPORTED = "receipt_alg_unsupported"
    RECEIPT_KID_UNKNOWN = "receipt_kid_unknown"
    RECEIPT_SIGNATURE_INVALID = "receipt_signature_invalid"
    RECEIPT_MISMATCH = "receipt_mismatch"
    RECEIPT_KEY_RETIRED = "receipt_key_retired"
    HEADER_DUPLICATED = "header_duplicated"
    PATH_INVALID = "path_invalid"
    REQUEST_MALFORMED = "request_malformed"
    SCOPE_DENIED = "scope_denied"
    POLICY_UNAVAILABLE = "policy_unavailable"
    POLICY_ERROR = "policy_error"
    INTERNAL_ERROR = "internal_error"


class AuthzError(Exception):
    """A token, receipt or request was refused.

    Attributes:
        reason: the stable code sent to the caller.
        detail: what exactly failed, for the server log only.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
