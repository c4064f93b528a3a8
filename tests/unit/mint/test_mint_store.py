"""Tests of ``mint.store.SqliteStore``: atomic challenge use and the sign counter rules."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mint.store import (
    Challenge,
    ChallengeKind,
    ConsumeStatus,
    Credential,
    CredentialExists,
    SignCountStatus,
    SqliteStore,
)

NOW = 1_767_225_600


def _challenge(challenge_id: str = "c1", expires_at: int = NOW + 120) -> Challenge:
    return Challenge(
        challenge_id=challenge_id,
        kind=ChallengeKind.ASSERTION,
        user_id="alice",
        challenge=b"\x01" * 32,
        request_digest=b"\x02" * 32,
        expires_at=expires_at,
    )


def _credential(sign_count: int = 5, credential_id: bytes = b"cred-1") -> Credential:
    return Credential(
        credential_id=credential_id,
        user_id="alice",
        public_key_cose=b"\xa0",
        sign_count=sign_count,
        aaguid=bytes(16),
        backup_eligible=False,
        backup_state=False,
        flagged_cloned=False,
        attestation_type="self",
        created_at=NOW,
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "mint.sqlite3")
    store.ensure_user("alice", b"handle-alice", NOW)
    return store


def test_consume_challenge_lets_exactly_one_of_ten_threads_win(store: SqliteStore) -> None:
    store.add_challenge(_challenge())
    barrier = threading.Barrier(10)
    results: list[ConsumeStatus] = []
    lock = threading.Lock()

    def consume() -> None:
        barrier.wait()
        status = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW).status
        with lock:
            results.append(status)

    threads = [threading.Thread(target=consume) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(ConsumeStatus.CONSUMED) == 1
    assert results.count(ConsumeStatus.USED) == 9


def test_consume_challenge_returns_the_challenge(store: SqliteStore) -> None:
    store.add_challenge(_challenge())
    result = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW)
    assert result.challenge is not None
    assert result.challenge.request_digest == b"\x02" * 32


def test_consume_challenge_rejects_expired(store: SqliteStore) -> None:
    store.add_challenge(_challenge(expires_at=NOW + 120))
    status = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW + 120).status
    assert status is ConsumeStatus.EXPIRED
    stored = store.get_challenge("c1")
    assert stored is not None
    assert not stored.consumed


def test_consume_challenge_rejects_unknown(store: SqliteStore) -> None:
    status = store.consume_challenge("nope", ChallengeKind.ASSERTION, NOW).status
    assert status is ConsumeStatus.UNKNOWN


def test_consume_challenge_rejects_other_kind(store: SqliteStore) -> None:
    store.add_challenge(_challenge())
    status = store.consume_challenge("c1", ChallengeKind.REGISTRATION, NOW).status
    assert status is ConsumeStatus.UNKNOWN


def test_record_sign_count_accepts_increase(store: SqliteStore) -> None:
    store.add_credential(_credential(sign_count=5))
    assert store.record_sign_count(b"cred-1", 6, False) is SignCountStatus.UPDATED
    stored = store.get_credential(b"cred-1")
    assert stored is not None
    assert stored.sign_count == 6


def test_record_sign_count_accepts_authenticator_without_counter(store: SqliteStore) -> None:
    store.add_credential(_credential(sign_count=0))
    assert store.record_sign_count(b"cred-1", 0, False) is SignCountStatus.UPDATED
    assert store.record_sign_count(b"cred-1", 0, False) is SignCountStatus.UPDATED


@pytest.mark.parametrize("new_count", [5, 4, 0])
def test_record_sign_count_flags_regression(store: SqliteStore, new_count: int) -> None:
    store.add_credential(_credential(sign_count=5))
    assert store.record_sign_count(b"cred-1", new_count, False) is SignCountStatus.REGRESSED
    stored = store.get_credential(b"cred-1")
    assert stored is not None
    assert stored.flagged_cloned
    assert stored.sign_count == 5


def test_record_sign_count_rejects_flagged_credential(store: SqliteStore) -> None:
    store.add_credential(_credential(sign_count=5))
    store.record_sign_count(b"cred-1", 1, False)
    assert store.record_sign_count(b"cred-1", 99, False) is SignCountStatus.FLAGGED


def test_record_sign_count_reports_unknown_credential(store: SqliteStore) -> None:
    assert store.record_sign_count(b"missing", 1, False) is SignCountStatus.UNKNOWN


def test_add_credential_rejects_duplicate_id(store: SqliteStore) -> None:
    store.add_credential(_credential())
    with pytest.raises(CredentialExists, match="already registered"):
        store.add_credential(_credential())


def test_ensure_user_keeps_first_handle(store: SqliteStore) -> None:
    user = store.ensure_user("alice", b"another-handle", NOW + 1)
    assert user.user_handle == b"handle-alice"


def test_challenge_repr_hides_challenge_bytes() -> None:
    assert "\\x01" not in repr(_challenge())
