"""HTTP client of the mint API: the enrollment and mint ceremonies from the engineer's side.

Both ceremonies are two requests around one authenticator operation: the mint returns
WebAuthn options with a one-time challenge, the authenticator signs them, and the second
request carries the result. The CLI and the demo use these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

HTTP_TIMEOUT_SECONDS = 30.0


class MintClientError(Exception):
    """The mint rejected a request or could not be reached.

    Attributes:
        reason: the mint's stable reason code, or ``unreachable`` / ``http_<status>``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class Authenticator(Protocol):
    """A WebAuthn authenticator: a YubiKey over CTAP2 or the development software key."""

    def register(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Create a credential for creation ``options`` and return RegistrationResponse JSON."""
        ...

    def authenticate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Sign request ``options`` and return AuthenticationResponse JSON."""
        ...


def post_json(client: httpx.Client, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the mint and return the JSON response, raising on any rejection."""
    try:
        response = client.post(path, json=dict(body))
    except httpx.HTTPError as exc:
        raise MintClientError(
            "unreachable", f"cannot reach the mint at {client.base_url}: {exc}"
        ) from exc
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if response.status_code != 200:
        reason = str(payload.get("error", f"http_{response.status_code}"))
        message = str(payload.get("message", response.reason_phrase))
        raise MintClientError(reason, f"{path} rejected: {message}")
    return payload


def enroll(
    url: str, user: str, authenticator: Authenticator, invitation: str | None = None
) -> dict[str, Any]:
    """Register a new credential of ``authenticator`` for ``user`` and return the mint's response.

    ``invitation`` is the code from ``ztmint users invite``; only a mint with open enrollment
    accepts None.
    """
    body: dict[str, Any] = {"user": user}
    if invitation is not None:
        body["invitation"] = invitation
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        started = post_json(client, "/register", body)
        credential = authenticator.register(started["publicKey"])
        return post_json(
            client,
            "/register/complete",
            {"challenge_id": started["challenge_id"], "credential": credential},
        )


def mint_token(
    url: str,
    user: str,
    authenticator: Authenticator,
    scopes: Sequence[str],
    audience: str,
    ttl_seconds: int,
) -> dict[str, Any]:
    """Mint a token; return the mint's response (token, receipt, jti, expires_at, audit_index).

    Security:
        The response carries the token and its receipt: bearer credentials. Do not log it.
    """
    request = {"scopes": list(scopes), "audience": audience, "ttl_seconds": ttl_seconds}
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT_SECONDS) as client:
        started = post_json(client, "/assert", {"user": user, **request})
        assertion = authenticator.authenticate(started["publicKey"])
        return post_json(
            client,
            "/mint",
            {"challenge_id": started["challenge_id"], **request, "assertion": assertion},
        )
