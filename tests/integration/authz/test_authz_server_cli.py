"""``python -m authz.server`` as a process: it logs its ports and serves checks on both."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from tests.integration.authz.conftest import REPO, OpaServer
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, Issuer

pytestmark = pytest.mark.integration

_LISTENING = re.compile(r"(grpc|http|metrics) (?:ext_authz )?listening .*port=(\d+)")


def test_server_serves_grpc_and_http(opa: OpaServer, tmp_path: Path) -> None:
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

        http = attribute_context_pb2.AttributeContext.HttpRequest(method="GET", path="/orders/7")
        check = external_auth_pb2.CheckRequest(
            attributes=attribute_context_pb2.AttributeContext(
                request=attribute_context_pb2.AttributeContext.Request(http=http)
            )
        )
        with grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}") as channel:
            grpc_response = external_auth_pb2_grpc.AuthorizationStub(channel).Check(check)
        http_response = httpx.get(f"http://127.0.0.1:{ports['http']}/orders/7")
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics").text
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=15)

    assert grpc_response.status.code == code_pb2.UNAUTHENTICATED
    assert http_response.json() == {"error": "token_missing"}
    assert 'ztmint_authz_decisions_total{outcome="deny",reason="token_missing"} 2.0' in metrics
    assert exit_code == 0
