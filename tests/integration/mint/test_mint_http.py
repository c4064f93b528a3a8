"""The mint over real HTTP: uvicorn on a loopback socket, httpx, the software authenticator."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from conftest import LiveMint

from authz.formats import token_sha256
from authz.jose import b64url_encode
from mint import audit
from mint.softkey import SoftwareAuthenticator
from tests.unit.mint.mint_testkit import invite

pytestmark = pytest.mark.integration

REQUEST = {"scopes": ["payments:read"], "audience": "payments", "ttl_seconds": 900}


def _enroll(client: httpx.Client, live: LiveMint, key_file: Path, user: str) -> None:
    body = {"user": user, "invitation": invite(live.settings.database_path, user)}
    started = client.post("/register", json=body).json()
    credential = SoftwareAuthenticator(key_file, live.origin).register(started["publicKey"])
    response = client.post(
        "/register/complete",
        json={"challenge_id": started["challenge_id"], "credential": credential},
    )
    assert response.status_code == 200, response.text


def _assertion(
    client: httpx.Client, live: LiveMint, key_file: Path, user: str = "alice"
) -> dict[str, Any]:
    started = client.post("/assert", json={"user": user, **REQUEST})
    assert started.status_code == 200, started.text
    body = started.json()
    assertion = SoftwareAuthenticator(key_file, live.origin).authenticate(body["publicKey"])
    return {"challenge_id": body["challenge_id"], **REQUEST, "assertion": assertion}


def _database_rows(live: LiveMint) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(live.settings.database_path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in ("users", "credentials", "challenges")
        }
    finally:
        conn.close()


@pytest.fixture
def client(live_mint: LiveMint) -> Any:
    with httpx.Client(base_url=live_mint.url, timeout=30) as client:
        yield client


def test_mint_issues_verifiable_token_and_receipt(
    live_mint: LiveMint, client: httpx.Client, tmp_path: Path
) -> None:
    _enroll(client, live_mint, tmp_path / "alice.json", "alice")
    minted = client.post("/mint", json=_assertion(client, live_mint, tmp_path / "alice.json"))
    assert minted.status_code == 200, minted.text
    body = minted.json()

    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    keys = {key.key_id: key for key in jwks.keys}
    token_kid = jwt.get_unverified_header(body["token"])["kid"]
    claims = jwt.decode(
        body["token"],
        keys[token_kid].key,
        algorithms=["EdDSA"],
        audience="payments",
        issuer=live_mint.origin,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )
    assert claims["sub"] == "alice"
    receipt_kid = jwt.get_unverified_header(body["receipt"])["kid"]
    receipt = jwt.decode(body["receipt"], keys[receipt_kid].key, algorithms=["ES256"])
    assert receipt["token_sha256"] == b64url_encode(token_sha256(body["token"]))


def test_mint_concurrent_replays_get_one_token(
    live_mint: LiveMint, client: httpx.Client, tmp_path: Path
) -> None:
    _enroll(client, live_mint, tmp_path / "alice.json", "alice")
    body = _assertion(client, live_mint, tmp_path / "alice.json")
    barrier = threading.Barrier(10)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        response = client.post("/mint", json=body)
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 1
    assert statuses.count(409) == 9
    assert live_mint.signer.calls == 1


BAD_REQUESTS: list[tuple[str, Any, str]] = [
    ("/register", b"{not json", "request_invalid"),
    ("/register", b"[]", "request_invalid"),
    ("/register", {"user": 5}, "request_invalid"),
    ("/register", {"user": "al ice"}, "request_invalid"),
    ("/register", {"user": "bob", "admin": True}, "request_invalid"),
    ("/register", {"user": "alice"}, "invitation_invalid"),
    ("/register/complete", {"challenge_id": "x", "credential": {}}, "request_invalid"),
    ("/register/complete", {"challenge_id": "x"}, "request_invalid"),
    ("/assert", {"user": "alice", **REQUEST, "ttl_seconds": 10}, "ttl_out_of_range"),
    ("/assert", {"user": "alice", **REQUEST, "ttl_seconds": "15m"}, "request_invalid"),
    ("/assert", {"user": "alice", **REQUEST, "scopes": []}, "request_invalid"),
    ("/assert", {"user": "alice", **REQUEST, "scopes": ["UPPER"]}, "request_invalid"),
    ("/assert", {"user": "nobody", **REQUEST}, "user_unknown"),
    ("/mint", b"\xff\xfe", "request_invalid"),
    ("/mint", {"challenge_id": "x", **REQUEST, "assertion": {}}, "request_invalid"),
]


def test_endpoints_reject_bad_input_without_state_change(
    live_mint: LiveMint, client: httpx.Client, tmp_path: Path
) -> None:
    _enroll(client, live_mint, tmp_path / "alice.json", "alice")
    before = _database_rows(live_mint)
    for path, body, reason in BAD_REQUESTS:
        if isinstance(body, bytes):
            response = client.post(path, content=body, headers={"content-type": "application/json"})
        else:
            response = client.post(path, json=body)
        assert 400 <= response.status_code < 500, (path, body, response.text)
        assert response.json()["error"] == reason, (path, body)
        assert response.headers["x-request-id"]
    assert _database_rows(live_mint) == before


def test_mint_rejects_bad_assertions_keeping_challenge(
    live_mint: LiveMint, client: httpx.Client, tmp_path: Path
) -> None:
    _enroll(client, live_mint, tmp_path / "alice.json", "alice")
    body = _assertion(client, live_mint, tmp_path / "alice.json")
    variants: list[tuple[dict[str, Any], str]] = []

    bad_base64 = json.loads(json.dumps(body))
    bad_base64["assertion"]["response"]["signature"] = "***"
    variants.append((bad_base64, "request_invalid"))
    bad_signature = json.loads(json.dumps(body))
    bad_signature["assertion"]["response"]["signature"] = b64url_encode(b"\x30\x00")
    variants.append((bad_signature, "assertion_invalid"))
    other_scope = {**body, "scopes": ["payments:write"]}
    variants.append((other_scope, "challenge_mismatch"))
    unknown_challenge = {**body, "challenge_id": "AAAAAAAAAAAAAAAAAAAAAA"}
    variants.append((unknown_challenge, "challenge_unknown"))
    long_ttl = {**body, "ttl_seconds": 7200}
    variants.append((long_ttl, "ttl_out_of_range"))

    before = _database_rows(live_mint)
    for variant, reason in variants:
        response = client.post("/mint", json=variant)
        assert 400 <= response.status_code < 500, (reason, response.text)
        assert response.json()["error"] == reason
    assert _database_rows(live_mint) == before
    assert client.post("/mint", json=body).status_code == 200


def test_audit_log_of_http_session_verifies(
    live_mint: LiveMint, client: httpx.Client, tmp_path: Path
) -> None:
    _enroll(client, live_mint, tmp_path / "alice.json", "alice")
    client.post("/mint", json=_assertion(client, live_mint, tmp_path / "alice.json"))
    client.post("/register", json={"user": 5})
    result = audit.verify(live_mint.settings.audit_path)
    assert result.ok
    events = [
        json.loads(line)["event"] for line in live_mint.settings.audit_path.read_text().splitlines()
    ]
    assert events == ["credential_registered", "token_minted", "request_rejected"]


def test_healthz_and_jwks_answer(client: httpx.Client) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    algorithms = sorted(key["alg"] for key in client.get("/.well-known/jwks.json").json()["keys"])
    assert algorithms == ["ES256", "EdDSA"]
