"""Tests of enrollment invitations, re-enrollment, and the rows ``/register`` may write."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from mint_testkit import ORIGIN, ServiceParts, build_service

from mint.errors import MintError, MintReason
from mint.invitations import EnrollmentMode, create_invitation, invitation_digest
from mint.service import CHALLENGE_PURGE_GRACE_SECONDS, CHALLENGE_TTL_SECONDS
from mint.softkey import SoftwareAuthenticator

SCOPES = ["payments:read"]
AUDIENCE = "payments"
TTL = 900


@pytest.fixture
def parts(tmp_path: Path) -> ServiceParts:
    return build_service(tmp_path / "state")


def _rejection(call: Any) -> MintError:
    with pytest.raises(MintError) as caught:
        call()
    return caught.value


def _register(
    parts: ServiceParts, key_file: Path, user: str, code: str | None
) -> SoftwareAuthenticator:
    started = parts.service.begin_registration(user, code)
    authenticator = SoftwareAuthenticator(key_file, ORIGIN)
    parts.service.complete_registration(
        started.challenge_id, authenticator.register(started.options)
    )
    return authenticator


def _mint(parts: ServiceParts, authenticator: SoftwareAuthenticator, user: str) -> str:
    started = parts.service.begin_assertion(user, SCOPES, AUDIENCE, TTL)
    assertion = authenticator.authenticate(started.options)
    return parts.service.mint(started.challenge_id, SCOPES, AUDIENCE, TTL, assertion).token


def _count(parts: ServiceParts, table: str) -> int:
    conn = sqlite3.connect(parts.state_dir / "mint.sqlite3")
    try:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
    finally:
        conn.close()


def test_begin_registration_rejects_missing_invitation(parts: ServiceParts) -> None:
    error = _rejection(lambda: parts.service.begin_registration("alice"))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_rejects_unknown_invitation(parts: ServiceParts) -> None:
    error = _rejection(lambda: parts.service.begin_registration("alice", "not-a-code"))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_rejects_invitation_of_other_user(parts: ServiceParts) -> None:
    code = parts.service.invite("bob")
    error = _rejection(lambda: parts.service.begin_registration("alice", code))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_rejects_expired_invitation(parts: ServiceParts) -> None:
    code = parts.service.invite("alice", ttl_seconds=60)
    parts.clock.advance(60)
    error = _rejection(lambda: parts.service.begin_registration("alice", code))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_rejects_used_invitation(parts: ServiceParts, tmp_path: Path) -> None:
    code = parts.service.invite("alice")
    _register(parts, tmp_path / "a.json", "alice", code)
    error = _rejection(lambda: parts.service.begin_registration("alice", code))
    assert error.reason is MintReason.INVITATION_INVALID


def test_begin_registration_hides_enrolled_user(parts: ServiceParts, tmp_path: Path) -> None:
    _register(parts, tmp_path / "a.json", "alice", parts.service.invite("alice"))
    enrolled = _rejection(lambda: parts.service.begin_registration("alice", "guess"))
    unknown = _rejection(lambda: parts.service.begin_registration("nobody", "guess"))
    assert enrolled.reason is unknown.reason
    assert enrolled.detail == unknown.detail


def test_complete_registration_rejects_second_use_of_one_invitation(
    parts: ServiceParts, tmp_path: Path
) -> None:
    code = parts.service.invite("alice")
    first = parts.service.begin_registration("alice", code)
    second = parts.service.begin_registration("alice", code)
    one = SoftwareAuthenticator(tmp_path / "one.json", ORIGIN)
    two = SoftwareAuthenticator(tmp_path / "two.json", ORIGIN)
    parts.service.complete_registration(first.challenge_id, one.register(first.options))
    error = _rejection(
        lambda: parts.service.complete_registration(
            second.challenge_id, two.register(second.options)
        )
    )
    assert error.reason is MintReason.INVITATION_INVALID
    assert len(parts.store.credentials_for_user("alice")) == 1


def test_failed_registration_keeps_invitation_usable(parts: ServiceParts, tmp_path: Path) -> None:
    code = parts.service.invite("alice")
    started = parts.service.begin_registration("alice", code)
    wrong_origin = SoftwareAuthenticator(tmp_path / "bad.json", "https://evil.example")
    _rejection(
        lambda: parts.service.complete_registration(
            started.challenge_id, wrong_origin.register(started.options)
        )
    )
    _register(parts, tmp_path / "good.json", "alice", code)
    assert len(parts.store.credentials_for_user("alice")) == 1


def test_invitation_store_holds_only_digest(parts: ServiceParts) -> None:
    code = parts.service.invite("alice")
    database = (parts.state_dir / "mint.sqlite3").read_bytes()
    assert code.encode() not in database
    assert parts.store.get_invitation(invitation_digest(code)) is not None


def test_create_invitation_rejects_zero_ttl(parts: ServiceParts) -> None:
    with pytest.raises(ValueError, match="invitation lifetime is 0 s"):
        create_invitation(parts.store, "alice", 0, 0, bytes)


def test_register_writes_no_user_row(parts: ServiceParts) -> None:
    parts.service.begin_registration("alice", parts.service.invite("alice"))
    assert _count(parts, "users") == 0


def test_complete_registration_creates_user_row(parts: ServiceParts, tmp_path: Path) -> None:
    _register(parts, tmp_path / "a.json", "alice", parts.service.invite("alice"))
    assert parts.store.get_user("alice") is not None


def test_new_challenge_purges_expired_challenges(parts: ServiceParts) -> None:
    code = parts.service.invite("alice")
    for _ in range(3):
        parts.service.begin_registration("alice", code)
    parts.clock.advance(CHALLENGE_TTL_SECONDS + CHALLENGE_PURGE_GRACE_SECONDS)
    parts.service.begin_registration("alice", code)
    assert _count(parts, "challenges") == 1


def test_cloned_credential_user_enrolls_again_with_invitation(
    parts: ServiceParts, tmp_path: Path
) -> None:
    first = _register(parts, tmp_path / "a.json", "alice", parts.service.invite("alice"))
    conn = sqlite3.connect(parts.state_dir / "mint.sqlite3")
    with conn:
        conn.execute("UPDATE credentials SET flagged_cloned = 1")
    conn.close()
    blocked = _rejection(lambda: _mint(parts, first, "alice"))
    second = _register(parts, tmp_path / "b.json", "alice", parts.service.invite("alice"))
    assert blocked.reason is MintReason.CREDENTIAL_CLONED
    assert _mint(parts, second, "alice").count(".") == 2


def test_revoke_credentials_blocks_minting(parts: ServiceParts, tmp_path: Path) -> None:
    alice = _register(parts, tmp_path / "a.json", "alice", parts.service.invite("alice"))
    assert parts.store.revoke_credentials("alice") == 1
    error = _rejection(lambda: _mint(parts, alice, "alice"))
    assert error.reason is MintReason.USER_UNKNOWN


def test_list_users_counts_credentials(parts: ServiceParts, tmp_path: Path) -> None:
    _register(parts, tmp_path / "a.json", "alice", parts.service.invite("alice"))
    (summary,) = parts.store.list_users()
    assert summary.user_id == "alice"
    assert summary.credentials == 1
    assert summary.flagged_cloned == 0


def test_open_enrollment_needs_no_invitation(parts: ServiceParts, tmp_path: Path) -> None:
    parts.service.enrollment = EnrollmentMode.OPEN
    _register(parts, tmp_path / "a.json", "alice", None)
    assert len(parts.store.credentials_for_user("alice")) == 1


def test_open_enrollment_rejects_second_credential(parts: ServiceParts, tmp_path: Path) -> None:
    parts.service.enrollment = EnrollmentMode.OPEN
    _register(parts, tmp_path / "a.json", "alice", None)
    error = _rejection(lambda: parts.service.begin_registration("alice"))
    assert error.reason is MintReason.CREDENTIAL_EXISTS
