"""``python -m mint.server`` as its own process, signing through a real Ray signer mesh.

One local Ray instance on loopback with a 2-of-3 mesh serves the module. Each test starts the
server as a child process pointed at it with ``ZTMINT_RAY_ADDRESS``, and talks to it over
HTTP with the software authenticator, as an engineer's CLI does.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import ray

from actors.coordinator import CoordinatorSettings
from actors.mesh import start_mesh
from actors.signer import CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL, NAMESPACE, NODE_GROUP_LABEL
from authz.keys import key_set_from_jwks, parse_jwks
from authz.verify import verify_receipt, verify_token
from mint.client import MintClientError, enroll, mint_token
from mint.server import EXIT_RAY_UNREACHABLE, EXIT_SETTINGS
from mint.softkey import SoftwareAuthenticator
from tests.integration.authz.certificates import TestCa
from tests.unit.mint.mint_testkit import invite

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]
START_TIMEOUT_SECONDS = 120.0
AUDIENCE = "orders"


@dataclass
class RunningServer:
    """A ``python -m mint.server`` child process and where it listens."""

    process: subprocess.Popen[str]
    url: str
    origin: str
    log_lines: list[str]


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state_dir = tmp_path_factory.mktemp("server-mesh")
    context = ray.init(
        num_cpus=2,
        labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "fd-server"},
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
    )
    # Keep the handle: Ray ends a non-detached actor once no handle to it is left.
    coordinator = start_mesh(
        state_dir, n=3, t=2, settings=CoordinatorSettings(refill_interval=3600.0)
    )
    yield str(context.address_info["address"])
    del coordinator
    ray.shutdown()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(state_dir: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ZTMINT_") and key != "RAY_ADDRESS"
    }
    origin = f"http://localhost:{port}"
    environment.update(
        {
            "PYTHONPATH": str(REPOSITORY),
            "ZTMINT_PORT": str(port),
            "ZTMINT_ORIGIN": origin,
            "ZTMINT_STATE_DIR": str(state_dir),
            **extra,
        }
    )
    return environment


def _start(environment: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", "mint.server"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=environment,
        cwd=REPOSITORY,
    )


def _read_until_listening(process: subprocess.Popen[str]) -> list[str]:
    """Read the server's log lines until it reports where it listens, or exits."""
    assert process.stderr is not None
    watchdog = threading.Timer(START_TIMEOUT_SECONDS, process.kill)
    watchdog.start()
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            if "event=mint_listening" in line:
                break
    finally:
        watchdog.cancel()
    return lines


@pytest.fixture
def server(ray_address: str, tmp_path: Path) -> Iterator[RunningServer]:
    port = _free_port()
    environment = _environment(tmp_path / "state", port, {"ZTMINT_RAY_ADDRESS": ray_address})
    process = _start(environment)
    lines = _read_until_listening(process)
    assert lines and "event=mint_listening" in lines[-1], "".join(lines)
    try:
        yield RunningServer(process, f"http://127.0.0.1:{port}", f"http://localhost:{port}", lines)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_server_enrolls_and_mints_verifiable_token(server: RunningServer, tmp_path: Path) -> None:
    authenticator = SoftwareAuthenticator(tmp_path / "dana.json", server.origin)
    enroll(server.url, "dana", authenticator, invite(tmp_path / "state" / "mint.sqlite3", "dana"))

    minted = mint_token(server.url, "dana", authenticator, ["orders:read"], AUDIENCE, 900)

    jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).content
    keys = key_set_from_jwks(parse_jwks(jwks))
    now = int(time.time())
    token = verify_token(minted["token"], keys, now, AUDIENCE, server.origin)
    receipt = verify_receipt(minted["receipt"], token, keys, now)
    assert token.sub == "dana"
    assert receipt.token_jti == token.jti
    assert len(token.claims["ztm"]["signers"]) == 2


def test_server_logs_listening_address(server: RunningServer) -> None:
    line = server.log_lines[-1]

    assert f"url=http://127.0.0.1:{server.url.rsplit(':', 1)[1]}" in line
    assert "mtls=False" in line
    assert "kms=local" in line


def test_server_stops_cleanly_on_sigterm(server: RunningServer) -> None:
    server.process.terminate()

    assert server.process.wait(timeout=30) == 0


def test_server_rejects_unenrolled_user_with_reason(server: RunningServer, tmp_path: Path) -> None:
    authenticator = SoftwareAuthenticator(tmp_path / "erin.json", server.origin)

    with pytest.raises(MintClientError) as caught:
        mint_token(server.url, "erin", authenticator, ["orders:read"], AUDIENCE, 900)

    assert caught.value.reason == "user_unknown"


def test_server_requires_client_certificate_with_mtls(ray_address: str, tmp_path: Path) -> None:
    ca = TestCa.create("ztmint mint test CA")
    server_cert, server_key, _ = ca.write_leaf(tmp_path, "server", server=True)
    client_cert, client_key, _ = ca.write_leaf(tmp_path, "client", server=False)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem())
    port = _free_port()
    tls = {
        "ZTMINT_RAY_ADDRESS": ray_address,
        "ZTMINT_TLS_CERT": str(server_cert),
        "ZTMINT_TLS_KEY": str(server_key),
        "ZTMINT_TLS_CLIENT_CA": str(ca_file),
    }
    process = _start(_environment(tmp_path / "state", port, tls))
    try:
        lines = _read_until_listening(process)
        assert "mtls=True" in lines[-1], "".join(lines)
        trusted = ssl.create_default_context(cafile=str(ca_file))
        with_certificate = ssl.create_default_context(cafile=str(ca_file))
        with_certificate.load_cert_chain(client_cert, client_key)
        url = f"https://localhost:{port}/healthz"

        assert httpx.get(url, verify=with_certificate, timeout=10).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(url, verify=trusted, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_server_exits_when_ray_unreachable(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
        closed.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{closed.getsockname()[1]}"
    environment = _environment(tmp_path / "state", _free_port(), {"ZTMINT_RAY_ADDRESS": address})

    completed = subprocess.run(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", "mint.server"],
        capture_output=True, text=True, env=environment, cwd=REPOSITORY, timeout=60, check=False,
    )  # fmt: skip

    assert completed.returncode == EXIT_RAY_UNREACHABLE
    assert f"cannot reach the Ray cluster at {address!r}" in completed.stderr


def test_server_exits_when_tls_settings_partial(tmp_path: Path) -> None:
    extra = {"ZTMINT_RAY_ADDRESS": "127.0.0.1:1", "ZTMINT_TLS_CERT": str(tmp_path / "c.pem")}
    environment = _environment(tmp_path / "state", _free_port(), extra)

    completed = subprocess.run(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", "mint.server"],
        capture_output=True, text=True, env=environment, cwd=REPOSITORY, timeout=60, check=False,
    )  # fmt: skip

    assert completed.returncode == EXIT_SETTINGS
    assert "ZTMINT_TLS_KEY, ZTMINT_TLS_CLIENT_CA not set" in completed.stderr
