"""HTTP tests of the mint's defences against unauthenticated abuse, over a real socket.

Each test starts a mint with uvicorn on a loopback port and sends what an attacker would: an
enrollment without an invitation, oversized and chunked bodies, floods of bad requests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mint.app import create_app, service_from_settings
from mint.limits import RateLimit
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from tests.unit.mint.mint_testkit import FakeClock, InProcessTokenSigner, invite

pytestmark = pytest.mark.integration

REQUEST = {"scopes": ["payments:read"], "audience": "payments", "ttl_seconds": 900}


@dataclasses.dataclass
class Mint:
    """A running mint: its URL, origin, settings and fake clock."""

    url: str
    origin: str
    settings: Settings
    clock: FakeClock

    def audit_records(self) -> list[dict[str, Any]]:
        lines = self.settings.audit_path.read_text().splitlines()
        return [json.loads(line) for line in lines]


@contextmanager
def serve(state_dir: Path, **overrides: Any) -> Iterator[Mint]:
    """Serve a mint with ``Settings`` fields ``overrides`` on a free loopback port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        rp_id="localhost", origin=origin, issuer=origin, state_dir=state_dir, port=port,
        **overrides,
    )  # fmt: skip
    clock = FakeClock()
    service = service_from_settings(settings, InProcessTokenSigner(), clock, os.urandom)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service, settings), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Mint(f"http://127.0.0.1:{port}", origin, settings, clock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def mint(tmp_path: Path) -> Iterator[Mint]:
    with serve(tmp_path / "state") as running:
        yield running


def _enroll(client: httpx.Client, mint: Mint, key_file: Path, user: str, code: str) -> int:
    started = client.post("/register", json={"user": user, "invitation": code})
    if started.status_code != 200:
        return started.status_code
    options = started.json()
    credential = SoftwareAuthenticator(key_file, mint.origin).register(options["publicKey"])
    body = {"challenge_id": options["challenge_id"], "credential": credential}
    return client.post("/register/complete", json=body).status_code


def test_register_rejects_user_without_invitation(mint: Mint) -> None:
    with httpx.Client(base_url=mint.url) as client:
        response = client.post("/register", json={"user": "alice"})
    assert response.status_code == 403
    assert response.json()["error"] == "invitation_invalid"


def test_register_accepts_invited_user(mint: Mint, tmp_path: Path) -> None:
    code = invite(mint.settings.database_path, "alice")
    with httpx.Client(base_url=mint.url) as client:
        assert _enroll(client, mint, tmp_path / "a.json", "alice", code) == 200


def test_register_answers_enrolled_and_unknown_users_alike(mint: Mint, tmp_path: Path) -> None:
    code = invite(mint.settings.database_path, "alice")
    with httpx.Client(base_url=mint.url) as client:
        _enroll(client, mint, tmp_path / "a.json", "alice", code)
        enrolled = client.post("/register", json={"user": "alice", "invitation": "x"})
        unknown = client.post("/register", json={"user": "zed", "invitation": "x"})
    assert enrolled.status_code == unknown.status_code
    assert enrolled.json() == unknown.json()


def test_register_rejects_large_declared_body(mint: Mint) -> None:
    body = b'{"user": "' + b"a" * (mint.settings.max_body_bytes + 1) + b'"}'
    with httpx.Client(base_url=mint.url) as client:
        response = client.post(
            "/register", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_register_rejects_large_chunked_body(mint: Mint) -> None:
    chunk = b"a" * 16384

    def chunks() -> Iterator[bytes]:
        for _ in range(mint.settings.max_body_bytes // len(chunk) + 2):
            yield chunk

    with httpx.Client(base_url=mint.url) as client:
        response = client.post("/register", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"


def test_client_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    with serve(tmp_path / "state", client_rate=RateLimit(burst=3, per_minute=1)) as running:
        with httpx.Client(base_url=running.url) as client:
            statuses = [client.post("/mint", content=b"{").status_code for _ in range(4)]
            limited = client.post("/mint", content=b"{")
    assert statuses == [400, 400, 400, 429]
    assert limited.json()["error"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1


def test_repeated_rejections_are_summarised_in_audit(tmp_path: Path) -> None:
    with serve(tmp_path / "state", rejection_audit_per_minute=5) as running:
        with httpx.Client(base_url=running.url) as client:
            for _ in range(30):
                client.post("/mint", content=b"{")
            running.clock.advance(61)
            client.post("/mint", content=b"{")
        records = running.audit_records()
    single = [record for record in records if "repeated" not in record["fields"]]
    summaries = [record for record in records if "repeated" in record["fields"]]
    assert len(single) == 6
    assert len(summaries) == 1
    assert summaries[0]["fields"]["repeated"] == 25


def test_register_without_invitation_writes_no_rows(mint: Mint) -> None:
    with httpx.Client(base_url=mint.url) as client:
        for number in range(20):
            client.post("/register", json={"user": f"user{number}"})

    conn = sqlite3.connect(mint.settings.database_path)
    try:
        users = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        challenges = conn.execute("SELECT COUNT(*) FROM challenges").fetchone()[0]
    finally:
        conn.close()
    assert users == 0
    assert challenges == 0


def test_invalid_json_message_names_character(mint: Mint) -> None:
    with httpx.Client(base_url=mint.url) as client:
        response = client.post("/mint", content=b"{", headers={"content-type": "application/json"})
    assert response.json()["message"] == "request body is not valid JSON at character 1"


def test_huge_ttl_is_not_echoed_in_full(mint: Mint) -> None:
    code = invite(mint.settings.database_path, "alice")
    with httpx.Client(base_url=mint.url) as client:
        _enroll(client, mint, mint.settings.state_dir / "a.json", "alice", code)
        body = json.dumps({"user": "alice", **REQUEST, "ttl_seconds": 1e308})
        response = client.post(
            "/assert", content=body, headers={"content-type": "application/json"}
        )
    assert response.json()["error"] == "ttl_out_of_range"
    assert len(response.json()["message"]) < 200


def test_ui_rejects_bad_query_parameter(mint: Mint) -> None:
    before = len(mint.audit_records()) if mint.settings.audit_path.exists() else 0
    with httpx.Client(base_url=mint.url) as client:
        response = client.get("/ui/", params={"state": "x" * 500})
    after = len(mint.audit_records()) if mint.settings.audit_path.exists() else 0
    assert response.status_code == 400
    assert response.json()["message"].startswith("query parameter is invalid: state")
    assert after == before


def test_state_folder_and_database_are_private(tmp_path: Path) -> None:
    with serve(tmp_path / "fresh") as running:
        folder_mode = stat.S_IMODE(running.settings.state_dir.stat().st_mode)
        database_mode = stat.S_IMODE(running.settings.database_path.stat().st_mode)
    assert folder_mode == 0o700
    assert database_mode == 0o600
