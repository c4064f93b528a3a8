"""The check a signer runs on a message before it contributes a signature share.

A signer signs only ztmint token signing inputs (RFC 7515 section 5.1): ``BASE64URL(header)
'.' BASE64URL(claims)`` where the header is the fixed token header of ``authz.formats`` for
this group key, and the claims carry integer ``iat`` and ``exp`` at most one hour apart. A
coordinator that is compromised therefore cannot use the signers as a signing oracle for
arbitrary bytes, nor for tokens that live longer than the format allows.
"""

from __future__ import annotations

from typing import Any

from actors.errors import MessageRejected
from authz.errors import AuthzError
from authz.formats import MAX_TTL_SECONDS, MIN_TTL_SECONDS, token_header
from authz.jose import b64url_decode, json_loads_strict
from authz.jwk import okp_ed25519_jwk, thumbprint


def check_token_signing_input(message: bytes, group_public_key: bytes) -> dict[str, Any]:
    """Reject ``message`` unless it is a token signing input for ``group_public_key``.

    Args:
        message: the bytes the coordinator requests a signature for.
        group_public_key: the 32-byte Ed25519 group key, whose RFC 7638 thumbprint must be
            the header's ``kid``.

    Returns:
        The decoded claims, for the checks that follow (signer set, assertion).

    Raises:
        MessageRejected: the message is not ASCII, not two canonical base64url segments, has
            another header than ``{"alg":"EdDSA","typ":"JWT","kid":<thumbprint>}``, or claims
            without integer ``iat``/``exp`` or with ``exp - iat`` outside
            [MIN_TTL_SECONDS, MAX_TTL_SECONDS].

    Limitations:
        The signer has no clock check: it does not compare ``iat`` with its own time, so a
        coordinator can still obtain a token with a back- or forward-dated ``iat``.
    """
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError as exc:
        raise MessageRejected("message is not ASCII: expected a JWS signing input") from exc

    segments = text.split(".")
    if len(segments) != 2:
        raise MessageRejected(
            f"message has {len(segments)} segments: expected header.claims (2 segments)"
        )

    try:
        header = json_loads_strict(b64url_decode(segments[0]))
        claims = json_loads_strict(b64url_decode(segments[1]))
    except AuthzError as exc:
        raise MessageRejected(f"message segment is not base64url JSON: {exc.detail}") from exc

    expected_header = token_header(thumbprint(okp_ed25519_jwk(group_public_key)))
    if header != expected_header:
        raise MessageRejected(
            f"token header {sorted(header)} with alg={header.get('alg')!r}, "
            f"typ={header.get('typ')!r} does not match the expected EdDSA/JWT header "
            "whose kid is the group key's thumbprint"
        )

    _check_lifetime(claims)
    return claims


def check_signer_set(claims: dict[str, Any], participants: tuple[int, ...]) -> None:
    """Reject claims whose ``ztm.signers`` is not exactly the signers of the signing package.

    The token names the signers that made it, so a signer checks that claim is true before it
    contributes a share.

    Raises:
        MessageRejected: ``ztm.signers`` is missing or differs from ``participants``.
    """
    ztm = claims.get("ztm")
    signers = ztm.get("signers") if isinstance(ztm, dict) else None
    if (
        not isinstance(signers, list)
        or not all(_is_integer(signer) for signer in signers)
        or sorted(signers) != sorted(participants)
    ):
        raise MessageRejected(
            f"token claims name signers {signers!r}, but the signing package has commitments "
            f"of signers {sorted(participants)}: expected the same set"
        )


def _check_lifetime(claims: dict[str, Any]) -> None:
    iat = claims.get("iat")
    exp = claims.get("exp")
    if not _is_integer(iat) or not _is_integer(exp):
        raise MessageRejected("token claims need integer iat and exp (seconds since the epoch)")
    lifetime = exp - iat
    if not MIN_TTL_SECONDS <= lifetime <= MAX_TTL_SECONDS:
        raise MessageRejected(
            f"token lifetime exp - iat = {lifetime} s: expected between "
            f"{MIN_TTL_SECONDS} and {MAX_TTL_SECONDS} s"
        )


def _is_integer(value: object) -> bool:
    # bool is a subclass of int in Python, but `true` is not a NumericDate (RFC 7519 section 2).
    return isinstance(value, int) and not isinstance(value, bool)
