"""Tests of the mint policy client (``mint.policy``) and how the mint fails closed without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from mint_testkit import ISSUER, ORIGIN, build_service

from mint.errors import MintError, MintReason
from mint.limits import MintGuard
from mint.metrics import MintMetrics
from mint.policy import (
    OpaMintPolicy,
    PolicyDecision,
    PolicyUnavailable,
    parse_decision,
    policy_input,
)
from mint.requests import TokenRequest
from mint.service import MintService
from mint.softkey import SoftwareAuthenticator

REQUEST = TokenRequest(("payments:read",), "payments", 900)


def test_policy_input_names_fields_of_rego_package() -> None:
    assert policy_input("alice", REQUEST) == {
        "sub": "alice",
        "scopes": ["payments:read"],
        "aud": "payments",
        "ttl_seconds": 900,
    }


def test_parse_decision_reads_denial() -> None:
    body = {
        "result": {
            "allow": False,
            "reason": "scope_not_granted",
            "message": "no",
            "denied_scopes": ["admin:read"],
        }
    }
    assert parse_decision(body) == PolicyDecision(False, "scope_not_granted", "no", ("admin:read",))


def test_parse_decision_reads_allow_without_denied_scopes() -> None:
    body = {"result": {"allow": True, "reason": "allowed", "message": "allowed"}}
    assert parse_decision(body).allow


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "undefined"),
        ([], "undefined"),
        ({"result": True}, "not an object"),
        ({"result": {"allow": "yes", "reason": "r", "message": "m"}}, "lacks allow"),
        ({"result": {"allow": True, "message": "m"}}, "lacks allow"),
        ({"result": {"allow": True, "reason": "r"}}, "lacks allow"),
        (
            {"result": {"allow": False, "reason": "r", "message": "m", "denied_scopes": [1]}},
            "denied_scopes",
        ),
    ],
)
def test_parse_decision_rejects_undefined_or_malformed(body: object, message: str) -> None:
    with pytest.raises(PolicyUnavailable, match=message):
        parse_decision(body)


def test_opa_policy_rejects_unreachable_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe socket is closed.
    policy = OpaMintPolicy(f"http://127.0.0.1:{port}", timeout_seconds=2)
    with pytest.raises(PolicyUnavailable, match="unreachable"):
        policy.decide("alice", REQUEST)
    policy.close()


def test_opa_policy_rejects_slow_server() -> None:
    # A listening socket that never accepts: the request times out reading the response.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        policy = OpaMintPolicy(f"http://127.0.0.1:{port}", timeout_seconds=0.2)
        with pytest.raises(PolicyUnavailable, match="timed out"):
            policy.decide("alice", REQUEST)
        policy.close()


def test_opa_policy_repr_names_server_only() -> None:
    assert (
        repr(OpaMintPolicy("http://127.0.0.1:1/")) == "OpaMintPolicy(base_url='http://127.0.0.1:1')"
    )


class UnavailablePolicy:
    """Test double of ``MintPolicy`` whose server is down."""

    def decide(self, user: str, request: TokenRequest) -> PolicyDecision:
        raise PolicyUnavailable("OPA at http://127.0.0.1:9 is unreachable")


def test_mint_fails_closed_when_policy_unavailable(tmp_path: Path) -> None:
    parts = build_service(tmp_path / "state")
    service = MintService(
        store=parts.store,
        signer=parts.signer,
        receipt_signer=parts.kms,
        audit=parts.audit,
        relying_party=parts.relying_party,
        issuer=ISSUER,
        clock=parts.clock,
        random_bytes=os.urandom,
        guard=MintGuard(MintMetrics(), policy=UnavailablePolicy()),
    )
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "alice.json", ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    challenge = service.begin_assertion("alice", ["payments:read"], "payments", 900)
    assertion = authenticator.authenticate(challenge.options)

    with pytest.raises(MintError) as caught:
        service.mint(challenge.challenge_id, ["payments:read"], "payments", 900, assertion)
    assert caught.value.reason is MintReason.POLICY_UNAVAILABLE
    assert caught.value.status == 503
    assert parts.signer.calls == 0
