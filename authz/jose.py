"""Strict JOSE encoding helpers shared by the token and receipt formats.

RFC 7515 section 2 defines base64url without padding, and RFC 7515 section 7.1 the compact
serialization. These helpers accept only the canonical form of each, so that one token has
exactly one spelling: two different strings can never verify as the same token, and a cache
keyed on the string cannot be confused by a second spelling.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from authz.errors import AuthzError, Reason

_B64URL_ALPHABET = re.compile(r"\A[A-Za-z0-9_-]*\Z")


def b64url_encode(data: bytes) -> str:
    """Encode bytes as base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, reason: Reason = Reason.TOKEN_MALFORMED) -> bytes:
    """Decode canonical base64url, rejecting every other spelling of the same bytes.

    Rejected: padding, characters outside the URL-safe alphabet (including ``+`` and ``/``),
    a length of 1 mod 4, and non-zero unused bits in the last character.

    Raises:
        AuthzError: with ``reason`` when the text is not canonical base64url.
    """
    if not _B64URL_ALPHABET.match(text):
        raise AuthzError(reason, "base64url segment has characters outside the URL-safe alphabet")
    if len(text) % 4 == 1:
        raise AuthzError(reason, "base64url segment has an impossible length")
    padded = text + "=" * (-len(text) % 4)
    try:
        data = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise AuthzError(reason, "base64url segment does not decode") from exc
    # Re-encoding exposes non-zero unused bits: "AB" and "AC" decode to the same byte.
    if b64url_encode(data) != text:
        raise AuthzError(reason, "base64url segment has non-zero unused bits")
    return data


def json_dumps_compact(value: Any) -> bytes:
    """Serialise JSON with no insignificant whitespace and keys in insertion order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _reject_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate JSON member name {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def json_loads_strict(data: bytes, reason: Reason = Reason.TOKEN_MALFORMED) -> dict[str, Any]:
    """Parse a JSON object from UTF-8, rejecting duplicate member names and NaN/Infinity.

    RFC 7515 section 5.2 lets a JWS parser either reject duplicate member names or take the
    last one. Taking one silently is how two verifiers come to read different claims from one
    token, so ztmint rejects them everywhere.

    Raises:
        AuthzError: with ``reason`` when the bytes are not a JSON object in UTF-8.
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, object_pairs_hook=_reject_duplicate_members, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AuthzError(reason, f"segment is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise AuthzError(reason, "segment is JSON but not an object")
    return value


def split_compact(text: str, reason: Reason = Reason.TOKEN_MALFORMED) -> tuple[str, str, str]:
    """Split a compact JWS into its three segments, rejecting JWE and other shapes.

    Raises:
        AuthzError: with ``reason`` when the text does not have exactly three segments.
    """
    parts = text.split(".")
    if len(parts) == 5:
        raise AuthzError(reason, "five segments: this is a JWE, not a JWS")
    if len(parts) != 3:
        raise AuthzError(reason, f"compact JWS needs 3 segments, found {len(parts)}")
    return parts[0], parts[1], parts[2]
