"""The mint policy: may this identity have these scopes for this audience and TTL?

``MintPolicy`` is the interface. ``OpaMintPolicy`` queries an OPA server through its Data API
(``POST /v1/data/ztmint/mint/decision`` with ``{"input": ...}``) for the decision of the Rego
package ``ztmint.mint`` in ``opa/mint``. The input is::

    {"sub": "alice@example.com", "scopes": ["payments:read"], "aud": "payments",
     "ttl_seconds": 900}

and the decision ``{"allow": bool, "reason": str, "message": str, "denied_scopes": [str]}``.

Security:
    The client fails closed. An unreachable or slow server, a non-200 status, an undefined
    decision (no ``result``, for example when the package is not loaded) or a decision of
    the wrong shape all raise ``PolicyUnavailable``, which the mint turns into a 503;
    only ``"allow": true`` lets a mint through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from mint.requests import TokenRequest

log = logging.getLogger(__name__)

DECISION_PATH = "/v1/data/ztmint/mint/decision"
DEFAULT_TIMEOUT_SECONDS = 2.0


class PolicyUnavailable(Exception):
    """The mint policy could not be evaluated, so the mint must reject (fail closed)."""


@dataclass(frozen=True)
class PolicyDecision:
    """The policy's decision on one token request.

    Attributes:
        allow: whether the mint may sign the token.
        reason: the policy's reason code, such as ``scope_not_granted``.
        message: a sentence for the engineer, naming each problem.
        denied_scopes: the requested scopes the policy denied.
    """

    allow: bool
    reason: str
    message: str
    denied_scopes: tuple[str, ...] = ()


class MintPolicy(Protocol):
    """A source of mint decisions."""

    def decide(self, user: str, request: TokenRequest) -> PolicyDecision:
        """Return the decision for ``user`` requesting ``request``.

        Raises:
            PolicyUnavailable: when no decision could be obtained.
        """
        ...


def policy_input(user: str, request: TokenRequest) -> dict[str, Any]:
    """Build the OPA input document of a token request."""
    return {
        "sub": user,
        "scopes": list(request.scopes),
        "aud": request.audience,
        "ttl_seconds": request.ttl_seconds,
    }


def parse_decision(body: object) -> PolicyDecision:
    """Read a Data API response body into a ``PolicyDecision``.

    Raises:
        PolicyUnavailable: when the decision is undefined or not of the expected shape.
    """
    if not isinstance(body, dict) or "result" not in body:
        raise PolicyUnavailable(
            "the mint policy decision is undefined; load the ztmint.mint package into OPA"
        )
    result = body["result"]
    if not isinstance(result, dict):
        raise PolicyUnavailable("the mint policy decision is not an object")
    allow = result.get("allow")
    reason = result.get("reason")
    message = result.get("message")
    denied = result.get("denied_scopes", [])
    if not isinstance(allow, bool) or not isinstance(reason, str) or not isinstance(message, str):
        raise PolicyUnavailable(
            "the mint policy decision lacks allow (boolean), reason or message (strings)"
        )
    if not isinstance(denied, list) or not all(isinstance(scope, str) for scope in denied):
        raise PolicyUnavailable("the mint policy decision has denied_scopes that are not strings")
    return PolicyDecision(allow, reason, message, tuple(denied))


class OpaMintPolicy:
    """``MintPolicy`` backed by an OPA server.

    Args:
        base_url: the OPA server, for example ``http://127.0.0.1:8181``.
        timeout_seconds: httpx timeout for connecting and for each read or write. Past it
            the mint rejects with ``policy_unavailable``.
        transport: an httpx transport, for tests; default a real connection pool.
    """

    def __init__(
        self,
        base_url: str,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self._base_url, timeout=timeout_seconds, transport=transport
        )

    def __repr__(self) -> str:
        return f"OpaMintPolicy(base_url={self._base_url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def decide(self, user: str, request: TokenRequest) -> PolicyDecision:
        """Ask OPA for the decision on ``request`` by ``user``.

        Raises:
            PolicyUnavailable: when OPA cannot be reached, times out, returns a non-200
                status, or returns an undefined or malformed decision.
        """
        try:
            response = self._client.post(DECISION_PATH, json={"input": policy_input(user, request)})
        except httpx.TimeoutException as exc:
            raise PolicyUnavailable(f"OPA at {self._base_url} timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise PolicyUnavailable(f"OPA at {self._base_url} is unreachable: {exc}") from exc
        if response.status_code != 200:
            raise PolicyUnavailable(
                f"OPA at {self._base_url} returned HTTP {response.status_code} for the decision"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise PolicyUnavailable(f"OPA at {self._base_url} returned a non-JSON body") from exc
        return parse_decision(body)
