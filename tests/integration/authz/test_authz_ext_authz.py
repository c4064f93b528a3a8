"""The ext_authz service end to end: real OPA, gRPC and HTTP over loopback sockets."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from authz.decision import DecisionCore
from authz.grpc_service import start_grpc_server
from authz.http_service import start_http_server
from authz.opa import OpaClient
from tests.integration.authz.conftest import OpaServer, start_opa
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, NOW, Issuer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _core(issuer: Issuer, opa_url: str) -> DecisionCore:
    keys = issuer.key_set()
    # 2 s rather than the 200 ms default: the test machine is shared and OPA's first query
    # compiles the policy.
    policy = OpaClient(opa_url, timeout=2.0)
    return DecisionCore(lambda: keys, policy, AUDIENCE, ISSUER, clock=lambda: NOW)


@pytest.fixture(scope="module")
def grpc_stub(issuer: Issuer, opa: OpaServer) -> Iterator[external_auth_pb2_grpc.AuthorizationStub]:
    server, port = start_grpc_server(_core(issuer, opa.url), "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield external_auth_pb2_grpc.AuthorizationStub(channel)
    channel.close()
    server.stop(grace=None)


def _credentials(issuer: Issuer, **claims: object) -> dict[str, str]:
    token = issuer.token(**claims)
    return {"authorization": f"Bearer {token}", "x-kms-sig": issuer.receipt(token)}


def _check_request(
    method: str, path: str, headers: dict[str, str], header_map: list[tuple[str, str]] = ()
) -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=method, path=path, host="orders.internal", scheme="https", headers=headers
    )
    for key, value in header_map:
        http.header_map.headers.append(base_pb2.HeaderValue(key=key, raw_value=value.encode()))
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


def _denied_error(response: external_auth_pb2.CheckResponse) -> str:
    return json.loads(response.denied_response.body)["error"]


def test_grpc_check_allows_granted_request(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer
) -> None:
    response = grpc_stub.Check(_check_request("GET", "/orders/7", _credentials(issuer)))

    headers = {option.header.key: option.header.value for option in response.ok_response.headers}
    assert response.status.code == code_pb2.OK
    assert headers == {
        "x-ztmint-sub": "alice@example.com",
        "x-ztmint-scope": "orders:read",
        "x-ztmint-jti": "jti-0001",
    }


def test_grpc_check_overwrites_client_upstream_headers(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer
) -> None:
    response = grpc_stub.Check(_check_request("GET", "/orders/7", _credentials(issuer)))

    actions = {option.append_action for option in response.ok_response.headers}
    assert actions == {base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD}


@pytest.mark.parametrize(
    ("method", "path", "scopes", "reason", "status", "code"),
    [
        ("DELETE", "/orders/7", ("orders:read",), "scope_denied", 403, code_pb2.PERMISSION_DENIED),
        ("GET", "/orders-admin", ("orders:read",), "scope_denied", 403, code_pb2.PERMISSION_DENIED),
        (
            "GET",
            "/orders/../admin",
            ("orders:read",),
            "scope_denied",
            403,
            code_pb2.PERMISSION_DENIED,
        ),
        (
            "GET",
            "/orders%2F..%2Fadmin",
            ("orders:read",),
            "path_invalid",
            400,
            code_pb2.INVALID_ARGUMENT,
        ),
        ("GET", "/orders;x=1", ("orders:read",), "path_invalid", 400, code_pb2.INVALID_ARGUMENT),
    ],
)
def test_grpc_check_denies_request(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub,
    issuer: Issuer,
    method: str,
    path: str,
    scopes: tuple[str, ...],
    reason: str,
    status: int,
    code: int,
) -> None:
    response = grpc_stub.Check(_check_request(method, path, _credentials(issuer, scopes=scopes)))

    assert response.status.code == code
    assert response.denied_response.status.code == status
    assert _denied_error(response) == reason


def _credential_cases(issuer: Issuer) -> dict[str, tuple[dict[str, str], str]]:
    good = _credentials(issuer)
    other = _credentials(issuer, jti="jti-other")
    expired_token = issuer.token(iat=NOW - 3600)
    stranger = Issuer()
    return {
        "no-authorization": ({"x-kms-sig": good["x-kms-sig"]}, "token_missing"),
        "no-receipt": ({"authorization": good["authorization"]}, "receipt_missing"),
        "expired": (
            {
                "authorization": f"Bearer {expired_token}",
                "x-kms-sig": issuer.receipt(expired_token),
            },
            "token_expired",
        ),
        "receipt-of-other-token": (
            {"authorization": good["authorization"], "x-kms-sig": other["x-kms-sig"]},
            "receipt_mismatch",
        ),
        "unknown-group-key": (_credentials(stranger), "token_kid_unknown"),
        "other-audience": (_credentials(issuer, aud="billing-api"), "token_audience_mismatch"),
        "tampered-token": (
            {
                "authorization": good["authorization"][:-4] + "AAAA",
                "x-kms-sig": good["x-kms-sig"],
            },
            "token_signature_invalid",
        ),
        "joined-authorization": (
            {
                "authorization": good["authorization"] + "," + other["authorization"],
                "x-kms-sig": good["x-kms-sig"],
            },
            "header_duplicated",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no-authorization",
        "no-receipt",
        "expired",
        "receipt-of-other-token",
        "unknown-group-key",
        "other-audience",
        "tampered-token",
        "joined-authorization",
    ],
)
def test_grpc_check_rejects_credentials(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer, case: str
) -> None:
    headers, reason = _credential_cases(issuer)[case]

    response = grpc_stub.Check(_check_request("GET", "/orders/7", headers))

    assert response.status.code == code_pb2.UNAUTHENTICATED
    assert response.denied_response.status.code == 401
    assert _denied_error(response) == reason


def test_grpc_check_rejects_repeated_header_map_entry(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer
) -> None:
    good = _credentials(issuer)
    other = _credentials(issuer, jti="jti-other")
    header_map = [
        ("authorization", good["authorization"]),
        ("x-kms-sig", good["x-kms-sig"]),
        ("x-kms-sig", other["x-kms-sig"]),
    ]

    response = grpc_stub.Check(_check_request("GET", "/orders/7", {}, header_map))

    assert _denied_error(response) == "header_duplicated"


def test_grpc_check_rejects_headers_differing_in_case(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer
) -> None:
    good = _credentials(issuer)
    other = _credentials(issuer, jti="jti-case")
    headers = {
        "authorization": good["authorization"],
        "Authorization": other["authorization"],
        "x-kms-sig": good["x-kms-sig"],
    }

    response = grpc_stub.Check(_check_request("GET", "/orders/7", headers))

    assert _denied_error(response) == "header_duplicated"


def test_grpc_check_reads_header_map(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub, issuer: Issuer
) -> None:
    good = _credentials(issuer)
    header_map = [(name.title(), value) for name, value in good.items()]

    response = grpc_stub.Check(_check_request("GET", "/orders/7", {}, header_map))

    assert response.status.code == code_pb2.OK


def test_grpc_denied_response_is_json(
    grpc_stub: external_auth_pb2_grpc.AuthorizationStub,
) -> None:
    response = grpc_stub.Check(_check_request("GET", "/orders/7", {}))

    headers = {o.header.key: o.header.value for o in response.denied_response.headers}
    assert headers == {"content-type": "application/json"}
    assert json.loads(response.denied_response.body) == {"error": "token_missing"}


def test_grpc_check_denies_when_opa_is_killed(issuer: Issuer) -> None:
    own_opa = start_opa()
    server, port = start_grpc_server(_core(issuer, own_opa.url), "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            before = stub.Check(_check_request("GET", "/orders/7", _credentials(issuer)))
            own_opa.kill()
            after = stub.Check(_check_request("GET", "/orders/7", _credentials(issuer)))
    finally:
        own_opa.kill()
        server.stop(grace=None)

    assert before.status.code == code_pb2.OK
    assert after.status.code == code_pb2.PERMISSION_DENIED
    assert after.denied_response.status.code == 403
    assert _denied_error(after) == "policy_unavailable"


def test_grpc_check_denies_when_policy_not_loaded(issuer: Issuer, tmp_path: Path) -> None:
    empty_opa = start_opa(policy_dir=tmp_path)
    server, port = start_grpc_server(_core(issuer, empty_opa.url), "127.0.0.1:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            response = stub.Check(_check_request("GET", "/orders/7", _credentials(issuer)))
    finally:
        empty_opa.kill()
        server.stop(grace=None)

    assert response.denied_response.status.code == 403
    assert _denied_error(response) == "policy_error"


@pytest.fixture(scope="module")
def http_url(issuer: Issuer, opa: OpaServer) -> Iterator[str]:
    server, port = start_http_server(_core(issuer, opa.url), "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_http_check_allows_granted_request(http_url: str, issuer: Issuer) -> None:
    response = httpx.get(f"{http_url}/orders/7?page=2", headers=_credentials(issuer))

    assert response.status_code == 200
    assert response.headers["x-ztmint-sub"] == "alice@example.com"
    assert response.headers["x-ztmint-scope"] == "orders:read"
    assert response.headers["x-ztmint-jti"] == "jti-0001"


def test_http_check_denies_scope(http_url: str, issuer: Issuer) -> None:
    response = httpx.post(f"{http_url}/orders", headers=_credentials(issuer), content=b"{}")

    assert response.status_code == 403
    assert response.json() == {"error": "scope_denied"}


def test_http_check_rejects_missing_token(http_url: str) -> None:
    response = httpx.get(f"{http_url}/orders/7")

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "token_missing"}


def test_http_check_rejects_repeated_receipt_header(http_url: str, issuer: Issuer) -> None:
    good = _credentials(issuer)
    other = _credentials(issuer, jti="jti-other")
    headers = [
        ("authorization", good["authorization"]),
        ("x-kms-sig", good["x-kms-sig"]),
        ("x-kms-sig", other["x-kms-sig"]),
    ]

    response = httpx.get(f"{http_url}/orders/7", headers=headers)

    assert response.json() == {"error": "header_duplicated"}


def _raw_http(url: str, request: bytes) -> tuple[int, bytes]:
    """Send raw request bytes and return the status and body of the response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_http_check_decides_unusual_method(http_url: str, issuer: Issuer) -> None:
    credentials = _credentials(issuer)
    lines = [b"PROPFIND /orders/7 HTTP/1.1", b"host: orders", b"connection: close"]
    lines += [f"{name}: {value}".encode() for name, value in credentials.items()]
    status, body = _raw_http(http_url, b"\r\n".join(lines) + b"\r\n\r\n")
    assert status == 403
    assert json.loads(body) == {"error": "scope_denied"}


def test_http_check_rejects_oversized_header_as_json(http_url: str) -> None:
    request = b"GET /orders HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, body = _raw_http(http_url, request)
    assert status == 431
    assert json.loads(body) == {"error": "request_malformed"}
