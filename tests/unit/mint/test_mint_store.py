"""Tests of the ``Store`` backends: atomic challenge use and the sign counter rules.

Every test runs on ``SqliteStore`` and on ``PostgresStore`` against a real PostgreSQL server
(``tests.support.postgres``), in a schema of its own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
    Store,
)
from mint.store_postgres import PostgresStore
from tests.support.postgres import PostgresNotInstalled, fresh_schema_url, shared_server

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


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    backend: Store
    if request.param == "sqlite":
        backend = SqliteStore(tmp_path / "mint.sqlite3")
    else:
        try:
            server = shared_server()
        except PostgresNotInstalled as exc:
            pytest.skip(str(exc))
        backend = PostgresStore(fresh_schema_url(server))
    backend.ensure_user("alice", b"handle-alice", NOW)
    yield backend
    if isinstance(backend, PostgresStore):
        backend.close()


def test_consume_challenge_lets_one_thread_win(store: Store) -> None:
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


def test_consume_challenge_returns_the_challenge(store: Store) -> None:
    store.add_challenge(_challenge())
    result = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW)
    assert result.challenge is not None
    assert result.challenge.request_digest == b"\x02" * 32


def test_consume_challenge_rejects_expired(store: Store) -> None:
    store.add_challenge(_challenge(expires_at=NOW + 120))
    status = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW + 120).status
    assert status is ConsumeStatus.EXPIRED
    stored = store.get_challenge("c1")
    assert stored is not None
    assert not stored.consumed


def test_consume_challenge_rejects_unknown(store: Store) -> None:
    status = store.consume_challenge("nope", ChallengeKind.ASSERTION, NOW).status
    assert status is ConsumeStatus.UNKNOWN


def test_consume_challenge_rejects_other_kind(store: Store) -> None:
    store.add_challenge(_challenge())
    status = store.consume_challenge("c1", ChallengeKind.REGISTRATION, NOW).status
    assert status is ConsumeStatus.UNKNOWN


def test_record_sign_count_accepts_increase(store: Store) -> None:
    store.add_credential(_credential(sign_count=5))
    assert store.record_sign_count(b"cred-1", 6, False) is SignCountStatus.UPDATED
    stored = store.get_credential(b"cred-1")
    assert stored is not None
    assert stored.sign_count == 6


def test_record_sign_count_accepts_authenticator_without_counter(store: Store) -> None:
    store.add_credential(_credential(sign_count=0))
    assert store.record_sign_count(b"cred-1", 0, False) is SignCountStatus.UPDATED
    assert store.record_sign_count(b"cred-1", 0, False) is SignCountStatus.UPDATED


@pytest.mark.parametrize("new_count", [5, 4, 0])
def test_record_sign_count_flags_regression(store: Store, new_count: int) -> None:
    store.add_credential(_credential(sign_count=5))
    assert store.record_sign_count(b"cred-1", new_count, False) is SignCountStatus.REGRESSED
    stored = store.get_credential(b"cred-1")
    assert stored is not None
    assert stored.flagged_cloned
    assert stored.sign_count == 5


def test_record_sign_count_rejects_flagged_credential(store: Store) -> None:
    store.add_credential(_credential(sign_count=5))
    store.record_sign_count(b"cred-1", 1, False)
    assert store.record_sign_count(b"cred-1", 99, False) is SignCountStatus.FLAGGED


def test_record_sign_count_reports_unknown_credential(store: Store) -> None:
    assert store.record_sign_count(b"missing", 1, False) is SignCountStatus.UNKNOWN


def test_add_credential_rejects_duplicate_id(store: Store) -> None:
    store.add_credential(_credential())
    with pytest.raises(CredentialExists, match="already registered"):
        store.add_credential(_credential())


def test_ensure_user_keeps_first_handle(store: Store) -> None:
    user = store.ensure_user("alice", b"another-handle", NOW + 1)
    assert user.user_handle == b"handle-alice"


def test_challenge_repr_hides_challenge_bytes() -> None:
    assert "\\x01" not in repr(_challenge())


def test_get_user_returns_none_for_unknown(store: Store) -> None:
    assert store.get_user("bob") is None


def test_get_credential_round_trips_every_field(store: Store) -> None:
    credential = Credential(
        credential_id=b"\x00\xffcred",
        user_id="alice",
        public_key_cose=b"\xa5\x01\x02",
        sign_count=2**31 + 7,
        aaguid=bytes(range(16)),
        backup_eligible=True,
        backup_state=True,
        flagged_cloned=False,
        attestation_type="basic",
        created_at=NOW,
    )
    store.add_credential(credential)
    assert store.get_credential(b"\x00\xffcred") == credential


def test_credentials_for_user_lists_oldest_first(store: Store) -> None:
    store.add_credential(_credential(credential_id=b"cred-b"))
    older = Credential(**{**_credential(credential_id=b"cred-a").__dict__, "created_at": NOW - 1})
    store.add_credential(older)
    ids = [credential.credential_id for credential in store.credentials_for_user("alice")]
    assert ids == [b"cred-a", b"cred-b"]


def test_get_challenge_round_trips_unconsumed(store: Store) -> None:
    store.add_challenge(_challenge())
    assert store.get_challenge("c1") == _challenge()


def test_consume_challenge_rejects_second_use(store: Store) -> None:
    store.add_challenge(_challenge())
    store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW)
    status = store.consume_challenge("c1", ChallengeKind.ASSERTION, NOW).status
    assert status is ConsumeStatus.USED


def test_record_sign_count_stores_backup_state(store: Store) -> None:
    store.add_credential(_credential(sign_count=5))
    store.record_sign_count(b"cred-1", 6, True)
    stored = store.get_credential(b"cred-1")
    assert stored is not None
    assert stored.backup_state


def test_record_sign_count_flags_equal_race(store: Store) -> None:
    store.add_credential(_credential(sign_count=5))
    barrier = threading.Barrier(2)
    results: list[SignCountStatus] = []
    lock = threading.Lock()

    def record() -> None:
        barrier.wait()
        status = store.record_sign_count(b"cred-1", 6, False)
        with lock:
            results.append(status)

    threads = [threading.Thread(target=record) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count(SignCountStatus.UPDATED) == 1
    assert results.count(SignCountStatus.REGRESSED) == 1
