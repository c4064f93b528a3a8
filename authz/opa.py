"""A small client for OPA's REST Data API that fails closed.

The client POSTs ``{"input": ...}`` to ``/v1/data/ztmint/authz/decision`` (OPA REST API, "Get
a Document (with Input)") and expects the policy's ``decision`` object
``{"allow": <bool>, "reason": <string>}``. Every way of not getting that object, whether OPA is
down, slow, returns another status, leaves the decision undefined or returns something
else, raises an ``AuthzError``, so a caller that forgets to handle a case still denies.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from authz.errors import AuthzError, Reason

DECISION_PATH = "/v1/data/ztmint/authz/decision"
BUNDLES_PATH = "/v1/data/system/bundles"
DEFAULT_TIMEOUT_SECONDS = 0.2
REQUEST_ID_HEADER = "x-request-id"


class PolicyUnavailableError(AuthzError):
    """OPA could not be reached or timed out."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.POLICY_UNAVAILABLE, detail)


class PolicyResultError(AuthzError):
    """OPA responded, but not with a decision object the client can trust."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.POLICY_ERROR, detail)


@dataclass(frozen=True)
class PolicyDecision:
    """The policy's decision for one input.

    Attributes:
        allow: whether the request may proceed.
        reason: the policy's short reason, for logs.
        decision_id: OPA's decision id when decision logging is on, otherwise the request id
            this client sent in ``x-request-id``, so both sides can log the same id.
    """

    allow: bool
    reason: str
    decision_id: str


class OpaClient:
    """Asks one OPA server for ``data.ztmint.authz.decision``.

    Args:
        base_url: OPA's address, for example ``http://127.0.0.1:8181``.
        timeout: seconds allowed for each of connecting, sending and reading (httpx applies
            it per phase, so a reply that trickles in can take longer in total).
        transport: an httpx transport, for tests; the default opens real connections.
    """

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + DECISION_PATH
        self._bundles_url = base_url.rstrip("/") + BUNDLES_PATH
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport)

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def decide(
        self, policy_input: Mapping[str, Any], request_id: str | None = None
    ) -> PolicyDecision:
        """Return the policy's decision for ``policy_input``.

        Raises:
            PolicyUnavailableError: OPA is unreachable or timed out.
            PolicyResultError: OPA returned a non-200 status, an undefined decision or a
                decision that is not ``{"allow": bool, "reason": str}``.
        """
        request_id = request_id or uuid.uuid4().hex
        try:
            response = self._client.post(
                self._url,
                json={"input": dict(policy_input)},
                headers={REQUEST_ID_HEADER: request_id},
            )
        except httpx.TimeoutException as exc:
            detail = f"OPA timed out: {type(exc).__name__}"
            raise PolicyUnavailableError(detail) from exc
        except httpx.TransportError as exc:
            raise PolicyUnavailableError(f"OPA is unreachable: {type(exc).__name__}") from exc

        if response.status_code != 200:
            raise PolicyResultError(f"OPA returned HTTP {response.status_code}, expected 200")
        try:
            body = response.json()
        except ValueError as exc:
            raise PolicyResultError("OPA returned a body that is not JSON") from exc
        return _decision_from_body(body, request_id)

    def bundle_revision(self) -> str:
        """Return the revisions of the bundles OPA has loaded, as one comparable string.

        OPA v1.22.4 keeps each activated bundle's manifest under ``data.system.bundles``,
        read here with ``GET /v1/data/system/bundles`` (the integration tests check this
        against a bundle built by opa/build-bundle.sh). The result is the JSON object
        ``{<bundle name>: <manifest revision>}`` with sorted names, so it changes whenever
        any bundle's revision does. With no bundle loaded it is ``{}``.

        Raises:
            PolicyUnavailableError: OPA is unreachable or timed out.
            PolicyResultError: OPA returned a non-200 status or an unexpected body.
        """
        try:
            response = self._client.get(self._bundles_url)
        except httpx.TimeoutException as exc:
            raise PolicyUnavailableError(f"OPA timed out: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise PolicyUnavailableError(f"OPA is unreachable: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise PolicyResultError(
                f"reading bundle revisions returned HTTP {response.status_code}, expected 200"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise PolicyResultError("OPA returned bundle status that is not JSON") from exc
        return _revision_from_body(body)


def _decision_from_body(body: Any, request_id: str) -> PolicyDecision:
    if not isinstance(body, dict):
        raise PolicyResultError("OPA returned JSON that is not an object")
    if "result" not in body:
        raise PolicyResultError(
            "decision is undefined: is the ztmint.authz policy loaded into OPA?"
        )
    result = body["result"]
    if not isinstance(result, dict):
        raise PolicyResultError("decision is not an object")
    allow = result.get("allow")
    reason = result.get("reason")
    if not isinstance(allow, bool) or not isinstance(reason, str):
        raise PolicyResultError('decision must be {"allow": bool, "reason": string}')
    decision_id = body.get("decision_id")
    if not isinstance(decision_id, str) or not decision_id:
        decision_id = request_id
    return PolicyDecision(allow=allow, reason=reason, decision_id=decision_id)


def _revision_from_body(body: Any) -> str:
    bundles = body.get("result", {}) if isinstance(body, dict) else None
    if not isinstance(bundles, dict):
        raise PolicyResultError("data.system.bundles is not an object")
    revisions: dict[str, str] = {}
    for name, status in bundles.items():
        manifest = status.get("manifest") if isinstance(status, dict) else None
        revision = manifest.get("revision", "") if isinstance(manifest, dict) else None
        if not isinstance(revision, str):
            raise PolicyResultError(f"bundle {name!r} has no string manifest revision")
        revisions[name] = revision
    return json.dumps(revisions, sort_keys=True, separators=(",", ":"))
