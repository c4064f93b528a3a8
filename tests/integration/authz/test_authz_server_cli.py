"""``python -m authz.server`` as a process: it logs its ports and serves checks on both."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from tests.integration.authz.certificates import TestCa
from tests.integration.authz.conftest import REPO, OpaServer
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, Issuer

pytestmark = pytest.mark.integration

_LISTENING = re.compile(r"(grpc|http|metrics) (?:ext_authz )?listening .*port=(\d+)")
TIMEOUT_SECONDS = 10


def _check_request() -> external_auth_pb2.CheckRequest:
    http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/orders/7")
    return external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )


@contextmanager
def _running_server(
    opa: OpaServer, tmp_path: Path, extra_args: Sequence[str]
) -> Iterator[tuple[dict[str, int], subprocess.Popen[str]]]:
    """Run the server until the block ends; yield the ports it logged and the process."""
    issuer = Issuer()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(issuer.jwks()))
    command = [
        sys.executable,
        "-m",
        "authz.server",
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
        "--opa-url",
        opa.url,
        "--opa-timeout",
        "2",
        "--jwks-file",
        str(jwks_file),
        "--audience",
        AUDIENCE,
        "--issuer",
        ISSUER,
        *extra_args,
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    # The command is this interpreter running this repository's module.
    process = subprocess.Popen(  # noqa: S603
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=environment
    )
    ports: dict[str, int] = {}
    ready = threading.Event()
    log: list[str] = []

    def read_log() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            match = _LISTENING.search(line)
            if match:
                ports[match.group(1)] = int(match.group(2))
            if len(ports) == 3:
                ready.set()
        ready.set()

    threading.Thread(target=read_log, daemon=True).start()
    try:
        assert ready.wait(30), "server did not log its ports"
        assert set(ports) == {"grpc", "http", "metrics"}, "".join(log)
        yield ports, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_server_serves_grpc_and_http(opa: OpaServer, tmp_path: Path) -> None:
    cache_flags = ["--token-cache-size", "16", "--decision-cache-size", "16"]
    with _running_server(opa, tmp_path, cache_flags) as (ports, process):
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            grpc_response = stub.Check(_check_request(), timeout=TIMEOUT_SECONDS)
        http_response = httpx.get(f"http://127.0.0.1:{ports['http']}/orders/7")
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics").text
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=15)

    assert grpc_response.status.code == code_pb2.UNAUTHENTICATED
    assert http_response.json() == {"error": "token_missing"}
    assert 'ztmint_authz_decisions_total{outcome="deny",reason="token_missing"} 2.0' in metrics
    assert "ztmint_authz_decision_seconds_bucket" in metrics
    assert 'ztmint_authz_cache_lookups_total{cache="token",result="hit"} 0.0' in metrics
    assert 'ztmint_authz_cache_hit_ratio{cache="decision"} 0.0' in metrics
    assert exit_code == 0


def test_server_without_caches_exports_no_cache_lookups(opa: OpaServer, tmp_path: Path) -> None:
    cache_flags = ["--token-cache-size", "0", "--decision-cache-size", "0"]
    with _running_server(opa, tmp_path, cache_flags) as (ports, _):
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics").text

    assert "ztmint_authz_cache_lookups_total{" not in metrics


def test_server_serves_mutual_tls(opa: OpaServer, tmp_path: Path) -> None:
    ca = TestCa.create("ztmint test CA")
    ca_path = tmp_path / "ca.pem"
    ca_path.write_bytes(ca.pem())
    server_cert, server_key, _ = ca.write_leaf(tmp_path, "server", server=True)
    client_cert, client_key, _ = ca.write_leaf(tmp_path, "client", server=False)
    tls_flags = [
        "--tls-cert",
        str(server_cert),
        "--tls-key",
        str(server_key),
        "--tls-client-ca",
        str(ca_path),
    ]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.pem(),
        private_key=client_key.read_bytes(),
        certificate_chain=client_cert.read_bytes(),
    )
    context = ssl.create_default_context(cafile=ca_path)
    context.load_cert_chain(client_cert, client_key)

    with _running_server(opa, tmp_path, tls_flags) as (ports, _):
        options = [("grpc.ssl_target_name_override", "localhost")]
        with grpc.secure_channel(f"127.0.0.1:{ports['grpc']}", credentials, options) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            grpc_response = stub.Check(_check_request(), timeout=TIMEOUT_SECONDS)
        with httpx.Client(verify=context, timeout=TIMEOUT_SECONDS) as client:
            https_response = client.get(f"https://localhost:{ports['http']}/orders/7")
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{ports['http']}/orders/7", timeout=TIMEOUT_SECONDS)

    assert grpc_response.status.code == code_pb2.UNAUTHENTICATED
    assert https_response.json() == {"error": "token_missing"}


def test_server_rejects_partial_tls_flags(opa: OpaServer, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "authz.server",
        "--grpc-listen",
        "127.0.0.1:0",
        "--opa-url",
        opa.url,
        "--jwks-file",
        str(tmp_path / "unused.json"),
        "--audience",
        AUDIENCE,
        "--issuer",
        ISSUER,
        "--tls-cert",
        str(tmp_path / "server.pem"),
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    (tmp_path / "unused.json").write_text(json.dumps(Issuer().jwks()))

    # The command is this interpreter running this repository's module.
    finished = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, env=environment, timeout=60, check=False
    )

    assert finished.returncode == 2
    assert "--tls-cert, --tls-key and --tls-client-ca" in finished.stderr
