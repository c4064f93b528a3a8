"""The one authorization decision shared by the gRPC and HTTP ext_authz services.

For each request forwarded by Envoy (ext_authz v3, ``CheckRequest.attributes.request.http``):
read ``Authorization: Bearer <token>`` and ``x-kms-sig: <receipt>``, verify the token and
the receipt, normalise the path, then ask OPA whether the token's scopes allow this method
and path. The result is a ``CheckResult`` that each transport turns into its own response.

Status mapping (the only place it is decided): token, receipt and credential-header problems
are 401, ``path_invalid`` is 400, and a policy denial, an OPA failure or an unexpected error
is 403.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from authz.cache import DecisionCache, DecisionKey, RevisionWatcher, TokenCache
from authz.errors import AuthzError, Reason
from authz.keys import KeySet
from authz.metrics import CacheCollector
from authz.opa import PolicyDecision
from authz.paths import normalize_path
from authz.replay import ReplayGuard
from authz.verify import DEFAULT_LEEWAY_SECONDS, VerifiedToken, verify_receipt, verify_token

logger = logging.getLogger("ztmint.authz")

AUTHORIZATION_HEADER = "authorization"
RECEIPT_HEADER = "x-kms-sig"
UPSTREAM_SUB_HEADER = "x-ztmint-sub"
UPSTREAM_SCOPE_HEADER = "x-ztmint-scope"
UPSTREAM_JTI_HEADER = "x-ztmint-jti"
UPSTREAM_HEADERS = (UPSTREAM_SUB_HEADER, UPSTREAM_SCOPE_HEADER, UPSTREAM_JTI_HEADER)

_STATUS_BY_REASON: dict[Reason, int] = {
    Reason.PATH_INVALID: 400,
    Reason.SCOPE_DENIED: 403,
    Reason.POLICY_UNAVAILABLE: 403,
    Reason.POLICY_ERROR: 403,
    Reason.INTERNAL_ERROR: 403,
    Reason.REPLAY_CACHE_FULL: 403,
}
_UNAUTHENTICATED = 401


def http_status_for(reason: Reason) -> int:
    """Return the HTTP status sent to the client for a refusal with ``reason``."""
    return _STATUS_BY_REASON.get(reason, _UNAUTHENTICATED)


class PolicyClient(Protocol):
    """Anything that returns a policy decision for an input, such as ``authz.opa.OpaClient``."""

    def decide(self, policy_input: Mapping[str, object], request_id: str) -> PolicyDecision:
        """Return the decision, or raise ``AuthzError`` when none can be had."""
        ...


@dataclass(frozen=True)
class HttpRequest:
    """The parts of the client's HTTP request that the decision uses.

    Attributes:
        method: the HTTP method, as Envoy forwards it.
        path: the request target (path and query), as Envoy forwards it.
        headers: header names in lower case; Envoy joins repeated headers with ",".
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check, for a transport to encode.

    Attributes:
        allowed: whether the request may go upstream.
        status: 200 when allowed, else the HTTP status for the client.
        reason: the refusal reason, or None when allowed.
        upstream_headers: headers to set on the upstream request when allowed.
        request_id: the id under which this check was logged.
    """

    allowed: bool
    status: int
    reason: Reason | None
    upstream_headers: Mapping[str, str]
    request_id: str

    def denied_body(self) -> bytes:
        """Return the JSON body sent to a refused client: ``{"error": <reason>}``."""
        reason = self.reason.value if self.reason is not None else Reason.INTERNAL_ERROR.value
        return json.dumps({"error": reason}, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class DecisionMetrics:
    """Prometheus metrics of the decision core, in a registry of their own."""

    registry: CollectorRegistry
    decisions: Counter
    latency: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> DecisionMetrics:
        """Create the metrics in ``registry``, or in a new registry."""
        registry = registry if registry is not None else CollectorRegistry()
        decisions = Counter(
            "ztmint_authz_decisions",
            "Authorization decisions, by outcome (allow or deny) and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        latency = Histogram(
            "ztmint_authz_decision_seconds",
            "Time to reach a decision, including the OPA query, in seconds.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        return cls(registry, decisions, latency)


class DecisionCore:
    """Decides ext_authz checks: verifies the credentials, then queries the policy.

    Args:
        keys: returns the current key set; called once per check so a refresher can swap it.
        policy: the policy client.
        audience: the exact ``aud`` this service accepts.
        issuer: the exact ``iss`` of the mint service.
        clock: returns the current time in seconds since the epoch.
        leeway: clock skew allowed on the token's time claims, in seconds.
        metrics: where to count decisions; a fresh registry when omitted.
        token_cache: verified (token, receipt) pairs; None verifies every request.
        decision_cache: OPA decisions; used only together with ``policy_revision``.
        policy_revision: reads OPA's bundle revision, which keys ``decision_cache``.
        replay_guard: rejects a second use of a token whose audience it covers.
    """

    def __init__(
        self,
        keys: Callable[[], KeySet],
        policy: PolicyClient,
        audience: str,
        issuer: str,
        clock: Callable[[], float] = time.time,
        leeway: int = DEFAULT_LEEWAY_SECONDS,
        metrics: DecisionMetrics | None = None,
        *,
        token_cache: TokenCache | None = None,
        decision_cache: DecisionCache | None = None,
        policy_revision: RevisionWatcher | None = None,
        replay_guard: ReplayGuard | None = None,
    ) -> None:
        if (decision_cache is None) != (policy_revision is None):
            raise ValueError("decision_cache and policy_revision must be given together")
        self._keys = keys
        self._policy = policy
        self._audience = audience
        self._issuer = issuer
        self._clock = clock
        self._leeway = leeway
        self._token_cache = token_cache
        self._decision_cache = decision_cache
        self._policy_revision = policy_revision
        self._replay_guard = replay_guard
        self.metrics = metrics if metrics is not None else DecisionMetrics.create()
        self.metrics.registry.register(
            CacheCollector({"token": token_cache, "decision": decision_cache})
        )

    def check(self, request: HttpRequest) -> CheckResult:
        """Decide one request; never raises.

        Security:
            Fails closed: any exception other than ``AuthzError`` becomes a 403
            ``internal_error``. The log line carries the request id and the traceback, and
            this module puts no header value into it.
        """
        request_id = uuid.uuid4().hex
        started = time.perf_counter()
        try:
            result = self._decide(request, request_id)
        except AuthzError as exc:
            logger.info(
                "decision denied request_id=%s reason=%s detail=%s",
                request_id,
                exc.reason.value,
                exc.detail,
            )
            result = _denied(exc.reason, request_id)
        except Exception:
            logger.exception("decision failed request_id=%s reason=internal_error", request_id)
            result = _denied(Reason.INTERNAL_ERROR, request_id)

        outcome = "allow" if result.allowed else "deny"
        reason = result.reason.value if result.reason is not None else "allowed"
        self.metrics.decisions.labels(outcome=outcome, reason=reason).inc()
        self.metrics.latency.observe(time.perf_counter() - started)
        return result

    def _decide(self, request: HttpRequest, request_id: str) -> CheckResult:
        token_text, receipt_text = read_credentials(request.headers)
        now = int(self._clock())
        keys = self._keys()
        token = self._verified_token(token_text, receipt_text, keys, now)
        path = normalize_path(request.path)

        decision, cached = self._policy_decision(token, request.method, path, request_id)
        if not decision.allow:
            raise AuthzError(
                Reason.SCOPE_DENIED,
                f"policy denied {request.method!r} {path!r} for jti {token.jti!r}:"
                f" {decision.reason!r} (decision_id={decision.decision_id} cached={cached})",
            )
        # Claimed only after the policy allowed, so a denied request does not use up the token.
        if self._replay_guard is not None and self._replay_guard.applies_to(token.aud):
            self._replay_guard.claim(token.jti, token.exp, now)

        # Allowed checks log at DEBUG because one INFO line per check cost 5-6 % of the
        # service's GIL time at saturation (bench/profile.py); denials stay at INFO.
        logger.debug(
            "decision allowed request_id=%s decision_id=%s cached=%s sub=%s jti=%s kid=%s",
            request_id,
            decision.decision_id,
            cached,
            token.sub,
            token.jti,
            token.kid,
        )
        headers = {
            UPSTREAM_SUB_HEADER: token.sub,
            UPSTREAM_SCOPE_HEADER: " ".join(token.scopes),
            UPSTREAM_JTI_HEADER: token.jti,
        }
        return CheckResult(True, 200, None, headers, request_id)

    def _verified_token(
        self, token_text: str, receipt_text: str, keys: KeySet, now: int
    ) -> VerifiedToken:
        if self._token_cache is not None:
            cached = self._token_cache.lookup(token_text, receipt_text, keys, now, self._leeway)
            if cached is not None:
                return cached
        token = verify_token(
            token_text, keys, now, self._audience, self._issuer, leeway=self._leeway
        )
        receipt = verify_receipt(receipt_text, token, keys, now)
        if self._token_cache is not None:
            self._token_cache.store(token_text, receipt_text, token, receipt, keys)
        return token

    def _policy_decision(
        self, token: VerifiedToken, method: str, path: str, request_id: str
    ) -> tuple[PolicyDecision, bool]:
        """Return the policy's decision and whether it came from the decision cache.

        A cached decision keeps the ``decision_id`` OPA gave when it was first made, so the
        log line of a cache hit points at the OPA decision log entry that contains the reason.
        """
        policy_input = {
            "method": method,
            "path": path,
            "scopes": list(token.scopes),
            "sub": token.sub,
            "aud": token.aud,
        }
        if self._decision_cache is None or self._policy_revision is None:
            return self._policy.decide(policy_input, request_id), False

        revision = self._policy_revision.current()
        if revision is None:
            # Without a revision no cached decision can be trusted to be current.
            self._decision_cache.clear()
            return self._policy.decide(policy_input, request_id), False
        key = DecisionKey.of(method, path, token.scopes, token.sub, token.aud)
        cached = self._decision_cache.lookup(revision, key)
        if cached is not None:
            return cached, True
        decision = self._policy.decide(policy_input, request_id)
        self._decision_cache.store(revision, key, decision)
        return decision, False


def _denied(reason: Reason, request_id: str) -> CheckResult:
    return CheckResult(False, http_status_for(reason), reason, {}, request_id)


def read_credentials(headers: Mapping[str, str]) -> tuple[str, str]:
    """Return the token from ``Authorization: Bearer`` and the receipt from ``x-kms-sig``.

    The Bearer scheme name is matched case-insensitively (RFC 7235 section 2.1). A comma in
    either header means Envoy joined two values: a JWS never contains a comma.

    Raises:
        AuthzError: ``header_duplicated`` for two values of a header, ``token_missing`` for
            no Bearer token, ``receipt_missing`` for no receipt.
    """
    authorization = headers.get(AUTHORIZATION_HEADER, "")
    receipt = headers.get(RECEIPT_HEADER, "")
    if "," in authorization:
        raise AuthzError(Reason.HEADER_DUPLICATED, "Authorization header has more than one value")
    if "," in receipt:
        raise AuthzError(Reason.HEADER_DUPLICATED, "x-kms-sig header has more than one value")

    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthzError(Reason.TOKEN_MISSING, "expected an 'Authorization: Bearer <token>' header")
    receipt = receipt.strip()
    if not receipt:
        raise AuthzError(Reason.RECEIPT_MISSING, "expected an 'x-kms-sig: <receipt>' header")
    return token, receipt
