"""Tests of the token-bucket rate limit (``mint.limits``) in SQLite and through the service."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from mint_testkit import ORIGIN, ServiceParts, build_service

from mint.errors import MintError, MintReason, Throttled
from mint.limits import (
    GuardSettings,
    MintGuard,
    RateLimit,
    guard_settings_from_env,
    seconds_until_token,
)
from mint.metrics import MintMetrics
from mint.service import MintService
from mint.settings import SettingsError, settings_from_env
from mint.softkey import SoftwareAuthenticator
from mint.store import SqliteStore

NOW = 1_767_225_600.0
LIMIT = RateLimit(burst=5, per_minute=6)  # one token every 10 s


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "mint.sqlite3")


def _take_many(store: SqliteStore, count: int, now: float = NOW) -> list[bool]:
    return [store.take_rate_token("mint:alice", now, LIMIT).allowed for _ in range(count)]


def test_take_rate_token_allows_burst_then_rejects(store: SqliteStore) -> None:
    assert _take_many(store, 6) == [True] * 5 + [False]


def test_take_rate_token_reports_retry_after(store: SqliteStore) -> None:
    _take_many(store, 5)
    decision = store.take_rate_token("mint:alice", NOW + 4, LIMIT)
    assert not decision.allowed
    assert decision.retry_after == 6


def test_take_rate_token_refills_over_time(store: SqliteStore) -> None:
    _take_many(store, 5)
    assert store.take_rate_token("mint:alice", NOW + 10, LIMIT).allowed
    assert not store.take_rate_token("mint:alice", NOW + 10, LIMIT).allowed


def test_take_rate_token_caps_refill_at_burst(store: SqliteStore) -> None:
    _take_many(store, 1)
    assert _take_many(store, 6, now=NOW + 3600) == [True] * 5 + [False]


def test_take_rate_token_ignores_clock_moving_back(store: SqliteStore) -> None:
    _take_many(store, 5)
    assert not store.take_rate_token("mint:alice", NOW - 3600, LIMIT).allowed
    assert not store.take_rate_token("mint:alice", NOW + 5, LIMIT).allowed


def test_take_rate_token_keeps_identities_apart(store: SqliteStore) -> None:
    _take_many(store, 5)
    assert store.take_rate_token("mint:bob", NOW, LIMIT).allowed


def test_take_rate_token_admits_five_of_twenty_threads(tmp_path: Path) -> None:
    # Each thread has its own SqliteStore, so its own connections, as two processes would.
    path = tmp_path / "mint.sqlite3"
    SqliteStore(path)
    barrier = threading.Barrier(20)
    results: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        own_store = SqliteStore(path)
        barrier.wait()
        allowed = own_store.take_rate_token("mint:alice", NOW, LIMIT).allowed
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5
    assert results.count(False) == 15


@pytest.mark.parametrize(("tokens", "seconds"), [(1.0, 0), (0.0, 10), (0.5, 5), (0.99, 1)])
def test_seconds_until_token_rounds_up(tokens: float, seconds: int) -> None:
    assert seconds_until_token(tokens, LIMIT) == seconds


@pytest.mark.parametrize(("burst", "per_minute"), [(0, 5.0), (5, 0.0), (5, -1.0)])
def test_rate_limit_rejects_unusable_values(burst: int, per_minute: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        RateLimit(burst=burst, per_minute=per_minute)


def test_guard_settings_from_env_reads_variables() -> None:
    settings = guard_settings_from_env(
        {
            "ZTMINT_RATE_BURST": "3",
            "ZTMINT_RATE_PER_MINUTE": "1.5",
            "ZTMINT_OPA_URL": "http://127.0.0.1:8181",
            "ZTMINT_OPA_TIMEOUT_SECONDS": "0.5",
            "ZTMINT_BREAKER_MAX_DENIED_SCOPES": "2",
            "ZTMINT_GLOBAL_MAX_MINTS": "50",
        }
    )
    assert settings.rate_limit == RateLimit(burst=3, per_minute=1.5)
    assert settings.opa_url == "http://127.0.0.1:8181"
    assert settings.opa_timeout_seconds == 0.5
    assert settings.breaker_limits.max_denied_scopes == 2
    assert settings.breaker_limits.global_max_mints == 50


def test_guard_settings_from_env_keeps_defaults() -> None:
    assert guard_settings_from_env({}) == GuardSettings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ZTMINT_RATE_BURST", "many", "ZTMINT_RATE_BURST is 'many'"),
        ("ZTMINT_RATE_BURST", "0", "burst is 0"),
        ("ZTMINT_RATE_PER_MINUTE", "0", "per_minute is 0"),
        ("ZTMINT_BREAKER_COOLDOWN_SECONDS", "0", "cooldown_seconds is 0"),
        ("ZTMINT_OPA_TIMEOUT_SECONDS", "-1", "ZTMINT_OPA_TIMEOUT_SECONDS is -1"),
    ],
)
def test_settings_from_env_rejects_unusable_guard_value(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from_env({variable: value})


# Through the service: the rate limit applies after the assertion verified.


def _guarded(parts: ServiceParts, limit: RateLimit) -> MintService:
    guard = MintGuard(MintMetrics(), buckets=parts.store, rate_limit=limit, audit=parts.audit)
    return MintService(
        store=parts.store,
        signer=parts.signer,
        receipt_signer=parts.kms,
        audit=parts.audit,
        relying_party=parts.relying_party,
        issuer="http://localhost:8080",
        clock=parts.clock,
        random_bytes=os.urandom,
        guard=guard,
    )


def _mint(service: MintService, authenticator: SoftwareAuthenticator) -> Any:
    started = service.begin_assertion("alice", ["payments:read"], "payments", 900)
    assertion = authenticator.authenticate(started.options)
    return service.mint(started.challenge_id, ["payments:read"], "payments", 900, assertion)


@pytest.fixture
def limited(tmp_path: Path) -> tuple[ServiceParts, MintService, SoftwareAuthenticator]:
    parts = build_service(tmp_path / "state")
    service = _guarded(parts, RateLimit(burst=2, per_minute=1))
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "alice.json", ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    return parts, service, authenticator


def test_mint_rejects_over_rate_limit(
    limited: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = limited
    _mint(service, authenticator)
    _mint(service, authenticator)
    with pytest.raises(Throttled) as caught:
        _mint(service, authenticator)
    assert caught.value.reason is MintReason.RATE_LIMITED
    assert caught.value.status == 429
    assert caught.value.retry_after == 60
    assert parts.signer.calls == 2


def test_mint_rate_limit_refills_with_fake_clock(
    limited: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = limited
    _mint(service, authenticator)
    _mint(service, authenticator)
    parts.clock.advance(60)
    assert _mint(service, authenticator).jti


def test_mint_rate_limit_is_counted_and_audited(
    limited: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    parts, service, authenticator = limited
    for _ in range(2):
        _mint(service, authenticator)
    with pytest.raises(MintError):
        _mint(service, authenticator)
    sample = service.guard.metrics.registry.get_sample_value
    assert sample("ztmint_mint_rate_limited_total") == 1
    assert sample("ztmint_mint_refusals_total", {"reason": "rate_limited"}) == 1
    assert sample("ztmint_mint_tokens_total") == 2
    records = [json.loads(line) for line in parts.audit.path.read_text().splitlines()]
    assert records[-1]["fields"]["reason"] == "rate_limited"


def test_mint_rate_limit_ignores_unverified_assertions(
    limited: tuple[ServiceParts, MintService, SoftwareAuthenticator],
) -> None:
    _, service, authenticator = limited
    for _ in range(3):
        started = service.begin_assertion("alice", ["payments:read"], "payments", 900)
        assertion = authenticator.authenticate(started.options)
        assertion["response"]["signature"] = assertion["response"]["signature"][:-4] + "AAAA"
        with pytest.raises(MintError):
            service.mint(started.challenge_id, ["payments:read"], "payments", 900, assertion)
    assert _mint(service, authenticator).jti


def test_take_token_postgres_admits_five_of_twenty_threads() -> None:
    psycopg = pytest.importorskip("psycopg")
    from mint.limits import RATE_BUCKETS_SCHEMA_POSTGRES, take_token_postgres
    from tests.support.postgres import fresh_schema_url, shared_server

    url = fresh_schema_url(shared_server())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RATE_BUCKETS_SCHEMA_POSTGRES)
    barrier = threading.Barrier(20)
    results: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            with conn.transaction():
                allowed = take_token_postgres(conn, "mint:alice", NOW, LIMIT).allowed
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 5
    assert results.count(False) == 15
