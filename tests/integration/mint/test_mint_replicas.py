"""Two mint processes sharing one PostgreSQL never accept the same assertion twice.

Each replica is a separate Python process running uvicorn on a socket that the test bound
and passed down, so clients can connect before the replica has finished starting. The
replicas share the database and the WebAuthn origin, and keep separate state folders with
their own audit logs and checkpoint origins.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mint.audit import verify
from mint.softkey import SoftwareAuthenticator
from tests.support.postgres import PostgresNotInstalled, fresh_schema_url, shared_server
from tests.unit.mint.mint_testkit import invite

pytestmark = pytest.mark.integration

ROUNDS = 5
REQUEST = {"scopes": ["payments:read"], "audience": "payments", "ttl_seconds": 900}
ORIGIN = "http://localhost:8443"
REPO_ROOT = Path(__file__).resolve().parents[3]

_REPLICA_SCRIPT = """
import socket, sys
import uvicorn
from mint.app import create_app, service_from_settings
from mint.settings import settings_from_env
from tests.unit.mint.mint_testkit import InProcessTokenSigner

settings = settings_from_env()
signer = InProcessTokenSigner(bytes.fromhex(sys.argv[2]))
app = create_app(service_from_settings(settings, signer), settings)
server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
server.run(sockets=[socket.socket(fileno=int(sys.argv[1]))])
"""


@dataclass
class Replica:
    """One mint process: its base URL, state folder and process handle."""

    url: str
    state_dir: Path
    process: subprocess.Popen[bytes]
    database_url: str


def _start_replica(name: str, tmp_path: Path, database_url: str, seed: bytes) -> Replica:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    state_dir = tmp_path / name
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "ZTMINT_ORIGIN": ORIGIN,
        "ZTMINT_RP_ID": "localhost",
        "ZTMINT_STATE_DIR": str(state_dir),
        "ZTMINT_DATABASE_URL": database_url,
        "ZTMINT_AUDIT_ORIGIN": f"localhost:8443/audit/{name}",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _REPLICA_SCRIPT, str(sock.fileno()), seed.hex()],
        env=env,
        cwd=REPO_ROOT,
        pass_fds=[sock.fileno()],
    )
    sock.close()
    return Replica(f"http://127.0.0.1:{port}", state_dir, process, database_url)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    try:
        server = shared_server()
    except PostgresNotInstalled as exc:
        pytest.skip(str(exc))
    database_url = fresh_schema_url(server)
    seed = os.urandom(32)
    first = _start_replica("replica-a", tmp_path, database_url, seed)
    second = _start_replica("replica-b", tmp_path, database_url, seed)
    try:
        yield first, second
    finally:
        for replica in (first, second):
            replica.process.terminate()
        for replica in (first, second):
            replica.process.wait(timeout=30)


def _post_at_once(urls: list[str], path: str, body: dict[str, Any]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(urls))
    responses: dict[int, httpx.Response] = {}

    def post(position: int, url: str) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            barrier.wait()
            responses[position] = client.post(path, json=body)

    threads = [threading.Thread(target=post, args=item) for item in enumerate(urls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [responses[position] for position in range(len(urls))]


def test_replicas_accept_each_assertion_once(
    replicas: tuple[Replica, Replica], tmp_path: Path
) -> None:
    first, second = replicas
    authenticator = SoftwareAuthenticator(tmp_path / "key.json", ORIGIN)
    with httpx.Client(base_url=first.url, timeout=60) as client:
        body = {"user": "alice", "invitation": invite(first.database_url, "alice")}
        started = client.post("/register", json=body).json()
        credential = authenticator.register(started["publicKey"])
        body = {"challenge_id": started["challenge_id"], "credential": credential}
        assert client.post("/register/complete", json=body).status_code == 200

    statuses: list[list[int]] = []
    with httpx.Client(base_url=second.url, timeout=60) as client:
        for _ in range(ROUNDS):
            challenge = client.post("/assert", json={"user": "alice", **REQUEST})
            assert challenge.status_code == 200, challenge.text
            options = challenge.json()
            assertion = authenticator.authenticate(options["publicKey"])
            body = {"challenge_id": options["challenge_id"], **REQUEST, "assertion": assertion}
            responses = _post_at_once([first.url, second.url], "/mint", body)
            statuses.append(sorted(response.status_code for response in responses))
            losers = [response for response in responses if response.status_code != 200]
            assert [response.json()["error"] for response in losers] == ["challenge_used"]

    assert statuses == [[200, 409]] * ROUNDS
    for replica in replicas:
        assert verify(replica.state_dir / "audit.jsonl").ok
