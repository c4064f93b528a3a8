"""Break-glass over real HTTP: uvicorn on loopback, httpx, software authenticators, a fake clock.

``alice`` files requests; ``g1``, ``g2`` and ``g3`` are guardians with t_g = 2, enrolled with
software authenticators that set the UV flag; ``mallory`` is enrolled but is no guardian. The
service runs on the test's ``FakeClock``, so expiry is tested without waiting.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn

from mint.app import create_app, service_from_settings
from mint.breakglass import BreakGlassSettings
from mint.breakglass_cli import (
    approve_breakglass,
    describe_breakglass,
    mint_breakglass,
    request_breakglass,
)
from mint.cli import main
from mint.client import MintClientError, enroll
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from tests.unit.mint.mint_testkit import FakeClock, InProcessTokenSigner, invite

pytestmark = pytest.mark.integration

SCOPES = ["payments:admin"]
AUDIENCE = "payments"
REASON = "settlement batch stuck; need payments:admin to release it"
GUARDIANS = ("g1", "g2", "g3")


@dataclass
class BreakGlassMint:
    url: str
    origin: str
    settings: Settings
    clock: FakeClock
    keys: dict[str, SoftwareAuthenticator]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[BreakGlassMint]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        rp_id="localhost",
        origin=origin,
        issuer=origin,
        state_dir=tmp_path / "state",
        allow_self_attestation=True,
        port=port,
        breakglass=BreakGlassSettings(GUARDIANS, 2),
    )
    clock = FakeClock()
    service = service_from_settings(settings, InProcessTokenSigner(), clock, os.urandom)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service, settings), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    keys: dict[str, SoftwareAuthenticator] = {}
    try:
        for user in ("alice", *GUARDIANS, "mallory"):
            keys[user] = SoftwareAuthenticator(
                tmp_path / f"{user}.json", origin, user_verified=user != "alice"
            )
            enroll(url, user, keys[user], invite(settings.database_path, user))
        yield BreakGlassMint(url, origin, settings, clock, keys)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _file(live: BreakGlassMint, duration: int = 1800) -> str:
    filed = request_breakglass(
        live.url, "alice", live.keys["alice"], SCOPES, AUDIENCE, duration, REASON
    )
    return str(filed["request_id"])


def _approve(live: BreakGlassMint, request_id: str, guardian: str) -> dict[str, Any]:
    described = describe_breakglass(live.url, request_id)
    # A non-guardian's credential is not in the options' allow list; open it so it can try.
    described["publicKey"] = {**described["publicKey"], "allowCredentials": []}
    return approve_breakglass(live.url, guardian, live.keys[guardian], described)


def _reason(call: Any) -> str:
    with pytest.raises(MintClientError) as caught:
        call()
    return caught.value.reason


def _audit(live: BreakGlassMint) -> list[dict[str, Any]]:
    lines = live.settings.audit_path.read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_breakglass_http_mints_verifiable_token_once(live: BreakGlassMint) -> None:
    request_id = _file(live)
    _approve(live, request_id, "g1")
    _approve(live, request_id, "g3")
    minted = mint_breakglass(live.url, "alice", live.keys["alice"], request_id, 900)

    jwks = jwt.PyJWKSet.from_dict(httpx.get(f"{live.url}/.well-known/jwks.json").json())
    keys = {key.key_id: key for key in jwks.keys}
    claims = jwt.decode(
        minted["token"],
        keys[jwt.get_unverified_header(minted["token"])["kid"]].key,
        algorithms=["EdDSA"],
        audience=AUDIENCE,
        issuer=live.origin,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )
    assert claims["scope"] == "payments:admin"
    assert claims["sub"] == "alice"
    assert claims["exp"] <= describe_breakglass(live.url, request_id)["expires_at"]
    second = _reason(lambda: mint_breakglass(live.url, "alice", live.keys["alice"], request_id))
    assert second == "breakglass_already_granted"


def test_breakglass_http_rejects_below_threshold(live: BreakGlassMint) -> None:
    request_id = _file(live)
    _approve(live, request_id, "g2")
    reason = _reason(lambda: mint_breakglass(live.url, "alice", live.keys["alice"], request_id))
    assert reason == "breakglass_not_approved"


def test_breakglass_http_rejects_duplicate_guardian(live: BreakGlassMint) -> None:
    request_id = _file(live)
    _approve(live, request_id, "g1")
    assert _reason(lambda: _approve(live, request_id, "g1")) == "breakglass_duplicate_approval"
    assert describe_breakglass(live.url, request_id)["approvals"] == ["g1"]


def test_breakglass_http_rejects_non_guardian(live: BreakGlassMint) -> None:
    request_id = _file(live)
    assert _reason(lambda: _approve(live, request_id, "mallory")) == "guardian_unknown"
    assert describe_breakglass(live.url, request_id)["approvals"] == []


def test_breakglass_http_rejects_unknown_request(live: BreakGlassMint) -> None:
    assert _reason(lambda: describe_breakglass(live.url, "0" * 32)) == "breakglass_unknown"


def test_breakglass_http_enforces_expiry(live: BreakGlassMint) -> None:
    request_id = _file(live, duration=600)
    _approve(live, request_id, "g1")
    live.clock.advance(600)
    assert _reason(lambda: _approve(live, request_id, "g2")) == "breakglass_expired"
    reason = _reason(lambda: mint_breakglass(live.url, "alice", live.keys["alice"], request_id))
    assert reason == "breakglass_expired"


def test_breakglass_http_rejects_duration_over_an_hour(live: BreakGlassMint) -> None:
    reason = _reason(lambda: _file(live, duration=3601))
    assert reason == "breakglass_request_invalid"


def test_breakglass_http_audit_contains_loud_events(live: BreakGlassMint) -> None:
    request_id = _file(live)
    _approve(live, request_id, "g1")
    _approve(live, request_id, "g2")
    minted = mint_breakglass(live.url, "alice", live.keys["alice"], request_id)

    records = _audit(live)
    events = [record["event"] for record in records]
    assert events.count("breakglass_requested") == 1
    assert events.count("breakglass_approved") == 2
    assert events.count("breakglass_granted") == 1
    granted = records[events.index("breakglass_granted")]["fields"]
    assert granted["level"] == "CRITICAL"
    assert granted["request_id"] == request_id
    token_record = records[minted["audit_index"]]
    assert token_record["event"] == "token_minted"
    assert token_record["fields"]["breakglass"] == request_id


def test_breakglass_cli_request_approve_mint(
    live: BreakGlassMint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--url", live.url, "--origin", live.origin, "--authenticator", "software"]
    status = main(
        [
            "breakglass",
            "request",
            *common,
            "--user",
            "alice",
            "--key-file",
            str(tmp_path / "alice.json"),
            "--scope",
            "payments:admin",
            "--aud",
            AUDIENCE,
            "--duration",
            "20m",
            "--reason",
            REASON,
        ]
    )
    assert status == 0
    request_id = capsys.readouterr().out.split()[2]
    for guardian in ("g1", "g2"):
        key_file = str(tmp_path / f"{guardian}.json")
        approve = ["breakglass", "approve", *common, "--user", guardian, "--key-file", key_file]
        assert main([*approve, request_id]) == 0
    mint = ["breakglass", "mint", *common, "--user", "alice", "--key-file"]
    assert main([*mint, str(tmp_path / "alice.json"), request_id, "--json"]) == 0
    minted = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    assert minted["expires_at"] <= describe_breakglass(live.url, request_id)["expires_at"]
