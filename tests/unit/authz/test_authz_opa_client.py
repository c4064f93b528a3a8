"""The OPA client fails closed, tested against a real HTTP server on loopback.

Real OPA runs in the integration tests. Here a small HTTP server replaces it, because real
OPA never returns the broken replies these tests need.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from authz.errors import Reason
from authz.opa import (
    DECISION_PATH,
    OpaClient,
    PolicyResultError,
    PolicyUnavailableError,
    _revision_from_body,
)

INPUT = {"method": "GET", "path": "/orders", "scopes": ["orders:read"], "sub": "a", "aud": "b"}


@dataclass
class FakeReply:
    status: int = 200
    body: bytes = b'{"result":{"allow":true,"reason":"allowed"}}'
    hold: threading.Event | None = None
    seen_paths: list[str] = field(default_factory=list)
    seen_bodies: list[dict] = field(default_factory=list)
    seen_request_ids: list[str | None] = field(default_factory=list)


@pytest.fixture(scope="module")
def opa_server() -> Iterator[tuple[list[FakeReply], str]]:
    current: list[FakeReply] = [FakeReply()]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            reply = current[0]
            length = int(self.headers["content-length"])
            reply.seen_paths.append(self.path)
            reply.seen_bodies.append(json.loads(self.rfile.read(length)))
            reply.seen_request_ids.append(self.headers.get("x-request-id"))
            if reply.hold is not None:
                reply.hold.wait(5)
            self.send_response(reply.status)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield current, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def opa_reply(opa_server: tuple[list[FakeReply], str]) -> Iterator[tuple[FakeReply, str]]:
    current, url = opa_server
    current[0] = FakeReply()
    yield current[0], url
    if current[0].hold is not None:
        current[0].hold.set()


def test_decide_returns_decision(opa_reply: tuple[FakeReply, str]) -> None:
    reply, url = opa_reply

    decision = OpaClient(url).decide(INPUT, request_id="req-1")

    assert decision.allow is True
    assert decision.reason == "allowed"
    assert reply.seen_paths == [DECISION_PATH]
    assert reply.seen_bodies == [{"input": INPUT}]


def test_decide_falls_back_to_request_id(opa_reply: tuple[FakeReply, str]) -> None:
    reply, url = opa_reply

    decision = OpaClient(url).decide(INPUT, request_id="req-2")

    assert reply.seen_request_ids == ["req-2"]
    assert decision.decision_id == "req-2"


def test_decide_uses_opa_decision_id(opa_reply: tuple[FakeReply, str]) -> None:
    reply, url = opa_reply
    reply.body = b'{"decision_id":"d-77","result":{"allow":false,"reason":"scope_denied"}}'

    decision = OpaClient(url).decide(INPUT, request_id="req-3")

    assert decision.decision_id == "d-77"
    assert decision.allow is False


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, b'{"code":"internal_error"}', "returned HTTP 500"),
        (400, b'{"code":"invalid_parameter"}', "returned HTTP 400"),
        (200, b"{}", "decision is undefined"),
        (200, b"not json", "not JSON"),
        (200, b"[]", "not an object"),
        (200, b'{"result":true}', "decision is not an object"),
        (200, b'{"result":{"allow":"true","reason":"x"}}', "must be"),
        (200, b'{"result":{"allow":1,"reason":"x"}}', "must be"),
        (200, b'{"result":{"allow":true}}', "must be"),
    ],
)
def test_decide_rejects_bad_reply(
    opa_reply: tuple[FakeReply, str], status: int, body: bytes, message: str
) -> None:
    reply, url = opa_reply
    reply.status, reply.body = status, body

    with pytest.raises(PolicyResultError, match=message) as raised:
        OpaClient(url).decide(INPUT)

    assert raised.value.reason == Reason.POLICY_ERROR


def test_decide_rejects_slow_opa(opa_reply: tuple[FakeReply, str]) -> None:
    reply, url = opa_reply
    reply.hold = threading.Event()

    with pytest.raises(PolicyUnavailableError, match="timed out") as raised:
        OpaClient(url, timeout=0.05).decide(INPUT)

    assert raised.value.reason == Reason.POLICY_UNAVAILABLE


def test_decide_rejects_unreachable_opa() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now, so the connection is refused.

    with pytest.raises(PolicyUnavailableError, match="unreachable") as raised:
        OpaClient(f"http://127.0.0.1:{port}").decide(INPUT)

    assert raised.value.reason == Reason.POLICY_UNAVAILABLE


def test_revision_from_body_sorts_bundles() -> None:
    body = {
        "result": {
            "z.tar.gz": {"manifest": {"revision": "r2"}},
            "a.tar.gz": {"manifest": {"revision": "r1"}},
        }
    }

    assert _revision_from_body(body) == '{"a.tar.gz":"r1","z.tar.gz":"r2"}'


def test_revision_from_body_without_bundles_is_empty_object() -> None:
    assert _revision_from_body({"result": {}}) == "{}"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"result": []},
        {"result": {"b": {"manifest": {"revision": 7}}}},
        {"result": {"b": "not an object"}},
    ],
)
def test_revision_from_body_rejects_unexpected_shape(body: object) -> None:
    with pytest.raises(PolicyResultError) as error:
        _revision_from_body(body)

    assert error.value.reason == Reason.POLICY_ERROR


def test_bundle_revision_rejects_unreachable_opa() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = OpaClient(f"http://127.0.0.1:{port}")

    with pytest.raises(PolicyUnavailableError, match="OPA is unreachable"):
        client.bundle_revision()
    client.close()
