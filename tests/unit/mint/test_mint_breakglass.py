"""Tests of ``mint.breakglass.BreakGlassService`` with software authenticators and a fake clock.

The requester is ``alice``; ``g1``, ``g2`` and ``g3`` are guardians with t_g = 2, and their
software authenticators set the UV flag. ``mallory`` is enrolled but is no guardian.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from mint_testkit import ISSUER, ORIGIN, ServiceParts, build_service

from mint.breakglass import (
    BreakGlassService,
    BreakGlassSettings,
    BreakGlassSettingsError,
    FiledRequest,
    breakglass_settings_from_env,
)
from mint.errors import MintError, MintReason
from mint.softkey import SoftwareAuthenticator
from mint.store import SqliteStore

SCOPES = ["payments:admin"]
AUDIENCE = "payments"
REASON = "payments outage: rotate the stuck settlement batch"
DURATION = 1800
GUARDIANS = ("g1", "g2", "g3")
TABLES = (
    "challenges",
    "credentials",
    "breakglass_requests",
    "breakglass_approvals",
    "breakglass_grants",
)


@dataclass
class Setup:
    parts: ServiceParts
    breakglass: BreakGlassService
    keys: dict[str, SoftwareAuthenticator]


def _enroll(parts: ServiceParts, key_file: Path, user: str, uv: bool) -> SoftwareAuthenticator:
    started = parts.service.begin_registration(user, parts.service.invite(user))
    authenticator = SoftwareAuthenticator(key_file, ORIGIN, user_verified=uv)
    parts.service.complete_registration(
        started.challenge_id, authenticator.register(started.options)
    )
    return authenticator


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    parts = build_service(tmp_path / "state")
    breakglass = BreakGlassService(
        mint=parts.service,
        store=parts.store,
        records=parts.store.breakglass_records(),
        audit=parts.audit,
        relying_party=parts.relying_party,
        settings=BreakGlassSettings(GUARDIANS, 2),
        clock=parts.clock,
        random_bytes=os.urandom,
    )
    parts.service.breakglass = breakglass
    keys = {"alice": _enroll(parts, tmp_path / "alice.json", "alice", uv=False)}
    for user in (*GUARDIANS, "mallory"):
        keys[user] = _enroll(parts, tmp_path / f"{user}.json", user, uv=True)
    return Setup(parts, breakglass, keys)


def _file(setup: Setup, duration: int = DURATION) -> FiledRequest:
    started = setup.breakglass.begin_request("alice", SCOPES, AUDIENCE, duration, REASON)
    assertion = setup.keys["alice"].authenticate(started.options)
    return setup.breakglass.file_request(
        started.challenge_id, SCOPES, AUDIENCE, duration, REASON, assertion
    )


def _approve(setup: Setup, filed: FiledRequest, guardian: str) -> FiledRequest:
    # The options list only guardians' credentials, so a non-guardian's key needs them open.
    options = {**filed.guardian_options, "allowCredentials": []}
    assertion = setup.keys[guardian].authenticate(options)
    return setup.breakglass.approve(filed.request.request_id, guardian, assertion)


def _mint(setup: Setup, filed: FiledRequest, ttl: int | None = 900) -> Any:
    started, ttl_seconds = setup.breakglass.begin_mint(filed.request.request_id, "alice", ttl)
    assertion = setup.keys["alice"].authenticate(started.options)
    return setup.breakglass.mint(
        filed.request.request_id, started.challenge_id, ttl_seconds, assertion
    )


def _rejection(call: Any) -> MintError:
    with pytest.raises(MintError) as caught:
        call()
    return caught.value


def _rows(setup: Setup) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(setup.parts.state_dir / "mint.sqlite3")
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in TABLES
        }
    finally:
        conn.close()


def _events(setup: Setup) -> list[dict[str, Any]]:
    return [json.loads(line) for line in setup.parts.audit.path.read_text().splitlines()]


def test_breakglass_mints_token_with_granted_scopes(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    minted = _mint(setup, filed)

    key = jwt.PyJWK(setup.parts.service.jwks()["keys"][0])
    claims = jwt.decode(
        minted.token,
        key.key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )
    assert claims["sub"] == "alice"
    assert claims["scope"] == " ".join(SCOPES)
    assert claims["exp"] <= filed.request.expires_at


def test_breakglass_audit_records_every_step(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g3")
    _mint(setup, filed)

    events = [record["event"] for record in _events(setup)]
    assert events[-4:] == [
        "breakglass_approved",
        "breakglass_approved",
        "breakglass_granted",
        "token_minted",
    ]
    assert "breakglass_requested" in events
    granted = next(r for r in _events(setup) if r["event"] == "breakglass_granted")
    assert granted["fields"]["guardians"] == ["g1", "g3"]
    assert granted["fields"]["level"] == "CRITICAL"
    minted = _events(setup)[-1]
    assert minted["fields"]["breakglass"] == filed.request.request_id


def test_breakglass_grant_logged_at_critical(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    with caplog.at_level(logging.INFO, logger="mint.breakglass"):
        _mint(setup, filed)
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    assert "event=breakglass_granted" in critical[0].getMessage()


def test_breakglass_mint_rejects_below_threshold(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    before = _rows(setup)
    error = _rejection(lambda: setup.breakglass.begin_mint(filed.request.request_id, "alice", 900))
    assert error.reason is MintReason.BREAKGLASS_NOT_APPROVED
    assert _rows(setup) == before


def test_breakglass_mint_rejects_second_grant(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    _mint(setup, filed)
    error = _rejection(lambda: _mint(setup, filed))
    assert error.reason is MintReason.BREAKGLASS_ALREADY_GRANTED


def test_breakglass_grant_survives_restart(setup: Setup, tmp_path: Path) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    _mint(setup, filed)
    # A new service over the same database must still know the request was granted.
    restarted = BreakGlassService(
        mint=setup.parts.service,
        store=setup.parts.store,
        records=SqliteStore(setup.parts.state_dir / "mint.sqlite3").breakglass_records(),
        audit=setup.parts.audit,
        relying_party=setup.parts.relying_party,
        settings=BreakGlassSettings(GUARDIANS, 2),
        clock=setup.parts.clock,
        random_bytes=os.urandom,
    )
    error = _rejection(lambda: restarted.begin_mint(filed.request.request_id, "alice", 900))
    assert error.reason is MintReason.BREAKGLASS_ALREADY_GRANTED


def test_breakglass_approve_rejects_duplicate_guardian(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    before = _rows(setup)
    error = _rejection(lambda: _approve(setup, filed, "g1"))
    assert error.reason is MintReason.BREAKGLASS_DUPLICATE_APPROVAL
    assert _rows(setup)["breakglass_approvals"] == before["breakglass_approvals"]


def test_breakglass_approve_rejects_non_guardian(setup: Setup) -> None:
    filed = _file(setup)
    before = _rows(setup)
    error = _rejection(lambda: _approve(setup, filed, "mallory"))
    assert error.reason is MintReason.GUARDIAN_UNKNOWN
    assert _rows(setup) == before


def test_breakglass_approve_rejects_other_guardians_credential(setup: Setup) -> None:
    filed = _file(setup)
    assertion = setup.keys["g2"].authenticate(filed.guardian_options)
    before = _rows(setup)
    error = _rejection(lambda: setup.breakglass.approve(filed.request.request_id, "g1", assertion))
    assert error.reason is MintReason.GUARDIAN_UNKNOWN
    assert _rows(setup) == before


def test_breakglass_approve_rejects_missing_user_verification(setup: Setup, tmp_path: Path) -> None:
    filed = _file(setup)
    without_uv = SoftwareAuthenticator(tmp_path / "g1.json", ORIGIN, user_verified=False)
    assertion = without_uv.authenticate(filed.guardian_options)
    before = _rows(setup)
    error = _rejection(lambda: setup.breakglass.approve(filed.request.request_id, "g1", assertion))
    assert error.reason is MintReason.USER_VERIFICATION_MISSING
    assert _rows(setup) == before


def test_breakglass_approve_rejects_requester_as_guardian(tmp_path: Path) -> None:
    parts = build_service(tmp_path / "state")
    breakglass = BreakGlassService(
        mint=parts.service,
        store=parts.store,
        records=parts.store.breakglass_records(),
        audit=parts.audit,
        relying_party=parts.relying_party,
        settings=BreakGlassSettings(("g1", "g2"), 2),
        clock=parts.clock,
        random_bytes=os.urandom,
    )
    g1 = _enroll(parts, tmp_path / "g1.json", "g1", uv=True)
    started = breakglass.begin_request("g1", SCOPES, AUDIENCE, DURATION, REASON)
    filed = breakglass.file_request(
        started.challenge_id, SCOPES, AUDIENCE, DURATION, REASON, g1.authenticate(started.options)
    )
    assertion = g1.authenticate(filed.guardian_options)
    error = _rejection(lambda: breakglass.approve(filed.request.request_id, "g1", assertion))
    assert error.reason is MintReason.BREAKGLASS_SELF_APPROVAL


def test_breakglass_approve_rejects_assertion_for_other_request(setup: Setup) -> None:
    first = _file(setup)
    second = _file(setup)
    assertion = setup.keys["g1"].authenticate(first.guardian_options)
    error = _rejection(lambda: setup.breakglass.approve(second.request.request_id, "g1", assertion))
    assert error.reason is MintReason.CHALLENGE_MISMATCH


def test_breakglass_approve_rejects_unknown_request(setup: Setup) -> None:
    filed = _file(setup)
    assertion = setup.keys["g1"].authenticate(filed.guardian_options)
    error = _rejection(lambda: setup.breakglass.approve("0" * 32, "g1", assertion))
    assert error.reason is MintReason.BREAKGLASS_UNKNOWN


def test_breakglass_approve_rejects_after_expiry(setup: Setup) -> None:
    filed = _file(setup, duration=600)
    assertion = setup.keys["g1"].authenticate(filed.guardian_options)
    setup.parts.clock.advance(600)
    before = _rows(setup)
    error = _rejection(lambda: setup.breakglass.approve(filed.request.request_id, "g1", assertion))
    assert error.reason is MintReason.BREAKGLASS_EXPIRED
    assert _rows(setup) == before


def test_breakglass_mint_rejects_after_expiry(setup: Setup) -> None:
    filed = _file(setup, duration=600)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    setup.parts.clock.advance(600)
    error = _rejection(lambda: _mint(setup, filed))
    assert error.reason is MintReason.BREAKGLASS_EXPIRED


def test_breakglass_mint_rejects_ttl_beyond_grant(setup: Setup) -> None:
    filed = _file(setup, duration=600)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    setup.parts.clock.advance(200)
    error = _rejection(lambda: _mint(setup, filed, ttl=600))
    assert error.reason is MintReason.BREAKGLASS_TTL_EXCEEDS_GRANT


def test_breakglass_mint_caps_default_ttl_at_grant_expiry(setup: Setup) -> None:
    filed = _file(setup, duration=900)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    setup.parts.clock.advance(160)
    minted = _mint(setup, filed, ttl=None)
    assert minted.expires_at <= filed.request.expires_at


@pytest.mark.parametrize(
    ("ttl", "elapsed", "reason"),
    [
        (850, 100, MintReason.BREAKGLASS_TTL_EXCEEDS_GRANT),
        (300, 601, MintReason.BREAKGLASS_EXPIRED),
    ],
)
def test_breakglass_mint_rejects_time_passed_since_assert(
    setup: Setup, ttl: int, elapsed: int, reason: MintReason
) -> None:
    filed = _file(setup, duration=900)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    started, ttl = setup.breakglass.begin_mint(filed.request.request_id, "alice", ttl)
    assertion = setup.keys["alice"].authenticate(started.options)
    setup.parts.clock.advance(elapsed)
    before = _rows(setup)
    error = _rejection(
        lambda: setup.breakglass.mint(
            filed.request.request_id, started.challenge_id, ttl, assertion
        )
    )
    assert error.reason is reason
    assert _rows(setup) == before


def test_breakglass_mint_rejects_other_user(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    error = _rejection(
        lambda: setup.breakglass.begin_mint(filed.request.request_id, "mallory", 900)
    )
    assert error.reason is MintReason.BREAKGLASS_NOT_REQUESTER


def test_breakglass_mint_rejects_other_users_challenge(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g1")
    _approve(setup, filed, "g2")
    started = setup.parts.service.begin_assertion("mallory", SCOPES, AUDIENCE, 900)
    assertion = setup.keys["mallory"].authenticate(started.options)
    before = _rows(setup)
    error = _rejection(
        lambda: setup.breakglass.mint(
            filed.request.request_id, started.challenge_id, 900, assertion
        )
    )
    assert error.reason is MintReason.BREAKGLASS_NOT_REQUESTER
    assert _rows(setup) == before


def test_breakglass_file_rejects_changed_fields(setup: Setup) -> None:
    started = setup.breakglass.begin_request("alice", SCOPES, AUDIENCE, DURATION, REASON)
    assertion = setup.keys["alice"].authenticate(started.options)
    before = _rows(setup)
    error = _rejection(
        lambda: setup.breakglass.file_request(
            started.challenge_id, ["payments:root"], AUDIENCE, DURATION, REASON, assertion
        )
    )
    assert error.reason is MintReason.CHALLENGE_MISMATCH
    assert _rows(setup) == before


def test_breakglass_file_rejects_mint_challenge(setup: Setup) -> None:
    started = setup.parts.service.begin_assertion("alice", SCOPES, AUDIENCE, 900)
    assertion = setup.keys["alice"].authenticate(started.options)
    error = _rejection(
        lambda: setup.breakglass.file_request(
            started.challenge_id, SCOPES, AUDIENCE, DURATION, REASON, assertion
        )
    )
    assert error.reason is MintReason.CHALLENGE_MISMATCH


@pytest.mark.parametrize(
    ("duration", "reason"),
    [(3601, REASON), (299, REASON), (True, REASON), (900, ""), (900, "x" * 1001), (900, 5)],
)
def test_breakglass_begin_request_rejects_invalid_fields(
    setup: Setup, duration: Any, reason: Any
) -> None:
    before = _rows(setup)
    error = _rejection(
        lambda: setup.breakglass.begin_request("alice", SCOPES, AUDIENCE, duration, reason)
    )
    assert error.reason is MintReason.BREAKGLASS_REQUEST_INVALID
    assert _rows(setup) == before


def test_breakglass_begin_request_rejects_when_disabled(tmp_path: Path) -> None:
    parts = build_service(tmp_path / "state")
    breakglass = BreakGlassService(
        mint=parts.service,
        store=parts.store,
        records=parts.store.breakglass_records(),
        audit=parts.audit,
        relying_party=parts.relying_party,
        settings=BreakGlassSettings(),
        clock=parts.clock,
        random_bytes=os.urandom,
    )
    error = _rejection(
        lambda: breakglass.begin_request("alice", SCOPES, AUDIENCE, DURATION, REASON)
    )
    assert error.reason is MintReason.BREAKGLASS_DISABLED


def test_breakglass_rejection_is_audited(setup: Setup) -> None:
    filed = _file(setup)
    _rejection(lambda: setup.breakglass.begin_mint(filed.request.request_id, "alice", 900))
    last = _events(setup)[-1]
    assert last["event"] == "request_rejected"
    assert last["fields"]["reason"] == "breakglass_not_approved"
    assert last["fields"]["request_id"] == filed.request.request_id


def test_breakglass_describe_lists_approvals(setup: Setup) -> None:
    filed = _file(setup)
    _approve(setup, filed, "g2")
    described = setup.breakglass.describe(filed.request.request_id).to_json()
    assert described["approvals"] == ["g2"]
    assert described["granted"] is False
    assert described["publicKey"]["userVerification"] == "required"


def test_breakglass_settings_from_env_reads_guardians() -> None:
    settings = breakglass_settings_from_env(
        {"ZTMINT_GUARDIANS": "g1, g2,g3", "ZTMINT_GUARDIAN_THRESHOLD": "3"}
    )
    assert settings.guardians == ("g1", "g2", "g3")
    assert settings.threshold == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ZTMINT_GUARDIANS": "g1,g2", "ZTMINT_GUARDIAN_THRESHOLD": "3"}, "only 2 guardians"),
        ({"ZTMINT_GUARDIANS": "g1,g2", "ZTMINT_GUARDIAN_THRESHOLD": "1"}, "at least 2"),
        ({"ZTMINT_GUARDIANS": "g1,g2", "ZTMINT_GUARDIAN_THRESHOLD": "two"}, "an integer"),
        ({"ZTMINT_GUARDIANS": "g1,g1"}, "more than once"),
        ({"ZTMINT_GUARDIANS": "g 1,g2"}, "user ids"),
    ],
)
def test_breakglass_settings_from_env_rejects_bad_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(BreakGlassSettingsError, match=message):
        breakglass_settings_from_env(env)


def test_breakglass_records_on_postgres_count_once() -> None:
    from actors.lifecycle.breakglass import Approval, Grant, new_request
    from mint.store_postgres import PostgresStore
    from tests.support.postgres import PostgresNotInstalled, fresh_schema_url, shared_server

    try:
        server = shared_server()
    except PostgresNotInstalled as exc:
        pytest.skip(str(exc))
    records = PostgresStore(fresh_schema_url(server)).breakglass_records()
    request = new_request(
        requester="alice",
        reason=REASON,
        scopes=SCOPES,
        audience=AUDIENCE,
        duration_seconds=DURATION,
        now=1_800_000_000,
    )
    records.add_request(request)
    approval = Approval("g1", b"credential", b"authdata", b"{}", b"signature", 1_800_000_001)

    assert records.get_request(request.request_id) == request
    assert records.add_approval(request.request_id, approval) is True
    assert records.add_approval(request.request_id, approval) is False
    assert records.approvals(request.request_id) == [approval]
    grant = Grant(request, ("g1", "g2"), 1_800_000_002, request.expires_at)
    assert records.add_grant(grant) is True
    assert records.add_grant(grant) is False
    assert records.get_grant(request.request_id).guardians == ("g1", "g2")
