"""Rate limits, breakers and metrics of a real mint over HTTP (uvicorn on loopback, httpx)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mint.app import create_app, service_from_settings
from mint.limits import GuardSettings, RateLimit
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from tests.unit.mint.mint_testkit import InProcessTokenSigner, invite

pytestmark = pytest.mark.integration

REQUEST = {"scopes": ["payments:read"], "audience": "payments", "ttl_seconds": 900}


@contextmanager
def serve_mint(state_dir: Path, guard: GuardSettings) -> Iterator[tuple[str, str, Settings]]:
    """Run a mint with ``guard`` settings on a loopback port; yield its URL, origin, settings."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        rp_id="localhost",
        origin=origin,
        issuer=origin,
        state_dir=state_dir,
        allow_self_attestation=True,
        port=port,
        guard=guard,
    )
    service = service_from_settings(settings, InProcessTokenSigner(), random_bytes=os.urandom)
    app = create_app(service, settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}", origin, settings
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def enroll(
    client: httpx.Client, origin: str, key_file: Path, user: str, database_path: Path
) -> None:
    """Enroll a software authenticator whose assertions all carry signature counter 0."""
    body = {"user": user, "invitation": invite(database_path, user)}
    started = client.post("/register", json=body).json()
    credential = SoftwareAuthenticator(key_file, origin).register(started["publicKey"])
    response = client.post(
        "/register/complete",
        json={"challenge_id": started["challenge_id"], "credential": credential},
    )
    assert response.status_code == 200, response.text


def mint_body(
    client: httpx.Client, origin: str, key_file: Path, user: str, request: dict[str, Any]
) -> dict[str, Any]:
    """Get a challenge and an assertion with signature counter 0, and build the /mint body.

    An authenticator without a signature counter always reports 0, which WebAuthn Level 3
    allows, so assertions made in advance can be sent in any order.
    """
    data = json.loads(key_file.read_text())
    data["sign_count"] = -1  # the software authenticator adds one before signing
    key_file.write_text(json.dumps(data))
    started = client.post("/assert", json={"user": user, **request})
    assert started.status_code == 200, started.text
    body = started.json()
    assertion = SoftwareAuthenticator(key_file, origin).authenticate(body["publicKey"])
    return {"challenge_id": body["challenge_id"], **request, "assertion": assertion}


def post_at_once(client: httpx.Client, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def send(body: dict[str, Any]) -> None:
        barrier.wait()
        response = client.post("/mint", json=body)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.fixture
def limited_mint(tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    guard = GuardSettings(rate_limit=RateLimit(burst=5, per_minute=1))
    with serve_mint(tmp_path / "state", guard) as (url, origin, settings):
        limits = httpx.Limits(max_connections=40)
        with httpx.Client(base_url=url, timeout=60, limits=limits) as client:
            enroll(client, origin, tmp_path / "alice.json", "alice", settings.database_path)
            yield client, origin


def test_mint_twenty_concurrent_get_five_tokens(
    limited_mint: tuple[httpx.Client, str], tmp_path: Path
) -> None:
    client, origin = limited_mint
    bodies = [
        mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST) for _ in range(20)
    ]
    responses = post_at_once(client, bodies)
    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 5
    assert statuses.count(429) == 15
    rejected = [response for response in responses if response.status_code == 429]
    assert {response.json()["error"] for response in rejected} == {"rate_limited"}
    assert all(int(response.headers["Retry-After"]) >= 1 for response in rejected)


def test_mint_rate_limited_response_has_retry_after(
    limited_mint: tuple[httpx.Client, str], tmp_path: Path
) -> None:
    client, origin = limited_mint
    for _ in range(5):
        body = mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
        assert client.post("/mint", json=body).status_code == 200
    body = mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
    response = client.post("/mint", json=body)
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_mint_global_breaker_over_http(tmp_path: Path) -> None:
    guard = GuardSettings(
        breaker_limits=replace(GuardSettings().breaker_limits, global_max_mints=2)
    )
    with serve_mint(tmp_path / "state", guard) as (url, origin, settings):
        with httpx.Client(base_url=url, timeout=30) as client:
            enroll(client, origin, tmp_path / "alice.json", "alice", settings.database_path)
            statuses = []
            for _ in range(3):
                body = mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
                statuses.append(client.post("/mint", json=body))
            assert [response.status_code for response in statuses] == [200, 200, 429]
            assert statuses[-1].json()["error"] == "global_breaker_open"
            assert int(statuses[-1].headers["Retry-After"]) == 60


def test_metrics_endpoint_exposes_mint_series(
    limited_mint: tuple[httpx.Client, str], tmp_path: Path
) -> None:
    client, origin = limited_mint
    body = mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
    assert client.post("/mint", json=body).status_code == 200
    client.post("/mint", json=body)  # a replay: challenge_used

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for stage in ("webauthn", "signing", "kms", "audit"):
        assert f'ztmint_mint_stage_seconds_count{{stage="{stage}"}} 1.0' in text
    assert "ztmint_mint_tokens_total 1.0" in text
    assert 'ztmint_mint_refusals_total{reason="challenge_used"} 1.0' in text
    assert "ztmint_mint_rate_limited_total 0.0" in text
