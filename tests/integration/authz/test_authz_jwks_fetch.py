"""Fetching the JWKS over HTTP from a server on loopback, and refreshing it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from authz.keys import KeySetError, fetch_jwks, key_set_from_jwks
from authz.server import JwksRefresher
from tests.unit.authz.authz_testkit import Issuer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[tuple[dict[str, bytes], str]]:
    documents: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = documents.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield documents, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_jwks_loads_key_set(jwks_server: tuple[dict[str, bytes], str]) -> None:
    documents, url = jwks_server
    issuer = Issuer()
    documents["/.well-known/jwks.json"] = json.dumps(issuer.jwks()).encode()

    keys = key_set_from_jwks(fetch_jwks(f"{url}/.well-known/jwks.json"))

    assert set(keys.group_keys) == {issuer.kid}


def test_fetch_jwks_rejects_not_found(jwks_server: tuple[dict[str, bytes], str]) -> None:
    _, url = jwks_server

    with pytest.raises(KeySetError, match="returned HTTP 404, expected 200"):
        fetch_jwks(f"{url}/missing.json")


def test_refresher_keeps_keys_when_fetch_fails(
    jwks_server: tuple[dict[str, bytes], str],
) -> None:
    _, url = jwks_server
    initial = Issuer().key_set()
    refresher = JwksRefresher(f"{url}/missing.json", interval=300, initial=initial)

    refresher.refresh()

    assert refresher.current() is initial


def test_refresher_retires_dropped_receipt_key(
    jwks_server: tuple[dict[str, bytes], str],
) -> None:
    documents, url = jwks_server
    old = Issuer()
    new = Issuer(group_key=old.group_key, receipt_kid="kms-key-v2")
    documents["/rotating.json"] = json.dumps(new.jwks()).encode()
    refresher = JwksRefresher(f"{url}/rotating.json", interval=300, initial=old.key_set())

    refresher.refresh()

    assert refresher.current().receipt_keys[old.receipt_kid].retired_at is not None
    assert refresher.current().receipt_keys["kms-key-v2"].retired_at is None
