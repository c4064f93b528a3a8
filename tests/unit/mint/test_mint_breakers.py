"""Tests of the circuit breakers (``mint.breakers``) and of the service rejecting with them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mint_testkit import ISSUER, ORIGIN, ServiceParts, build_service

from mint.breakers import (
    GLOBAL_KEY,
    BreakerKind,
    BreakerLimits,
    Breakers,
    TransitionKind,
)
from mint.errors import MintError, MintReason, Throttled
from mint.limits import MintGuard
from mint.metrics import MintMetrics
from mint.policy import PolicyDecision
from mint.requests import TokenRequest
from mint.service import MintService
from mint.softkey import SoftwareAuthenticator

NOW = 1_767_225_600.0
LIMITS = BreakerLimits(
    window_seconds=60,
    max_refusals=3,
    max_denied_scopes=2,
    cooldown_seconds=300,
    global_window_seconds=10,
    global_max_mints=4,
    global_cooldown_seconds=30,
)


def test_record_refusal_trips_at_max_refusals() -> None:
    breakers = Breakers(LIMITS)
    assert breakers.record_refusal("alice", [], NOW) is None
    assert breakers.record_refusal("alice", [], NOW + 1) is None
    trip = breakers.record_refusal("alice", [], NOW + 2)
    assert trip is not None
    assert trip.kind is TransitionKind.TRIP
    assert trip.cause == "refusals"
    assert trip.open_until == NOW + 2 + 300
    assert breakers.identity_open_until("alice") == NOW + 302


def test_record_refusal_forgets_refusals_outside_window() -> None:
    breakers = Breakers(LIMITS)
    breakers.record_refusal("alice", [], NOW)
    breakers.record_refusal("alice", [], NOW + 1)
    assert breakers.record_refusal("alice", [], NOW + 61) is None
    assert breakers.identity_open_until("alice") is None


def test_record_refusal_trips_on_scope_probing() -> None:
    breakers = Breakers(LIMITS)
    assert breakers.record_refusal("alice", ["admin:read"], NOW) is None
    trip = breakers.record_refusal("alice", ["admin:write"], NOW + 1)
    assert trip is not None
    assert trip.cause == "denied_scopes"


def test_record_refusal_counts_same_scope_once() -> None:
    breakers = Breakers(BreakerLimits(max_refusals=10, max_denied_scopes=2))
    for offset in range(5):
        assert breakers.record_refusal("alice", ["admin:read"], NOW + offset) is None


def test_record_refusal_keeps_identities_apart() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(3):
        breakers.record_refusal("alice", [], NOW + offset)
    assert breakers.identity_open_until("bob") is None


def test_close_expired_resets_after_cooldown() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(3):
        breakers.record_refusal("alice", [], NOW + offset)
    assert breakers.close_expired(NOW + 301) == []
    resets = breakers.close_expired(NOW + 302)
    assert [(r.breaker, r.kind, r.key) for r in resets] == [
        (BreakerKind.IDENTITY, TransitionKind.RESET, "alice")
    ]
    assert breakers.identity_open_until("alice") is None


def test_close_expired_starts_identity_with_clean_window() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(3):
        breakers.record_refusal("alice", [], NOW + offset)
    breakers.close_expired(NOW + 302)
    assert breakers.record_refusal("alice", [], NOW + 303) is None


def test_admit_mint_trips_global_breaker_above_max() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(4):
        assert breakers.admit_mint(NOW + offset) is None
    trip = breakers.admit_mint(NOW + 5)
    assert trip is not None
    assert trip.breaker is BreakerKind.GLOBAL
    assert trip.key == GLOBAL_KEY
    assert trip.cause == "mint_rate"
    assert breakers.global_open_until() == NOW + 35


def test_admit_mint_slides_window() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(4):
        breakers.admit_mint(NOW + offset)
    assert breakers.admit_mint(NOW + 10) is None
    assert breakers.global_open_until() is None


def test_close_expired_resets_global_breaker() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(5):
        breakers.admit_mint(NOW + offset)
    resets = breakers.close_expired(NOW + 34)
    assert [(r.breaker, r.kind) for r in resets] == [(BreakerKind.GLOBAL, TransitionKind.RESET)]


def test_open_count_counts_each_kind() -> None:
    breakers = Breakers(LIMITS)
    for offset in range(3):
        breakers.record_refusal("alice", [], NOW + offset)
    assert breakers.open_count() == {BreakerKind.IDENTITY: 1, BreakerKind.GLOBAL: 0}


def test_breaker_limits_rejects_zero() -> None:
    with pytest.raises(ValueError, match="max_refusals is 0"):
        BreakerLimits(max_refusals=0)


# Through the service, with a policy that denies listed scopes.


class DenyListPolicy:
    """Test double of ``MintPolicy``: denies the scopes in ``denied``, allows the rest."""

    def __init__(self, denied: set[str]) -> None:
        self.denied = denied

    def decide(self, user: str, request: TokenRequest) -> PolicyDecision:
        denied = tuple(scope for scope in request.scopes if scope in self.denied)
        if denied:
            return PolicyDecision(False, "scope_not_granted", f"{denied[0]} is not granted", denied)
        return PolicyDecision(True, "allowed", "allowed")


@pytest.fixture
def guarded(tmp_path: Path) -> tuple[ServiceParts, MintService, SoftwareAuthenticator]:
    parts = build_service(tmp_path / "state")
    guard = MintGuard(
        MintMetrics(),
        breakers=Breakers(LIMITS),
        policy=DenyListPolicy({"admin:read", "admin:write", "admin:delete"}),
        audit=parts.audit,
    )
    service = MintService(
        store=parts.store,
        signer=parts.signer,
        receipt_signer=parts.kms,
        audit=parts.audit,
        relying_party=parts.relying_party,
        issuer=ISSUER,
        clock=parts.clock,
        random_bytes=os.urandom,
        guard=guard,
    )
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "alice.json", ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    return parts, service, authenticator


def _mint(service: MintService, authenticator: SoftwareAuthenticator, scope: str) -> Any:
    started = service.begin_assertion("alice", [scope], "payments", 900)
    assertion = authenticator.authenticate(started.options)
    return service.mint(started.challenge_id, [scope], "payments", 900, assertion)


def _rejection(call: Any) -> MintError:
    with pytest.raises(MintError) as caught:
        call()
    return caught.value


def _audit_events(parts: ServiceParts) -> list[dict[str, Any]]:
    return [json.loads(line) for line in parts.audit.path.read_text().splitlines()]


def test_mint_rejects_with_policy_reason(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    _, service, authenticator = guarded
    error = _rejection(lambda: _mint(service, authenticator, "admin:read"))
    assert error.reason is MintReason.POLICY_DENIED
    assert error.status == 403
    assert "admin:read is not granted (policy reason: scope_not_granted)" in error.detail


def test_mint_opens_identity_breaker_after_probing(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = guarded
    _rejection(lambda: _mint(service, authenticator, "admin:read"))
    _rejection(lambda: _mint(service, authenticator, "admin:write"))
    error = _rejection(lambda: _mint(service, authenticator, "payments:read"))
    assert isinstance(error, Throttled)
    assert error.reason is MintReason.BREAKER_OPEN
    assert error.retry_after == 300
    assert parts.signer.calls == 0


def test_mint_breaker_trip_and_reset_are_audited(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = guarded
    _rejection(lambda: _mint(service, authenticator, "admin:read"))
    _rejection(lambda: _mint(service, authenticator, "admin:write"))
    parts.clock.advance(300)
    assert _mint(service, authenticator, "payments:read").jti
    events = [(r["event"], r["fields"].get("breaker")) for r in _audit_events(parts)]
    assert ("breaker_tripped", "identity") in events
    assert ("breaker_reset", "identity") in events


def test_mint_breaker_transitions_are_counted(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = guarded
    sample = service.guard.metrics.registry.get_sample_value
    _rejection(lambda: _mint(service, authenticator, "admin:read"))
    _rejection(lambda: _mint(service, authenticator, "admin:write"))
    assert sample("ztmint_mint_breaker_open", {"breaker": "identity"}) == 1
    parts.clock.advance(300)
    _mint(service, authenticator, "payments:read")
    trips = {"breaker": "identity", "transition": "trip"}
    resets = {"breaker": "identity", "transition": "reset"}
    assert sample("ztmint_mint_breaker_transitions_total", trips) == 1
    assert sample("ztmint_mint_breaker_transitions_total", resets) == 1
    assert sample("ztmint_mint_breaker_open", {"breaker": "identity"}) == 0


def test_mint_opens_global_breaker_above_normal_rate(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = guarded
    for _ in range(4):
        _mint(service, authenticator, "payments:read")
    error = _rejection(lambda: _mint(service, authenticator, "payments:read"))
    assert isinstance(error, Throttled)
    assert error.reason is MintReason.GLOBAL_BREAKER_OPEN
    assert error.retry_after == 30
    assert parts.signer.calls == 4


def test_mint_global_breaker_closes_after_cooldown(
    guarded: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = guarded
    for _ in range(4):
        _mint(service, authenticator, "payments:read")
    _rejection(lambda: _mint(service, authenticator, "payments:read"))
    parts.clock.advance(30)
    assert _mint(service, authenticator, "payments:read").jti
    events = [(r["event"], r["fields"].get("breaker")) for r in _audit_events(parts)]
    assert ("breaker_reset", "global") in events
