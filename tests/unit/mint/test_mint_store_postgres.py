"""Tests of ``mint.store_postgres``: choosing the backend, errors, and PostgreSQL specifics."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import psycopg
import pytest

from mint.settings import settings_from_env
from mint.store import SqliteStore
from mint.store_postgres import PostgresStore, PostgresUnavailable, open_store
from tests.support.postgres import (
    PostgresNotInstalled,
    PostgresServer,
    fresh_schema_url,
    shared_server,
)


@pytest.fixture
def server() -> PostgresServer:
    try:
        return shared_server()
    except PostgresNotInstalled as exc:
        pytest.skip(str(exc))


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_open_store_uses_sqlite_without_url(tmp_path: Path) -> None:
    assert isinstance(open_store(None, tmp_path / "mint.sqlite3"), SqliteStore)


def test_open_store_uses_postgres_for_postgresql_url(
    server: PostgresServer, tmp_path: Path
) -> None:
    store = open_store(fresh_schema_url(server), tmp_path / "mint.sqlite3")
    assert isinstance(store, PostgresStore)
    assert not (tmp_path / "mint.sqlite3").exists()


def test_open_store_rejects_other_url_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must start with postgresql://"):
        open_store("mysql://db/mint", tmp_path / "mint.sqlite3")


def test_postgres_store_reports_unreachable_server() -> None:
    url = f"postgresql://postgres:secret-password@127.0.0.1:{_closed_port()}/mint"
    with pytest.raises(PostgresUnavailable, match="cannot connect to PostgreSQL") as caught:
        PostgresStore(url)
    assert "secret-password" not in str(caught.value)


def test_postgres_store_repr_hides_url(server: PostgresServer) -> None:
    store = PostgresStore(fresh_schema_url(server))
    assert "127.0.0.1" not in repr(store)
    store.close()


def test_postgres_store_creates_schema_concurrently(server: PostgresServer) -> None:
    url = fresh_schema_url(server)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        barrier.wait()
        try:
            PostgresStore(url, pool_size=1).close()
        except BaseException as exc:  # noqa: BLE001 (reported by the assert below)
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_postgres_store_reuses_connection_after_failed_statement(server: PostgresServer) -> None:
    store = PostgresStore(fresh_schema_url(server), pool_size=1)
    store.ensure_user("alice", b"handle", 1)
    with pytest.raises(psycopg.errors.UniqueViolation, match="user_handle"):
        store.ensure_user("bob", b"handle", 1)
    assert store.get_user("alice") is not None


def test_settings_read_database_url_without_showing_it() -> None:
    url = "postgresql://mint:secret-password@db:5432/mint"
    settings = settings_from_env({"ZTMINT_DATABASE_URL": url})
    assert settings.database_url == url
    assert "secret-password" not in repr(settings)


def test_settings_default_checkpoint_origin_follows_issuer() -> None:
    settings = settings_from_env({"ZTMINT_ISSUER": "https://mint.example.com/"})
    assert settings.checkpoint_origin == "mint.example.com/audit"


def test_settings_read_audit_origin() -> None:
    settings = settings_from_env({"ZTMINT_AUDIT_ORIGIN": "mint.example.com/audit/replica-2"})
    assert settings.checkpoint_origin == "mint.example.com/audit/replica-2"
