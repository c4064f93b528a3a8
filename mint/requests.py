"""Syntax checks of a token request, and the digest that binds a challenge to it.

These are pure functions shared by the service and the CLI, so that the CLI rejects a bad
scope before it prompts for a touch of the security key.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from authz.formats import MAX_TTL_SECONDS, MIN_TTL_SECONDS
from mint.audit import canonical_json
from mint.errors import MintReason, RequestInvalid

SCOPE_PATTERN = re.compile(r"\A[a-z0-9:._/-]{1,128}\Z")
AUDIENCE_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9:._/-]{0,254}\Z")
USER_PATTERN = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
MAX_SCOPES = 32


@dataclass(frozen=True)
class TokenRequest:
    """The scopes, audience and lifetime an engineer requests for a token.

    Attributes:
        scopes: requested scopes, in the order given.
        audience: the one service the token is for.
        ttl_seconds: lifetime, ``MIN_TTL_SECONDS`` to ``MAX_TTL_SECONDS``.
    """

    scopes: tuple[str, ...]
    audience: str
    ttl_seconds: int

    def digest(self) -> bytes:
        """Return the SHA-256 of the canonical JSON of this request.

        A challenge stores this digest when it is issued, and ``/mint`` recomputes it from the
        request it receives. So an assertion is valid only for the exact request its challenge
        was issued for: the same scopes in the same order, the same audience and the same TTL.
        """
        body = {"aud": self.audience, "scope": list(self.scopes), "ttl": self.ttl_seconds}
        return hashlib.sha256(canonical_json(body)).digest()


def check_user(user: object) -> str:
    """Return ``user`` when it is a valid user id (1-64 of ``A-Za-z0-9._@-``)."""
    if not isinstance(user, str) or not USER_PATTERN.match(user):
        raise RequestInvalid(
            MintReason.REQUEST_INVALID,
            "user must be 1-64 characters of A-Z a-z 0-9 . _ @ -, starting with a letter or digit",
        )
    return user


def check_token_request(scopes: object, audience: object, ttl_seconds: object) -> TokenRequest:
    """Validate the syntax of a token request.

    Raises:
        RequestInvalid: ``request_invalid`` for a bad scope list or audience, and
            ``ttl_out_of_range`` for a TTL outside 5 to 60 minutes.
    """
    if isinstance(scopes, str | bytes) or not isinstance(scopes, Sequence):
        raise RequestInvalid(MintReason.REQUEST_INVALID, "scopes must be a list of strings")
    if not 1 <= len(scopes) <= MAX_SCOPES:
        raise RequestInvalid(
            MintReason.REQUEST_INVALID, f"scopes must hold 1 to {MAX_SCOPES} scopes"
        )
    for scope in scopes:
        if not isinstance(scope, str) or not SCOPE_PATTERN.match(scope):
            raise RequestInvalid(
                MintReason.REQUEST_INVALID,
                f"scope {scope!r} is invalid; use 1-128 characters of a-z 0-9 : . _ / -",
            )
    if len(set(scopes)) != len(scopes):
        raise RequestInvalid(MintReason.REQUEST_INVALID, "scopes contain a duplicate")
    if not isinstance(audience, str) or not AUDIENCE_PATTERN.match(audience):
        raise RequestInvalid(
            MintReason.REQUEST_INVALID,
            "audience must be 1-255 characters of A-Z a-z 0-9 : . _ / -, "
            "starting with a letter or digit",
        )
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise RequestInvalid(MintReason.REQUEST_INVALID, "ttl_seconds must be an integer")
    if not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
        raise RequestInvalid(
            MintReason.TTL_OUT_OF_RANGE,
            f"ttl_seconds is {_shorten(str(ttl_seconds))}; "
            f"expected {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (5 to 60 minutes)",
        )
    return TokenRequest(tuple(scopes), audience, ttl_seconds)


def _shorten(text: str, limit: int = 20) -> str:
    """Return ``text`` cut to ``limit`` characters, marking the cut, for echoing input."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} digits)"
