"""Strict verification of ztmint tokens (EdDSA JWS) and their receipts (ES256 JWS).

The token decides nothing about how it is checked. The algorithm, the key type and the key
come from the verifier's configuration. A token header must carry ``alg: EdDSA`` and name a
pinned group key by its exact ``kid``, and a receipt header must carry ``alg: ES256`` and name
a pinned receipt key. Steps follow RFC 7515 section 5.2 (JWS validation) and RFC 7519 section
7.2 (JWT validation), with the choices RFC 8725 (JWT best current practices) recommends.

Claims are read only after the signature verifies. The header is necessarily parsed before,
but only to find the key, and nothing in it changes which checks run.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authz.errors import AuthzError, Reason
from authz.formats import MAX_TTL_SECONDS, RECEIPT_ALG, RECEIPT_TYP, TOKEN_ALG, TOKEN_TYP
from authz.jose import b64url_decode, json_loads_strict, split_compact
from authz.keys import KeySet, ReceiptKey
from authz.signatures import verify_ed25519_strict, verify_es256_raw

DEFAULT_LEEWAY_SECONDS = 10
MAX_LEEWAY_SECONDS = 30
MAX_TOKEN_CHARS = 8192
MAX_RECEIPT_CHARS = 2048

_MAX_SAFE_INTEGER = 2**53 - 1
_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"\A[\x21\x23-\x5b\x5d-\x7e]+\Z")


@dataclass(frozen=True)
class VerifiedToken:
    """A token whose signature, header and claims passed every check.

    Attributes:
        token: the exact compact serialization that was verified.
        kid: the group key that signed it.
        iss: issuer. sub: subject. aud: the one audience.
        scopes: the granted scopes, split from the ``scope`` claim.
        iat, nbf, exp: the time claims, seconds since the epoch.
        jti: the unique token id.
        claims: every claim, for callers that need ztmint's own ``ztm`` object or ``amr``.
    """

    token: str = field(repr=False)
    kid: str
    iss: str
    sub: str
    aud: str
    scopes: tuple[str, ...]
    iat: int
    nbf: int
    exp: int
    jti: str
    claims: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose signature verified and that binds the given token.

    Attributes:
        kid: the receipt key that signed it.
        iss: the KMS issuer named in the receipt.
        iat: when the KMS signed it, seconds since the epoch.
        token_jti: the jti of the token it binds.
    """

    kid: str
    iss: str
    iat: int
    token_jti: str


@dataclass(frozen=True)
class _Compact:
    header: dict[str, Any]
    signing_input: bytes
    payload: bytes
    signature: bytes


def verify_token(
    token: str,
    keys: KeySet,
    now: int,
    audience: str,
    issuer: str,
    max_ttl: int = MAX_TTL_SECONDS,
    leeway: int = DEFAULT_LEEWAY_SECONDS,
) -> VerifiedToken:
    """Verify a token and return its claims.

    Args:
        token: the compact JWS from ``Authorization: Bearer``.
        keys: the pinned group keys.
        now: the current time, seconds since the epoch.
        audience: the exact ``aud`` this service accepts.
        issuer: the exact ``iss`` of the mint service.
        max_ttl: the longest accepted ``exp - iat``, in seconds.
        leeway: clock skew allowed on ``nbf``, ``iat`` and ``exp``, 0 to 30 seconds.

    Security:
        Rejected before the signature check: any ``alg`` but EdDSA (including ``none`` in any
        case, HMAC and Ed448), header members other than alg/typ/kid (so ``jwk``, ``jku``,
        ``x5u``, ``x5c``, ``crit``, ``zip`` and ``enc``), a ``typ`` other than JWT, JWE and
        non-canonical base64url. The key is found only by exact kid among pinned keys.

    Raises:
        AuthzError: with the reason of the first failed check.
    """
    _check_leeway(leeway)
    if not token:
        raise AuthzError(Reason.TOKEN_MISSING, "no token was presented")
    compact = _decode_compact_unverified(token, MAX_TOKEN_CHARS, Reason.TOKEN_MALFORMED)
    _check_header(
        compact.header,
        alg=TOKEN_ALG,
        typ=TOKEN_TYP,
        other_typ=RECEIPT_TYP,
        header_reason=Reason.TOKEN_HEADER_INVALID,
        alg_reason=Reason.TOKEN_ALG_UNSUPPORTED,
    )
    kid = compact.header["kid"]
    group_key = keys.group_key(kid)

    verify_ed25519_strict(
        group_key.public_key,
        compact.signing_input,
        compact.signature,
        Reason.TOKEN_SIGNATURE_INVALID,
    )

    claims = json_loads_strict(compact.payload, Reason.TOKEN_CLAIMS_INVALID)
    verified = _token_from_claims(token, kid, claims)
    _check_token_claims(verified, now, audience, issuer, max_ttl, leeway)
    return verified


def verify_receipt(
    receipt: str,
    token: VerifiedToken,
    keys: KeySet,
    now: int,
) -> VerifiedReceipt:
    """Verify a receipt and check that it binds exactly ``token``.

    The receipt must be an ES256 JWS by a pinned receipt key whose payload carries the
    SHA-256 of the token's exact compact serialization and the token's jti. A retired
    receipt key is accepted only for receipts issued before it was retired and only until
    its grace period has passed.

    Raises:
        AuthzError: with the reason of the first failed check; ``receipt_mismatch`` when the
            receipt is valid but for another token.
    """
    if not receipt:
        raise AuthzError(Reason.RECEIPT_MISSING, "no receipt was presented in x-kms-sig")
    compact = _decode_compact_unverified(receipt, MAX_RECEIPT_CHARS, Reason.RECEIPT_MALFORMED)
    _check_header(
        compact.header,
        alg=RECEIPT_ALG,
        typ=RECEIPT_TYP,
        other_typ=TOKEN_TYP,
        header_reason=Reason.RECEIPT_HEADER_INVALID,
        alg_reason=Reason.RECEIPT_ALG_UNSUPPORTED,
    )
    receipt_key = keys.receipt_key(compact.header["kid"])

    verify_es256_raw(
        receipt_key.public_key,
        compact.signing_input,
        compact.signature,
        Reason.RECEIPT_SIGNATURE_INVALID,
    )

    payload = json_loads_strict(compact.payload, Reason.RECEIPT_MALFORMED)
    verified = _receipt_from_payload(receipt_key.kid, payload)
    check_receipt_key_retirement(receipt_key, verified.iat, keys, now)

    expected_digest = hashlib.sha256(token.token.encode("ascii")).digest()
    bound_digest = b64url_decode(payload["token_sha256"], Reason.RECEIPT_MALFORMED)
    if not hmac.compare_digest(bound_digest, expected_digest):
        raise AuthzError(Reason.RECEIPT_MISMATCH, "receipt token_sha256 is not this token's hash")
    if verified.token_jti != token.jti:
        raise AuthzError(Reason.RECEIPT_MISMATCH, "receipt token_jti is not this token's jti")
    return verified


def _check_leeway(leeway: int) -> None:
    if not 0 <= leeway <= MAX_LEEWAY_SECONDS:
        raise ValueError(f"leeway must be 0 to {MAX_LEEWAY_SECONDS} seconds, got {leeway}")


def _decode_compact_unverified(text: str, max_chars: int, malformed: Reason) -> _Compact:
    """Split and decode the three segments of a compact JWS, before any verification.

    Security:
        The returned header and payload are unverified. Only the header may be inspected
        before the signature check, and only to choose among pinned keys.
    """
    if not isinstance(text, str):
        raise AuthzError(malformed, "compact JWS must be a string")
    if len(text) > max_chars:
        raise AuthzError(malformed, f"compact JWS is {len(text)} characters, limit {max_chars}")
    if not text.isascii():
        raise AuthzError(malformed, "compact JWS contains non-ASCII characters")
    encoded_header, encoded_payload, encoded_signature = split_compact(text, malformed)
    header = json_loads_strict(b64url_decode(encoded_header, malformed), malformed)
    payload = b64url_decode(encoded_payload, malformed)
    signature = b64url_decode(encoded_signature, malformed)
    signing_input = f"{encoded_header}.{encoded_payload}".encode("ascii")
    return _Compact(header, signing_input, payload, signature)


def _check_header(
    header: dict[str, Any],
    *,
    alg: str,
    typ: str,
    other_typ: str,
    header_reason: Reason,
    alg_reason: Reason,
) -> None:
    if header.get("typ") == other_typ:
        raise AuthzError(header_reason, f"typ {other_typ!r} belongs to the other format")
    if header.get("alg") != alg:
        raise AuthzError(alg_reason, f"alg {header.get('alg')!r} is not accepted, expected {alg}")
    unexpected = set(header) - _HEADER_MEMBERS
    if unexpected:
        raise AuthzError(header_reason, f"header members {sorted(unexpected)} are not accepted")
    if header.get("typ") != typ:
        raise AuthzError(header_reason, f"typ {header.get('typ')!r} is not {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthzError(header_reason, "kid is missing or not a non-empty string")


def _require_str(claims: Mapping[str, Any], name: str, reason: Reason) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise AuthzError(reason, f"claim {name!r} must be a non-empty string")
    return value


def _require_int(claims: Mapping[str, Any], name: str, reason: Reason) -> int:
    value = claims.get(name)
    # bool is a subclass of int, and true must not read as 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise AuthzError(reason, f"claim {name!r} must be an integer NumericDate")
    # Beyond 2^53 - 1 the Node SDK (IEEE 754 doubles) would read a different number.
    if not 0 <= value <= _MAX_SAFE_INTEGER:
        raise AuthzError(reason, f"claim {name!r} must be between 0 and 2^53 - 1")
    return value


def _token_from_claims(token: str, kid: str, claims: dict[str, Any]) -> VerifiedToken:
    invalid = Reason.TOKEN_CLAIMS_INVALID
    if "aud" in claims and not isinstance(claims["aud"], str):
        raise AuthzError(invalid, "claim 'aud' must be one string, not a list")
    scope = claims.get("scope")
    if not isinstance(scope, str):
        raise AuthzError(invalid, "claim 'scope' must be a space-separated string")
    scopes = tuple(scope.split(" ")) if scope else ()
    if not all(_SCOPE_TOKEN.match(item) for item in scopes):
        raise AuthzError(invalid, "claim 'scope' must be scope tokens separated by single spaces")
    return VerifiedToken(
        token=token,
        kid=kid,
        iss=_require_str(claims, "iss", invalid),
        sub=_require_str(claims, "sub", invalid),
        aud=_require_str(claims, "aud", invalid),
        scopes=scopes,
        iat=_require_int(claims, "iat", invalid),
        nbf=_require_int(claims, "nbf", invalid),
        exp=_require_int(claims, "exp", invalid),
        jti=_require_str(claims, "jti", invalid),
        claims=claims,
    )


def _check_token_claims(
    token: VerifiedToken, now: int, audience: str, issuer: str, max_ttl: int, leeway: int
) -> None:
    if token.iss != issuer:
        raise AuthzError(Reason.TOKEN_ISSUER_MISMATCH, f"iss {token.iss!r} is not {issuer!r}")
    if token.aud != audience:
        raise AuthzError(Reason.TOKEN_AUDIENCE_MISMATCH, f"aud {token.aud!r} is not {audience!r}")
    if token.exp <= token.iat or token.exp <= token.nbf:
        raise AuthzError(Reason.TOKEN_CLAIMS_INVALID, "exp must be after iat and nbf")
    if token.exp - token.iat > max_ttl:
        raise AuthzError(
            Reason.TOKEN_TTL_EXCEEDED,
            f"exp - iat is {token.exp - token.iat} s, more than the maximum of {max_ttl} s",
        )
    check_token_time(token, now, leeway)


def check_token_time(token: VerifiedToken, now: int, leeway: int) -> None:
    """Check a verified token's ``exp``, ``nbf`` and ``iat`` against ``now``.

    ``verify_token`` runs this check, and the token cache runs it again on every hit, because
    a token that was valid when it was cached can expire while it stays in the cache.

    Raises:
        AuthzError: ``token_expired`` at or after ``exp + leeway`` (RFC 7519 section 4.1.4),
            ``token_not_yet_valid`` before ``nbf - leeway`` or ``iat - leeway``.
    """
    if now >= token.exp + leeway:
        raise AuthzError(Reason.TOKEN_EXPIRED, f"token expired at {token.exp}, now is {now}")
    if now < token.nbf - leeway:
        raise AuthzError(Reason.TOKEN_NOT_YET_VALID, f"nbf {token.nbf} is after now {now}")
    if now < token.iat - leeway:
        raise AuthzError(Reason.TOKEN_NOT_YET_VALID, f"iat {token.iat} is after now {now}")


def check_receipt_key_retirement(
    receipt_key: ReceiptKey, receipt_iat: int, keys: KeySet, now: int
) -> None:
    """Check that a retired receipt key may still vouch for a receipt issued at ``receipt_iat``.

    A current key (``retired_at`` is None) always passes.

    Raises:
        AuthzError: ``receipt_key_retired`` when the receipt was issued after the key was
            retired, or when the key's grace period has passed.
    """
    if receipt_key.retired_at is None:
        return
    if receipt_iat > receipt_key.retired_at:
        raise AuthzError(
            Reason.RECEIPT_KEY_RETIRED,
            f"receipt key {receipt_key.kid!r} signed a receipt after it was retired",
        )
    if now >= receipt_key.retired_at + keys.receipt_grace_seconds:
        raise AuthzError(
            Reason.RECEIPT_KEY_RETIRED,
            f"receipt key {receipt_key.kid!r} is past its grace period",
        )


def _receipt_from_payload(kid: str, payload: dict[str, Any]) -> VerifiedReceipt:
    malformed = Reason.RECEIPT_MALFORMED
    _require_str(payload, "token_sha256", malformed)
    return VerifiedReceipt(
        kid=kid,
        iss=_require_str(payload, "iss", malformed),
        iat=_require_int(payload, "iat", malformed),
        token_jti=_require_str(payload, "token_jti", malformed),
    )
