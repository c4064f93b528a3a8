"""The mint on PostgreSQL over real HTTP: enroll, mint, replay, and prove the token offline."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn

from mint.app import create_app, service_from_settings
from mint.cli import main
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from tests.support.postgres import PostgresNotInstalled, fresh_schema_url, shared_server
from tests.unit.mint.mint_testkit import InProcessTokenSigner, invite

pytestmark = pytest.mark.integration

REQUEST = {"scopes": ["payments:read"], "audience": "payments", "ttl_seconds": 900}


@dataclass
class PostgresMint:
    """A mint served by uvicorn in this process, storing its state in PostgreSQL."""

    url: str
    origin: str
    settings: Settings
    database_url: str


@pytest.fixture
def postgres_mint(tmp_path: Path) -> Iterator[PostgresMint]:
    try:
        server = shared_server()
    except PostgresNotInstalled as exc:
        pytest.skip(str(exc))
    database_url = fresh_schema_url(server)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        origin=origin,
        issuer=origin,
        state_dir=tmp_path / "state",
        port=port,
        database_url=database_url,
    )
    app = create_app(service_from_settings(settings, InProcessTokenSigner()), settings)
    uvicorn_server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield PostgresMint(f"http://127.0.0.1:{port}", origin, settings, database_url)
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _enroll_and_assert(client: httpx.Client, mint: PostgresMint, key_file: Path) -> dict[str, Any]:
    authenticator = SoftwareAuthenticator(key_file, mint.origin)
    body = {"user": "alice", "invitation": invite(mint.database_url, "alice")}
    started = client.post("/register", json=body).json()
    credential = authenticator.register(started["publicKey"])
    completed = client.post(
        "/register/complete",
        json={"challenge_id": started["challenge_id"], "credential": credential},
    )
    assert completed.status_code == 200, completed.text
    challenge = client.post("/assert", json={"user": "alice", **REQUEST}).json()
    assertion = authenticator.authenticate(challenge["publicKey"])
    return {"challenge_id": challenge["challenge_id"], **REQUEST, "assertion": assertion}


def test_postgres_mint_stores_credential_in_postgres(
    postgres_mint: PostgresMint, tmp_path: Path
) -> None:
    with httpx.Client(base_url=postgres_mint.url, timeout=30) as client:
        _enroll_and_assert(client, postgres_mint, tmp_path / "key.json")
    with psycopg.connect(postgres_mint.database_url) as conn:
        users = conn.execute("SELECT user_id FROM users").fetchall()
    assert users == [("alice",)]
    assert not postgres_mint.settings.database_path.exists()


def test_postgres_mint_rejects_replayed_assertion(
    postgres_mint: PostgresMint, tmp_path: Path
) -> None:
    with httpx.Client(base_url=postgres_mint.url, timeout=30) as client:
        body = _enroll_and_assert(client, postgres_mint, tmp_path / "key.json")
        first = client.post("/mint", json=body)
        replay = client.post("/mint", json=body)
    assert first.status_code == 200, first.text
    assert replay.status_code == 409
    assert replay.json()["error"] == "challenge_used"


def test_postgres_mint_token_proves_offline(postgres_mint: PostgresMint, tmp_path: Path) -> None:
    with httpx.Client(base_url=postgres_mint.url, timeout=30) as client:
        body = _enroll_and_assert(client, postgres_mint, tmp_path / "key.json")
        minted = client.post("/mint", json=body)
        jwks = client.get("/.well-known/jwks.json")
    assert minted.status_code == 200, minted.text
    (tmp_path / "jwks.json").write_text(jwks.text)
    token_file = tmp_path / "token.txt"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(minted.json()["token"])
    state = postgres_mint.settings.state_dir
    argv = ["audit", "prove", "--token-file", str(token_file), "--log", str(state / "audit.jsonl")]
    argv += ["--checkpoint", str(state / "checkpoints" / "latest.txt")]
    assert main([*argv, "--key", str(tmp_path / "jwks.json")]) == 0
