"""The decision core: credentials, status mapping, fail-closed handling and metrics.

The policy here is a recording stand-in so the tests can see the exact input and make it
raise errors that real OPA cannot produce. The integration tests run against real OPA.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import pytest

from authz.decision import DecisionCore, HttpRequest, http_status_for, read_credentials
from authz.errors import AuthzError, Reason
from authz.opa import PolicyDecision, PolicyUnavailableError
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, NOW, Issuer


class RecordingPolicy:
    def __init__(self, allow: bool = True, error: Exception | None = None) -> None:
        self.allow = allow
        self.error = error
        self.inputs: list[Mapping[str, object]] = []

    def decide(self, policy_input: Mapping[str, object], request_id: str) -> PolicyDecision:
        self.inputs.append(policy_input)
        if self.error is not None:
            raise self.error
        return PolicyDecision(self.allow, "allowed" if self.allow else "scope_denied", request_id)


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _core(issuer: Issuer, policy: RecordingPolicy, now: int = NOW) -> DecisionCore:
    keys = issuer.key_set()
    return DecisionCore(lambda: keys, policy, AUDIENCE, ISSUER, clock=lambda: now)


def _headers(issuer: Issuer, **overrides: str) -> dict[str, str]:
    token = issuer.token(scopes=("orders:read", "health:read"))
    headers = {"authorization": f"Bearer {token}", "x-kms-sig": issuer.receipt(token)}
    headers.update(overrides)
    return headers


def test_check_allows_and_sets_upstream_headers(issuer: Issuer) -> None:
    result = _core(issuer, RecordingPolicy()).check(
        HttpRequest("GET", "/orders/7", _headers(issuer))
    )

    assert result.allowed
    assert result.status == 200
    assert result.upstream_headers == {
        "x-ztmint-sub": "alice@example.com",
        "x-ztmint-scope": "orders:read health:read",
        "x-ztmint-jti": "jti-0001",
    }


def test_check_sends_normalised_input_to_policy(issuer: Issuer) -> None:
    policy = RecordingPolicy()

    _core(issuer, policy).check(HttpRequest("GET", "/public/../orders//7?x=1", _headers(issuer)))

    assert policy.inputs == [
        {
            "method": "GET",
            "path": "/orders/7",
            "scopes": ["orders:read", "health:read"],
            "sub": "alice@example.com",
            "aud": AUDIENCE,
        }
    ]


def test_check_denies_scope_with_403(issuer: Issuer) -> None:
    result = _core(issuer, RecordingPolicy(allow=False)).check(
        HttpRequest("DELETE", "/orders/7", _headers(issuer))
    )

    assert result.status == 403
    assert result.reason == Reason.SCOPE_DENIED
    assert json.loads(result.denied_body()) == {"error": "scope_denied"}


def test_check_denies_expired_token_with_401(issuer: Issuer) -> None:
    result = _core(issuer, RecordingPolicy(), now=NOW + 3600).check(
        HttpRequest("GET", "/orders/7", _headers(issuer))
    )

    assert result.status == 401
    assert result.reason == Reason.TOKEN_EXPIRED


def test_check_denies_invalid_path_with_400(issuer: Issuer) -> None:
    policy = RecordingPolicy()

    result = _core(issuer, policy).check(HttpRequest("GET", "/orders%2F7", _headers(issuer)))

    assert result.status == 400
    assert result.reason == Reason.PATH_INVALID
    assert policy.inputs == []


def test_check_fails_closed_when_policy_unavailable(issuer: Issuer) -> None:
    policy = RecordingPolicy(error=PolicyUnavailableError("OPA is unreachable: ConnectError"))

    result = _core(issuer, policy).check(HttpRequest("GET", "/orders/7", _headers(issuer)))

    assert result.status == 403
    assert result.reason == Reason.POLICY_UNAVAILABLE


def test_check_fails_closed_on_unexpected_error(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    headers = _headers(issuer)
    policy = RecordingPolicy(error=RuntimeError("boom"))

    with caplog.at_level(logging.DEBUG):
        result = _core(issuer, policy).check(HttpRequest("GET", "/orders/7", headers))

    assert result.status == 403
    assert result.reason == Reason.INTERNAL_ERROR
    assert result.request_id in caplog.text
    assert headers["authorization"].split()[1] not in caplog.text
    assert headers["x-kms-sig"] not in caplog.text


def test_check_logs_no_credentials(issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    headers = _headers(issuer)
    core = _core(issuer, RecordingPolicy())

    with caplog.at_level(logging.DEBUG):
        core.check(HttpRequest("GET", "/orders/7", headers))
        core.check(HttpRequest("GET", "/orders/7", {**headers, "x-kms-sig": "bad"}))

    assert headers["authorization"].split()[1] not in caplog.text
    assert headers["x-kms-sig"] not in caplog.text


def test_check_counts_decisions(issuer: Issuer) -> None:
    core = _core(issuer, RecordingPolicy())

    core.check(HttpRequest("GET", "/orders/7", _headers(issuer)))
    core.check(HttpRequest("GET", "/orders/7", {}))

    registry = core.metrics.registry
    allowed = registry.get_sample_value(
        "ztmint_authz_decisions_total", {"outcome": "allow", "reason": "allowed"}
    )
    missing = registry.get_sample_value(
        "ztmint_authz_decisions_total", {"outcome": "deny", "reason": "token_missing"}
    )
    assert allowed == 1.0
    assert missing == 1.0
    assert registry.get_sample_value("ztmint_authz_decision_seconds_count") == 2.0


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, Reason.TOKEN_MISSING),
        ({"authorization": "Basic YWxpY2U6c2VjcmV0", "x-kms-sig": "r"}, Reason.TOKEN_MISSING),
        ({"authorization": "Bearer", "x-kms-sig": "r"}, Reason.TOKEN_MISSING),
        (
            {"authorization": "Bearer a.b.c,Bearer d.e.f", "x-kms-sig": "r"},
            Reason.HEADER_DUPLICATED,
        ),
        ({"authorization": "Bearer a.b.c", "x-kms-sig": "r.s.t,u.v.w"}, Reason.HEADER_DUPLICATED),
        ({"authorization": "Bearer a.b.c"}, Reason.RECEIPT_MISSING),
        ({"authorization": "Bearer a.b.c", "x-kms-sig": "  "}, Reason.RECEIPT_MISSING),
    ],
)
def test_read_credentials_rejects(headers: dict[str, str], reason: Reason) -> None:
    with pytest.raises(AuthzError) as raised:
        read_credentials(headers)

    assert raised.value.reason == reason


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_read_credentials_accepts_scheme_in_any_case(scheme: str) -> None:
    assert read_credentials({"authorization": f"{scheme} a.b.c", "x-kms-sig": "r.s.t"}) == (
        "a.b.c",
        "r.s.t",
    )


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (Reason.TOKEN_EXPIRED, 401),
        (Reason.RECEIPT_MISMATCH, 401),
        (Reason.HEADER_DUPLICATED, 401),
        (Reason.PATH_INVALID, 400),
        (Reason.SCOPE_DENIED, 403),
        (Reason.POLICY_UNAVAILABLE, 403),
        (Reason.POLICY_ERROR, 403),
        (Reason.INTERNAL_ERROR, 403),
    ],
)
def test_http_status_for_maps_reason(reason: Reason, status: int) -> None:
    assert http_status_for(reason) == status
