"""The token cache, the decision cache and the single-use replay guard.

The property test runs one random request sequence through a decision core with both caches
and through one without, on a shared fake clock, and requires the same result every time.
Its policy is a Python stand-in for the Rego grant table, so the test can switch the bundle
revision at will; the integration tests run the caches against real OPA.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from authz.cache import (
    CacheStats,
    DecisionCache,
    DecisionKey,
    RevisionWatcher,
    TokenCache,
    credentials_cache_key,
)
from authz.decision import DecisionCore, HttpRequest
from authz.errors import AuthzError, Reason
from authz.opa import PolicyDecision, PolicyUnavailableError
from authz.replay import ReplayGuard
from authz.verify import DEFAULT_LEEWAY_SECONDS, verify_receipt, verify_token
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, NOW, Issuer, replace_segment

ISSUER_KEYS = Issuer()
KEYS = ISSUER_KEYS.key_set()

# Two revisions of a grant table: revision "b" no longer lets orders:read see /orders/7.
GRANTS_BY_REVISION: dict[str, dict[str, tuple[frozenset[str], tuple[str, ...]]]] = {
    "a": {
        "orders:read": (frozenset({"GET"}), ("/orders",)),
        "health:read": (frozenset({"GET"}), ("/healthz",)),
    },
    "b": {
        "orders:read": (frozenset({"GET"}), ("/orders/list",)),
        "health:read": (frozenset({"GET"}), ("/healthz",)),
    },
}


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class GrantTablePolicy:
    """Decides like opa/authz/authz.rego over the grant table of ``revision``."""

    def __init__(self) -> None:
        self.revision = "a"
        self.queries = 0

    def decide(self, policy_input: Mapping[str, object], request_id: str) -> PolicyDecision:
        self.queries += 1
        grants = GRANTS_BY_REVISION[self.revision]
        scopes = policy_input["scopes"]
        assert isinstance(scopes, list)
        path = str(policy_input["path"])
        allowed = any(
            policy_input["method"] in grants[scope][0]
            and any(path == prefix or path.startswith(prefix + "/") for prefix in grants[scope][1])
            for scope in scopes
            if scope in grants
        )
        return PolicyDecision(allowed, "allowed" if allowed else "scope_denied", request_id)

    def bundle_revision(self) -> str:
        return self.revision


def _headers(token: str, receipt: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "x-kms-sig": receipt}


def _valid(**claims: object) -> dict[str, str]:
    token = ISSUER_KEYS.token(**claims)
    return _headers(token, ISSUER_KEYS.receipt(token))


# A small pool, so random sequences repeat credentials and reach cache hits.
VALID = [
    _valid(jti="jti-a", scopes=("orders:read",), ttl=300),
    _valid(jti="jti-b", scopes=("health:read", "orders:read"), ttl=900),
    _valid(jti="jti-c", scopes=("orders:read",), iat=NOW + 120, ttl=600),
]
_TAMPERED_TOKEN = ISSUER_KEYS.token(jti="jti-t")
TAMPERED = _headers(
    replace_segment(_TAMPERED_TOKEN, 2, "A" + _TAMPERED_TOKEN.split(".")[2][1:]),
    ISSUER_KEYS.receipt(_TAMPERED_TOKEN),
)
EXPIRED = _valid(jti="jti-e", iat=NOW - 3000, ttl=900)
OTHER_AUDIENCE = _valid(jti="jti-o", aud="billing-api")
PATHS = ["/orders/7", "/orders/list", "/healthz", "/admin", "/orders/../healthz"]

REQUEST = st.one_of(
    st.tuples(st.just("valid"), st.sampled_from(VALID), st.sampled_from(PATHS)),
    st.tuples(st.just("tampered"), st.just(TAMPERED), st.sampled_from(PATHS)),
    st.tuples(st.just("expired"), st.just(EXPIRED), st.sampled_from(PATHS)),
    st.tuples(st.just("other-audience"), st.just(OTHER_AUDIENCE), st.sampled_from(PATHS)),
    st.tuples(st.just("scope-denied"), st.sampled_from(VALID), st.just("/admin")),
)
STEP = st.tuples(REQUEST, st.integers(min_value=-300, max_value=400), st.booleans())


def _answer(core: DecisionCore, headers: dict[str, str], path: str) -> tuple[object, ...]:
    result = core.check(HttpRequest("GET", path, headers))
    return (result.allowed, result.status, result.reason, dict(result.upstream_headers))


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=40))
def test_cached_core_answers_like_uncached_core(
    steps: list[tuple[tuple[str, dict[str, str], str], int, bool]],
) -> None:
    clock = FakeClock()
    policy = GrantTablePolicy()
    uncached = DecisionCore(lambda: KEYS, policy, AUDIENCE, ISSUER, clock=clock)
    cached = DecisionCore(
        lambda: KEYS,
        policy,
        AUDIENCE,
        ISSUER,
        clock=clock,
        token_cache=TokenCache(2),
        decision_cache=DecisionCache(3),
        policy_revision=RevisionWatcher(policy.bundle_revision, clock, interval=0),
    )

    for (kind, headers, path), advance, switch_revision in steps:
        clock.now += advance
        if switch_revision:
            policy.revision = "b" if policy.revision == "a" else "a"

        expected = _answer(uncached, headers, path)
        actual = _answer(cached, headers, path)

        assert actual == expected, f"{kind} {path} at now={clock.now}"


def test_credentials_cache_key_separates_token_and_receipt() -> None:
    assert credentials_cache_key("ab", "c") != credentials_cache_key("a", "bc")


def test_credentials_cache_key_is_sha256_digest() -> None:
    assert len(credentials_cache_key("a", "b")) == 32


def _verified(headers: dict[str, str], now: int = NOW) -> tuple[str, str, object, object]:
    token_text = headers["authorization"].removeprefix("Bearer ")
    receipt_text = headers["x-kms-sig"]
    token = verify_token(token_text, KEYS, now, AUDIENCE, ISSUER)
    receipt = verify_receipt(receipt_text, token, KEYS, now)
    return token_text, receipt_text, token, receipt


def test_token_cache_returns_stored_token() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]

    assert cache.lookup(token_text, receipt_text, KEYS, NOW + 1, DEFAULT_LEEWAY_SECONDS) == token


def test_token_cache_misses_other_receipt() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]
    other_receipt = ISSUER_KEYS.receipt(token_text, iat=NOW + 1)

    assert cache.lookup(token_text, other_receipt, KEYS, NOW, DEFAULT_LEEWAY_SECONDS) is None


def test_token_cache_drops_entry_at_exp() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]
    exp = token.exp  # type: ignore[attr-defined]

    assert cache.lookup(token_text, receipt_text, KEYS, exp, DEFAULT_LEEWAY_SECONDS) is None
    assert len(cache) == 0


def test_token_cache_rechecks_nbf_on_hit() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]

    with pytest.raises(AuthzError) as error:
        cache.lookup(token_text, receipt_text, KEYS, NOW - 3600, DEFAULT_LEEWAY_SECONDS)

    assert error.value.reason == Reason.TOKEN_NOT_YET_VALID


def test_token_cache_drops_entry_of_retired_receipt_key() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]
    retired_key = dataclasses.replace(KEYS.receipt_keys[ISSUER_KEYS.receipt_kid], retired_at=NOW)
    rotated = dataclasses.replace(KEYS, receipt_keys={retired_key.kid: retired_key})

    assert cache.lookup(token_text, receipt_text, rotated, NOW, DEFAULT_LEEWAY_SECONDS) is None


def test_token_cache_drops_entry_of_withdrawn_group_key() -> None:
    cache = TokenCache(4)
    token_text, receipt_text, token, receipt = _verified(VALID[0])
    cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]
    withdrawn = dataclasses.replace(KEYS, group_keys={})

    assert cache.lookup(token_text, receipt_text, withdrawn, NOW, DEFAULT_LEEWAY_SECONDS) is None


def test_token_cache_evicts_least_recently_used() -> None:
    cache = TokenCache(2)
    pairs = [_verified(headers, now=NOW + 150) for headers in VALID]
    for token_text, receipt_text, token, receipt in pairs:
        cache.store(token_text, receipt_text, token, receipt, KEYS)  # type: ignore[arg-type]

    first_text, first_receipt = pairs[0][0], pairs[0][1]

    assert len(cache) == 2
    assert cache.lookup(first_text, first_receipt, KEYS, NOW + 150, 10) is None


def test_token_cache_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries must be positive"):
        TokenCache(0)


def _decision(allow: bool) -> PolicyDecision:
    return PolicyDecision(allow, "allowed" if allow else "scope_denied", "decision-1")


KEY = DecisionKey.of("GET", "/orders/7", ("orders:read",), "alice", AUDIENCE)


def test_decision_cache_returns_decision_of_same_revision() -> None:
    cache = DecisionCache(4)
    cache.store("r1", KEY, _decision(True))

    assert cache.lookup("r1", KEY) == _decision(True)


def test_decision_cache_empties_on_new_revision() -> None:
    cache = DecisionCache(4)
    cache.store("r1", KEY, _decision(True))

    assert cache.lookup("r2", KEY) is None
    assert cache.flushes == 1


def test_decision_key_sorts_scopes() -> None:
    first = DecisionKey.of("GET", "/a", ("b", "a", "b"), "s", "aud")
    second = DecisionKey.of("GET", "/a", ("a", "b"), "s", "aud")

    assert first == second


def test_decision_cache_evicts_least_recently_used() -> None:
    cache = DecisionCache(1)
    other = DecisionKey.of("GET", "/healthz", ("health:read",), "alice", AUDIENCE)
    cache.store("r1", KEY, _decision(True))
    cache.store("r1", other, _decision(False))

    assert cache.lookup("r1", KEY) is None


def test_revision_watcher_reuses_revision_within_interval() -> None:
    clock = FakeClock()
    reads: list[int] = []

    def fetch() -> str:
        reads.append(1)
        return f"r{len(reads)}"

    watcher = RevisionWatcher(fetch, clock, interval=5)
    first = watcher.current()
    clock.now += 4
    second = watcher.current()
    clock.now += 1
    third = watcher.current()

    assert (first, second, third) == ("r1", "r1", "r2")


def test_revision_watcher_returns_none_when_opa_fails() -> None:
    def fetch() -> str:
        raise PolicyUnavailableError("OPA is unreachable: ConnectError")

    assert RevisionWatcher(fetch, FakeClock(), interval=5).current() is None


def test_core_bypasses_decision_cache_without_revision() -> None:
    policy = GrantTablePolicy()

    def fetch() -> str:
        raise PolicyUnavailableError("OPA is unreachable: ConnectError")

    core = DecisionCore(
        lambda: KEYS,
        policy,
        AUDIENCE,
        ISSUER,
        clock=FakeClock(),
        decision_cache=DecisionCache(4),
        policy_revision=RevisionWatcher(fetch, FakeClock(), interval=0),
    )
    for _ in range(3):
        core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    assert policy.queries == 3


def test_core_rejects_decision_cache_without_revision_watcher() -> None:
    with pytest.raises(ValueError, match="must be given together"):
        DecisionCore(
            lambda: KEYS, GrantTablePolicy(), AUDIENCE, ISSUER, decision_cache=DecisionCache(1)
        )


def _cached_core(clock: FakeClock, policy: GrantTablePolicy) -> DecisionCore:
    return DecisionCore(
        lambda: KEYS,
        policy,
        AUDIENCE,
        ISSUER,
        clock=clock,
        token_cache=TokenCache(8),
        decision_cache=DecisionCache(8),
        policy_revision=RevisionWatcher(policy.bundle_revision, clock, interval=0),
    )


def test_core_serves_repeat_request_from_caches() -> None:
    policy = GrantTablePolicy()
    core = _cached_core(FakeClock(), policy)
    for _ in range(3):
        core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    assert policy.queries == 1


def test_core_exports_cache_metrics() -> None:
    core = _cached_core(FakeClock(), GrantTablePolicy())
    for _ in range(4):
        core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    exposition = generate_latest(core.metrics.registry).decode()

    assert 'ztmint_authz_cache_lookups_total{cache="token",result="hit"} 3.0' in exposition
    assert 'ztmint_authz_cache_lookups_total{cache="token",result="miss"} 1.0' in exposition
    assert 'ztmint_authz_cache_hit_ratio{cache="decision"} 0.75' in exposition
    assert 'ztmint_authz_cache_entries{cache="token"} 1.0' in exposition
    assert "ztmint_authz_decision_cache_flushes_total 0.0" in exposition


def test_core_without_caches_exports_no_cache_metrics() -> None:
    core = DecisionCore(lambda: KEYS, GrantTablePolicy(), AUDIENCE, ISSUER, clock=FakeClock())

    exposition = generate_latest(core.metrics.registry).decode()

    assert "ztmint_authz_cache_lookups_total{" not in exposition


def test_cache_stats_hit_ratio_before_lookups_is_zero() -> None:
    assert CacheStats().hit_ratio() == 0.0


def test_replay_guard_rejects_second_claim() -> None:
    guard = ReplayGuard({AUDIENCE}, max_entries=4, leeway=10)
    guard.claim("jti-1", exp=NOW + 60, now=NOW)

    with pytest.raises(AuthzError) as error:
        guard.claim("jti-1", exp=NOW + 60, now=NOW + 1)

    assert error.value.reason == Reason.TOKEN_REPLAYED
    assert "jti-1" in error.value.detail


def test_replay_guard_forgets_jti_after_exp_and_leeway() -> None:
    guard = ReplayGuard({AUDIENCE}, max_entries=4, leeway=10)
    guard.claim("jti-1", exp=NOW + 60, now=NOW)
    guard.claim("jti-2", exp=NOW + 600, now=NOW)

    guard.claim("jti-3", exp=NOW + 600, now=NOW + 70)

    assert len(guard) == 2


def test_replay_guard_rejects_claim_when_full() -> None:
    guard = ReplayGuard({AUDIENCE}, max_entries=1, leeway=10)
    guard.claim("jti-1", exp=NOW + 60, now=NOW)

    with pytest.raises(AuthzError) as error:
        guard.claim("jti-2", exp=NOW + 60, now=NOW)

    assert error.value.reason == Reason.REPLAY_CACHE_FULL
    assert "--replay-cache-size" in error.value.detail


def test_replay_guard_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries must be positive"):
        ReplayGuard({AUDIENCE}, max_entries=0, leeway=10)


def _single_use_core(policy: GrantTablePolicy, audiences: set[str]) -> DecisionCore:
    return DecisionCore(
        lambda: KEYS,
        policy,
        AUDIENCE,
        ISSUER,
        clock=FakeClock(),
        token_cache=TokenCache(8),
        replay_guard=ReplayGuard(audiences, max_entries=64, leeway=10),
    )


def test_core_allows_single_use_token_once_across_threads() -> None:
    core = _single_use_core(GrantTablePolicy(), {AUDIENCE})
    barrier = threading.Barrier(10)
    results: list[tuple[bool, Reason | None]] = []
    lock = threading.Lock()

    def use_token() -> None:
        barrier.wait()
        result = core.check(HttpRequest("GET", "/orders/7", VALID[0]))
        with lock:
            results.append((result.allowed, result.reason))

    threads = [threading.Thread(target=use_token) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(allowed for allowed, _ in results) == 1
    assert [reason for allowed, reason in results if not allowed] == [Reason.TOKEN_REPLAYED] * 9


def test_core_replay_rejection_is_401() -> None:
    core = _single_use_core(GrantTablePolicy(), {AUDIENCE})
    core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    second = core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    assert second.status == 401
    assert second.reason == Reason.TOKEN_REPLAYED


def test_core_denial_keeps_single_use_token() -> None:
    core = _single_use_core(GrantTablePolicy(), {AUDIENCE})
    denied = core.check(HttpRequest("GET", "/admin", VALID[0]))

    allowed = core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    assert denied.reason == Reason.SCOPE_DENIED
    assert allowed.allowed


def test_core_allows_reuse_for_other_audience() -> None:
    core = _single_use_core(GrantTablePolicy(), {"billing-api"})
    first = core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    second = core.check(HttpRequest("GET", "/orders/7", VALID[0]))

    assert first.allowed
    assert second.allowed
