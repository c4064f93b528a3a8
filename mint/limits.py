"""Admission control of the mint: per-identity rate limits, breakers and the mint policy.

A bucket contains at most ``burst`` tokens and refills at ``per_minute`` tokens per minute; each
mint takes one token. The refill and the take are one conditional ``UPDATE ... RETURNING`` in
one transaction (``take_token_sqlite``), so concurrent requests and several mint processes
sharing the database never take more tokens than the bucket holds.

Limitations:
    The bucket is checked after the assertion has verified and its challenge is consumed, so
    only authenticated mints spend an identity's budget, and a rate-limited client must
    start again with ``/assert``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mint.audit import AuditError
from mint.breakers import BreakerLimits, Breakers, Transition, TransitionKind
from mint.errors import MintReason, PolicyRejected, Throttled
from mint.metrics import MintMetrics
from mint.policy import DEFAULT_TIMEOUT_SECONDS, MintPolicy, OpaMintPolicy, PolicyUnavailable
from mint.requests import TokenRequest

log = logging.getLogger(__name__)

RATE_BUCKETS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket_key  TEXT PRIMARY KEY,
    tokens      REAL NOT NULL,
    updated_at  REAL NOT NULL
)
"""

# The refill is capped at the burst, and a clock that moves back refills nothing. The
# WHERE clause repeats the refill so that the row changes only when a whole token is there.
_REFILL_AND_TAKE_SQL = """
UPDATE rate_buckets
SET tokens = MIN(:burst, tokens + MAX(0, :now - updated_at) * :per_second) - 1,
    updated_at = MAX(updated_at, :now)
WHERE bucket_key = :key
  AND MIN(:burst, tokens + MAX(0, :now - updated_at) * :per_second) >= 1
RETURNING tokens
"""


@dataclass(frozen=True)
class RateLimit:
    """Capacity and refill rate of each identity's token bucket.

    Attributes:
        burst: tokens in a full bucket, so the number of mints allowed back to back.
        per_minute: tokens added per minute.
    """

    burst: int = 10
    per_minute: float = 10.0

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"rate limit burst is {self.burst}; expected at least 1")
        if not self.per_minute > 0:
            raise ValueError(f"rate limit per_minute is {self.per_minute}; expected more than 0")

    @property
    def per_second(self) -> float:
        """Tokens added per second."""
        return self.per_minute / 60.0


@dataclass(frozen=True)
class RateDecision:
    """The outcome of taking a token: whether one was taken, and when one will be there.

    Attributes:
        allowed: a token was taken.
        tokens_left: tokens in the bucket after this call.
        retry_after: seconds until a whole token is there; 0 when ``allowed``.
    """

    allowed: bool
    tokens_left: float
    retry_after: int


def seconds_until_token(tokens: float, limit: RateLimit) -> int:
    """Return the whole seconds until a bucket holding ``tokens`` has one token again."""
    if tokens >= 1:
        return 0
    return max(1, math.ceil((1 - tokens) / limit.per_second))


def take_token_sqlite(
    conn: sqlite3.Connection, key: str, now: float, limit: RateLimit
) -> RateDecision:
    """Take one token from bucket ``key`` inside the caller's write transaction.

    A new bucket starts full. Call this inside ``BEGIN IMMEDIATE`` so that the insert of a
    new bucket, the refill and the take are one atomic step for every connection to the
    database file.
    """
    conn.execute(RATE_BUCKETS_SCHEMA)
    conn.execute(
        "INSERT INTO rate_buckets (bucket_key, tokens, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(bucket_key) DO NOTHING",
        (key, float(limit.burst), now),
    )
    parameters = {
        "key": key,
        "now": now,
        "burst": float(limit.burst),
        "per_second": limit.per_second,
    }
    row = conn.execute(_REFILL_AND_TAKE_SQL, parameters).fetchone()
    if row is not None:
        return RateDecision(True, row[0], 0)
    tokens, updated_at = conn.execute(
        "SELECT tokens, updated_at FROM rate_buckets WHERE bucket_key = ?", (key,)
    ).fetchone()
    available = min(limit.burst, tokens + max(0.0, now - updated_at) * limit.per_second)
    return RateDecision(False, available, seconds_until_token(available, limit))


RATE_BUCKETS_SCHEMA_POSTGRES = RATE_BUCKETS_SCHEMA.replace("REAL", "DOUBLE PRECISION")


def take_token_postgres(conn: Any, key: str, now: float, limit: RateLimit) -> RateDecision:
    """Take one token from bucket ``key`` inside the caller's psycopg transaction.

    The same steps as ``take_token_sqlite`` with PostgreSQL's ``LEAST`` and ``GREATEST``.
    The ``UPDATE`` takes the row lock and re-checks its ``WHERE`` clause after waiting for
    it, so concurrent callers at READ COMMITTED never take more tokens than there are. The
    schema must already contain ``RATE_BUCKETS_SCHEMA_POSTGRES``, because concurrent
    ``CREATE TABLE IF NOT EXISTS`` statements can fail in PostgreSQL.
    """
    conn.execute(
        "INSERT INTO rate_buckets (bucket_key, tokens, updated_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (bucket_key) DO NOTHING",
        (key, float(limit.burst), now),
    )
    parameters = {
        "key": key,
        "now": now,
        "burst": float(limit.burst),
        "per_second": limit.per_second,
    }
    sql = (
        _REFILL_AND_TAKE_SQL.replace("MIN(", "LEAST(")
        .replace("MAX(", "GREATEST(")
        .replace(":burst", "%(burst)s")
        .replace(":now", "%(now)s")
        .replace(":per_second", "%(per_second)s")
        .replace(":key", "%(key)s")
    )
    row = conn.execute(sql, parameters).fetchone()
    if row is not None:
        return RateDecision(True, row[0], 0)
    tokens, updated_at = conn.execute(
        "SELECT tokens, updated_at FROM rate_buckets WHERE bucket_key = %s", (key,)
    ).fetchone()
    available = min(limit.burst, tokens + max(0.0, now - updated_at) * limit.per_second)
    return RateDecision(False, available, seconds_until_token(available, limit))


class RateBucketStore(Protocol):
    """The part of ``mint.store.Store`` that stores the rate buckets."""

    def take_rate_token(self, key: str, now: float, limit: RateLimit) -> RateDecision:
        """Take one token from rate bucket ``key`` atomically."""
        ...


class AuditAppender(Protocol):
    """The part of ``mint.audit.AuditLog`` that appends a record."""

    def append(self, event: str, fields: Mapping[str, Any]) -> int:
        """Append one record and return its index."""
        ...


@dataclass(frozen=True)
class GuardSettings:
    """Rate limit, breaker and mint policy settings (``ZTMINT_RATE_*``, ``ZTMINT_BREAKER_*``,
    ``ZTMINT_GLOBAL_*`` and ``ZTMINT_OPA_*``; see ``guard_settings_from_env``).

    Attributes:
        rate_limit: each identity's token bucket.
        breaker_limits: thresholds and cool-downs of the circuit breakers.
        opa_url: base URL of the OPA server holding ``ztmint.mint``, or None for no policy.
        opa_timeout_seconds: how long a policy decision may take before the mint rejects.
    """

    rate_limit: RateLimit = field(default_factory=RateLimit)
    breaker_limits: BreakerLimits = field(default_factory=BreakerLimits)
    opa_url: str | None = None
    opa_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS


# Environment variable -> BreakerLimits field.
_BREAKER_VARIABLES = {
    "ZTMINT_BREAKER_WINDOW_SECONDS": "window_seconds",
    "ZTMINT_BREAKER_MAX_REFUSALS": "max_refusals",
    "ZTMINT_BREAKER_MAX_DENIED_SCOPES": "max_denied_scopes",
    "ZTMINT_BREAKER_COOLDOWN_SECONDS": "cooldown_seconds",
    "ZTMINT_GLOBAL_WINDOW_SECONDS": "global_window_seconds",
    "ZTMINT_GLOBAL_MAX_MINTS": "global_max_mints",
    "ZTMINT_GLOBAL_COOLDOWN_SECONDS": "global_cooldown_seconds",
}


def guard_settings_from_env(
    env: Mapping[str, str], error: type[ValueError] = ValueError
) -> GuardSettings:
    """Read ``GuardSettings`` from environment variables; unset ones keep their defaults.

    ``ZTMINT_RATE_BURST`` (tokens) and ``ZTMINT_RATE_PER_MINUTE`` size the token bucket,
    ``ZTMINT_OPA_URL`` and ``ZTMINT_OPA_TIMEOUT_SECONDS`` select the policy server, and the
    ``ZTMINT_BREAKER_*`` and ``ZTMINT_GLOBAL_*`` variables set the ``BreakerLimits`` fields.

    Raises:
        error: (``ValueError`` unless given) naming the variable with an unusable value.
    """
    defaults = GuardSettings()
    try:
        rate = RateLimit(
            burst=_number(env, "ZTMINT_RATE_BURST", defaults.rate_limit.burst, int),
            per_minute=_number(env, "ZTMINT_RATE_PER_MINUTE", defaults.rate_limit.per_minute),
        )
        breaker_values = {
            name: _number(env, variable, getattr(defaults.breaker_limits, name), int)
            for variable, name in _BREAKER_VARIABLES.items()
        }
        breakers = BreakerLimits(**breaker_values)
        timeout = _number(env, "ZTMINT_OPA_TIMEOUT_SECONDS", defaults.opa_timeout_seconds)
        if not timeout > 0:
            raise ValueError(f"ZTMINT_OPA_TIMEOUT_SECONDS is {timeout}; expected more than 0")
    except ValueError as exc:
        raise error(str(exc)) from exc
    return GuardSettings(rate, breakers, env.get("ZTMINT_OPA_URL") or None, timeout)


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float) -> Any:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{name} is {text!r}; expected a number") from None


class MintGuard:
    """Rate limits, circuit breakers, the mint policy and the metrics around each mint.

    ``MintService`` calls ``check_breakers`` before it verifies an assertion, ``admit`` after
    the assertion verified and its challenge was consumed, and ``record_minted`` once a token
    was issued. Every breaker trip and reset is appended to the audit log as
    ``breaker_tripped`` or ``breaker_reset`` and counted in the metrics.

    Args:
        metrics: the app's metrics.
        buckets: where the rate buckets live, or None for no rate limit.
        rate_limit: each identity's token bucket.
        breakers: the circuit breakers, or None for none.
        policy: the mint policy, or None to apply none.
        audit: where breaker transitions are recorded, or None.
    """

    def __init__(
        self,
        metrics: MintMetrics,
        *,
        buckets: RateBucketStore | None = None,
        rate_limit: RateLimit | None = None,
        breakers: Breakers | None = None,
        policy: MintPolicy | None = None,
        audit: AuditAppender | None = None,
    ) -> None:
        self.metrics = metrics
        self._buckets = buckets
        self._rate_limit = rate_limit or RateLimit()
        self._breakers = breakers
        self._policy = policy
        self._audit = audit

    @classmethod
    def unguarded(cls) -> MintGuard:
        """Build a guard with metrics only: no rate limit, breaker or policy."""
        return cls(MintMetrics())

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time the enclosed block as mint stage ``name``."""
        return self.metrics.stage(name)

    def record_refusal(self, reason: MintReason) -> None:
        """Count a rejected request by its reason code."""
        self.metrics.refusals.labels(reason=reason.value).inc()

    def record_minted(self) -> None:
        """Count an issued token."""
        self.metrics.tokens.inc()

    def check_breakers(self, user: str, now: float) -> None:
        """Close breakers whose cool-down ended, then reject when one for ``user`` is open.

        Raises:
            Throttled: ``global_breaker_open`` or ``breaker_open``, with the seconds left.
        """
        if self._breakers is None:
            return
        self._apply(self._breakers.close_expired(now))
        global_until = self._breakers.global_open_until()
        if global_until is not None:
            raise Throttled(
                MintReason.GLOBAL_BREAKER_OPEN,
                "the mint is paused because the mint rate is far above normal; "
                f"retry in {_seconds_left(global_until, now)} s",
                _seconds_left(global_until, now),
            )
        identity_until = self._breakers.identity_open_until(user)
        if identity_until is not None:
            raise Throttled(
                MintReason.BREAKER_OPEN,
                f"minting for {user!r} is paused after repeated policy refusals; "
                f"retry in {_seconds_left(identity_until, now)} s or ask for the scopes you need",
                _seconds_left(identity_until, now),
            )

    def admit(self, user: str, request: TokenRequest, now: float) -> None:
        """Apply the rate limit, the mint policy and the global breaker, in that order.

        Raises:
            Throttled: ``rate_limited`` or ``global_breaker_open``.
            PolicyRejected: ``policy_denied`` with the policy's message, or
                ``policy_unavailable`` when the policy could not be evaluated.
        """
        self._take_rate_token(user, now)
        self._apply_policy(user, request, now)
        if self._breakers is None:
            return
        trip = self._breakers.admit_mint(now)
        if trip is not None:
            self._apply([trip])
        global_until = self._breakers.global_open_until()
        if global_until is not None:
            raise Throttled(
                MintReason.GLOBAL_BREAKER_OPEN,
                "the mint is paused because the mint rate is far above normal; "
                f"retry in {_seconds_left(global_until, now)} s",
                _seconds_left(global_until, now),
            )

    def _take_rate_token(self, user: str, now: float) -> None:
        if self._buckets is None:
            return
        decision = self._buckets.take_rate_token(f"mint:{user}", now, self._rate_limit)
        if decision.allowed:
            return
        self.metrics.rate_limited.inc()
        raise Throttled(
            MintReason.RATE_LIMITED,
            f"{user!r} may mint {self._rate_limit.burst} tokens at once and "
            f"{self._rate_limit.per_minute:g} per minute; retry in {decision.retry_after} s",
            decision.retry_after,
        )

    def _apply_policy(self, user: str, request: TokenRequest, now: float) -> None:
        if self._policy is None:
            return
        with self.stage("policy"):
            try:
                decision = self._policy.decide(user, request)
            except PolicyUnavailable as exc:
                log.error("event=policy_unavailable sub=%s error=%s", user, exc)
                raise PolicyRejected(
                    MintReason.POLICY_UNAVAILABLE,
                    "the mint policy could not be evaluated, so nothing was issued; retry shortly",
                ) from exc
        if decision.allow:
            return
        if self._breakers is not None:
            trip = self._breakers.record_refusal(user, decision.denied_scopes, now)
            if trip is not None:
                self._apply([trip])
        raise PolicyRejected(
            MintReason.POLICY_DENIED, f"{decision.message} (policy reason: {decision.reason})"
        )

    def _apply(self, transitions: Iterable[Transition]) -> None:
        for transition in transitions:
            self._record_transition(transition)
        if self._breakers is not None:
            for kind, count in self._breakers.open_count().items():
                self.metrics.breaker_open.labels(breaker=kind.value).set(count)

    def _record_transition(self, transition: Transition) -> None:
        event = "breaker_tripped" if transition.kind is TransitionKind.TRIP else "breaker_reset"
        self.metrics.breaker_transitions.labels(
            breaker=transition.breaker.value, transition=transition.kind.value
        ).inc()
        level = logging.WARNING if transition.kind is TransitionKind.TRIP else logging.INFO
        log.log(
            level,
            "event=%s breaker=%s key=%s cause=%s open_until=%d",
            event,
            transition.breaker.value,
            transition.key,
            transition.cause,
            transition.open_until,
        )
        if self._audit is None:
            return
        fields = {
            "breaker": transition.breaker.value,
            "sub": transition.key,
            "cause": transition.cause,
            "open_until": int(transition.open_until),
        }
        try:
            self._audit.append(event, fields)
        except (AuditError, OSError) as exc:
            log.error("event=audit_append_failed audit_event=%s error=%s", event, exc)


def build_guard(
    settings: GuardSettings, buckets: RateBucketStore, audit: AuditAppender
) -> MintGuard:
    """Build the guard of a running mint, with OPA as the policy when ``opa_url`` is set."""
    policy: MintPolicy | None = None
    if settings.opa_url:
        policy = OpaMintPolicy(settings.opa_url, settings.opa_timeout_seconds)
    else:
        log.warning(
            "event=mint_policy_disabled NO MINT POLICY IS APPLIED: any enrolled engineer can "
            "mint any scope for any audience. Set ZTMINT_OPA_URL to an OPA server with the "
            "ztmint.mint package (opa/mint) outside development."
        )
    return MintGuard(
        MintMetrics(),
        buckets=buckets,
        rate_limit=settings.rate_limit,
        breakers=Breakers(settings.breaker_limits),
        policy=policy,
        audit=audit,
    )


def _seconds_left(until: float, now: float) -> int:
    return max(1, math.ceil(until - now))
