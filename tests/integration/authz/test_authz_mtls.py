"""Mutual TLS on the gRPC and HTTP ext_authz listeners, over real loopback sockets.

A request without a token reaching the decision core (401 ``token_missing``) shows that the
TLS handshake passed. The rotation tests replace the server certificate files and read the
serial number of the certificate that a new connection is served.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from authz.decision import DecisionCore
from authz.grpc_service import start_grpc_server
from authz.http_service import start_http_server
from authz.opa import OpaClient
from authz.tls import TlsConfigError, TlsFiles, server_ssl_context, uvicorn_mtls_options
from tests.integration.authz.certificates import TestCa
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, Issuer

pytestmark = pytest.mark.integration

TIMEOUT_SECONDS = 10


@dataclass
class Pki:
    folder: Path
    ca: TestCa
    server: TlsFiles
    server_serial: int
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = TestCa.create("ztmint test CA")
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.pem())
    server_cert, server_key, serial = ca.write_leaf(tmp_path, "server", server=True)
    client_cert, client_key, _ = ca.write_leaf(tmp_path, "client", server=False)
    return Pki(
        tmp_path, ca, TlsFiles(server_cert, server_key, ca_path), serial, client_cert, client_key
    )


def _core() -> DecisionCore:
    keys = Issuer().key_set()
    # No check in these tests gets as far as the policy, so OPA is never asked.
    return DecisionCore(lambda: keys, OpaClient("http://127.0.0.1:9"), AUDIENCE, ISSUER)


def _client_context(pki: Pki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.server.client_ca)
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    return context


def _served_serial(port: int, pki: Pki, alpn: str) -> int:
    context = _client_context(pki, pki.client_cert, pki.client_key)
    context.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_SECONDS) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as connection:
            der = connection.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture
def https_port(pki: Pki) -> Iterator[int]:
    server, port = start_http_server(_core(), "127.0.0.1", 0, tls=pki.server)
    yield port
    server.shutdown()
    server.server_close()


def _https_get(port: int, context: ssl.SSLContext) -> httpx.Response:
    with httpx.Client(verify=context, timeout=TIMEOUT_SECONDS) as client:
        return client.get(f"https://localhost:{port}/orders/7")


def test_https_accepts_client_with_valid_certificate(https_port: int, pki: Pki) -> None:
    response = _https_get(https_port, _client_context(pki, pki.client_cert, pki.client_key))

    assert response.status_code == 401
    assert response.json() == {"error": "token_missing"}


def _rejected_client_contexts(pki: Pki) -> dict[str, ssl.SSLContext]:
    expired_cert, expired_key, _ = pki.ca.write_leaf(
        pki.folder, "expired", server=False, expired=True
    )
    stranger = TestCa.create("unknown CA")
    stranger_cert, stranger_key, _ = stranger.write_leaf(pki.folder, "stranger", server=False)
    return {
        "expired": _client_context(pki, expired_cert, expired_key),
        "unknown-ca": _client_context(pki, stranger_cert, stranger_key),
        "no-certificate": _client_context(pki, None, None),
    }


@pytest.mark.parametrize("case", ["expired", "unknown-ca", "no-certificate"])
def test_https_rejects_client(https_port: int, pki: Pki, case: str) -> None:
    context = _rejected_client_contexts(pki)[case]

    with pytest.raises(httpx.TransportError):
        _https_get(https_port, context)


def test_https_serves_rotated_certificate_without_restart(https_port: int, pki: Pki) -> None:
    before = _served_serial(https_port, pki, "http/1.1")

    _, _, new_serial = pki.ca.write_leaf(pki.folder, "server", server=True)
    after = _served_serial(https_port, pki, "http/1.1")

    assert before == pki.server_serial
    assert after == new_serial


def test_https_keeps_certificate_when_rotated_files_are_broken(https_port: int, pki: Pki) -> None:
    pki.server.key.write_bytes(b"not a key")

    served = _served_serial(https_port, pki, "http/1.1")

    assert served == pki.server_serial


@pytest.fixture
def grpc_port(pki: Pki) -> Iterator[int]:
    server, port = start_grpc_server(_core(), "127.0.0.1:0", tls=pki.server)
    yield port
    server.stop(grace=None)


def _grpc_check(port: int, pki: Pki, cert: Path | None, key: Path | None) -> object:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.server.client_ca.read_bytes(),
        private_key=key.read_bytes() if key is not None else None,
        certificate_chain=cert.read_bytes() if cert is not None else None,
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/orders/7")
    check = external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        return stub.Check(check, timeout=TIMEOUT_SECONDS)


def test_grpc_accepts_client_with_valid_certificate(grpc_port: int, pki: Pki) -> None:
    response = _grpc_check(grpc_port, pki, pki.client_cert, pki.client_key)

    assert response.status.code == code_pb2.UNAUTHENTICATED  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", ["expired", "unknown-ca", "no-certificate"])
def test_grpc_rejects_client(grpc_port: int, pki: Pki, case: str) -> None:
    expired_cert, expired_key, _ = pki.ca.write_leaf(
        pki.folder, "expired", server=False, expired=True
    )
    stranger_cert, stranger_key, _ = TestCa.create("unknown CA").write_leaf(
        pki.folder, "stranger", server=False
    )
    credentials = {
        "expired": (expired_cert, expired_key),
        "unknown-ca": (stranger_cert, stranger_key),
        "no-certificate": (None, None),
    }[case]

    with pytest.raises(grpc.RpcError) as error:
        _grpc_check(grpc_port, pki, *credentials)

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_grpc_serves_rotated_certificate_without_restart(grpc_port: int, pki: Pki) -> None:
    before = _served_serial(grpc_port, pki, "h2")

    _, _, new_serial = pki.ca.write_leaf(pki.folder, "server", server=True)
    after = _served_serial(grpc_port, pki, "h2")

    assert before == pki.server_serial
    assert after == new_serial


def test_server_ssl_context_rejects_mismatched_key(pki: Pki) -> None:
    _, other_key, _ = pki.ca.write_leaf(pki.folder, "other", server=True)
    files = TlsFiles(pki.server.cert, other_key, pki.server.client_ca)

    with pytest.raises(TlsConfigError, match="cannot load TLS files"):
        server_ssl_context(files)


def test_tls_files_fingerprint_rejects_missing_file(pki: Pki) -> None:
    files = TlsFiles(pki.folder / "absent.pem", pki.server.key, pki.server.client_ca)

    with pytest.raises(TlsConfigError, match="cannot read TLS file .*absent.pem"):
        files.fingerprint()


def test_uvicorn_mtls_options_require_client_certificate(pki: Pki) -> None:
    options = uvicorn_mtls_options(pki.server)

    assert options["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert options["ssl_ca_certs"] == str(pki.server.client_ca)
