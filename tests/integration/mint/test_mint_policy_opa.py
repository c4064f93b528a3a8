"""The mint policy (``opa/mint``) in the real OPA binary: Rego checks, the client, the mint."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from test_mint_abuse import REQUEST, enroll, mint_body, serve_mint

from mint.limits import GuardSettings
from mint.policy import OpaMintPolicy, PolicyUnavailable
from mint.requests import TokenRequest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
OPA_BINARY = REPO / ".bin" / "opa"
OPA_START_TIMEOUT_SECONDS = 30
# The arguments the local stack uses: both packages, each data.json under its own prefix.
POLICY_ARGS = (f"authz:{REPO / 'opa' / 'authz'}", f"mint:{REPO / 'opa' / 'mint'}")


@dataclass
class Opa:
    """A running ``opa run --server`` process and its base URL."""

    process: subprocess.Popen[str]
    url: str

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def start_opa(*paths: str) -> Opa:
    """Start OPA on a free loopback port with ``paths`` loaded; return once it serves."""
    if not OPA_BINARY.exists():
        pytest.skip(f"OPA binary not found at {OPA_BINARY}; build it first")
    # NOTE: the port is free when the probe closes, but another process could take it before
    # OPA binds it; OPA then exits and the test fails with its command line.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [
        str(OPA_BINARY),
        "run",
        "--server",
        "--skip-version-check",
        "--addr",
        f"127.0.0.1:{port}",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        *paths,
    ]
    process = subprocess.Popen(  # noqa: S603 (fixed paths of this repository)
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    initialized = threading.Event()
    ended = threading.Event()

    def read_log() -> None:
        # OPA logs "Server initialized." at debug level once its listener is bound.
        assert process.stdout is not None
        for line in process.stdout:
            if '"Server initialized."' in line:
                initialized.set()
        ended.set()
        initialized.set()

    threading.Thread(target=read_log, daemon=True).start()
    initialized.wait(OPA_START_TIMEOUT_SECONDS)
    if ended.is_set() or process.poll() is not None:
        process.kill()
        pytest.fail(f"OPA did not start: {command}")
    return Opa(process, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def opa() -> Iterator[Opa]:
    server = start_opa(*POLICY_ARGS)
    yield server
    server.stop()


def _opa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (fixed paths of this repository)
        [str(OPA_BINARY), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_rego_passes_strict_check() -> None:
    result = _opa("check", "--strict", str(REPO / "opa" / "mint"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rego_is_formatted() -> None:
    result = _opa("fmt", "--list", str(REPO / "opa" / "mint"))
    assert result.stdout.strip() == ""


def test_rego_tests_pass_with_coverage_at_least_90() -> None:
    result = _opa("test", "--coverage", "--format", "json", str(REPO / "opa" / "mint"))
    assert result.returncode == 0, result.stdout[-2000:]
    assert json.loads(result.stdout)["coverage"] >= 90


def test_opa_policy_allows_granted_scope(opa: Opa) -> None:
    policy = OpaMintPolicy(opa.url)
    decision = policy.decide("alice@example.com", TokenRequest(("payments:read",), "payments", 900))
    policy.close()
    assert decision.allow
    assert decision.reason == "allowed"


def test_opa_policy_denies_scope_outside_groups(opa: Opa) -> None:
    policy = OpaMintPolicy(opa.url)
    request = TokenRequest(("payments:read", "orders:read"), "payments", 900)
    decision = policy.decide("alice@example.com", request)
    policy.close()
    assert not decision.allow
    assert decision.reason == "scope_not_granted"
    assert decision.denied_scopes == ("orders:read",)
    assert "orders:read" in decision.message


def test_opa_policy_denies_ttl_above_scope_max(opa: Opa) -> None:
    policy = OpaMintPolicy(opa.url)
    request = TokenRequest(("payments:write",), "payments", 1800)
    decision = policy.decide("alice@example.com", request)
    policy.close()
    assert decision.reason == "ttl_exceeds_scope_max"


def test_opa_policy_denies_audience_not_listed(opa: Opa) -> None:
    policy = OpaMintPolicy(opa.url)
    decision = policy.decide("bob@example.com", TokenRequest(("orders:read",), "payments", 900))
    policy.close()
    assert decision.reason == "audience_not_allowed"


def test_opa_policy_rejects_undefined_decision() -> None:
    server = start_opa(f"authz:{REPO / 'opa' / 'authz'}")
    policy = OpaMintPolicy(server.url)
    try:
        with pytest.raises(PolicyUnavailable, match="undefined"):
            policy.decide("alice@example.com", TokenRequest(("payments:read",), "payments", 900))
    finally:
        policy.close()
        server.stop()


def test_authz_package_still_decides_next_to_mint(opa: Opa) -> None:
    body = {
        "input": {
            "method": "GET",
            "path": "/",
            "scopes": ["nothing"],
            "sub": "alice",
            "aud": "payments",
        }
    }
    response = httpx.post(f"{opa.url}/v1/data/ztmint/authz/decision", json=body)
    assert response.json()["result"]["reason"] == "scope_denied"


# The whole mint over HTTP, asking this OPA.


def test_mint_over_http_applies_policy(opa: Opa, tmp_path: Path) -> None:
    guard = GuardSettings(opa_url=opa.url)
    with serve_mint(tmp_path / "state", guard) as (url, origin, settings):
        with httpx.Client(base_url=url, timeout=30) as client:
            enroll(client, origin, tmp_path / "alice.json", "alice", settings.database_path)
            allowed = client.post(
                "/mint", json=mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
            )
            denied_request = {**REQUEST, "scopes": ["orders:read"]}
            denied = client.post(
                "/mint",
                json=mint_body(client, origin, tmp_path / "alice.json", "alice", denied_request),
            )
    assert allowed.status_code == 200, allowed.text
    assert denied.status_code == 403
    assert denied.json()["error"] == "policy_denied"
    assert "policy reason: scope_not_granted" in denied.json()["message"]


def test_mint_over_http_fails_closed_when_opa_stops(tmp_path: Path) -> None:
    server = start_opa(*POLICY_ARGS)
    guard = GuardSettings(opa_url=server.url, opa_timeout_seconds=1)
    with serve_mint(tmp_path / "state", guard) as (url, origin, settings):
        with httpx.Client(base_url=url, timeout=30) as client:
            enroll(client, origin, tmp_path / "alice.json", "alice", settings.database_path)
            body = mint_body(client, origin, tmp_path / "alice.json", "alice", REQUEST)
            server.stop()
            response = client.post("/mint", json=body)
    assert response.status_code == 503
    assert response.json()["error"] == "policy_unavailable"
