"""A real mint served by uvicorn on 127.0.0.1 in a background thread, for HTTP tests."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from mint.app import create_app, service_from_settings
from mint.settings import Settings
from tests.unit.mint.mint_testkit import InProcessTokenSigner


@dataclass
class LiveMint:
    """A running mint: its base URL, WebAuthn origin and state folder."""

    url: str
    origin: str
    settings: Settings
    signer: InProcessTokenSigner


@pytest.fixture
def live_mint(tmp_path: Path) -> Iterator[LiveMint]:
    # The socket is bound and listening before the server thread starts, so clients can
    # connect at once: the kernel queues them until uvicorn accepts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        rp_id="localhost",
        origin=origin,
        issuer=origin,
        state_dir=tmp_path / "state",
        allow_self_attestation=True,
        port=port,
        # The per-client limit has its own tests (test_mint_hardening); here it would turn
        # most fuzzed requests from 127.0.0.1 into 429s.
        client_rate=None,
    )
    signer = InProcessTokenSigner()
    app = create_app(service_from_settings(settings, signer, random_bytes=os.urandom), settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield LiveMint(f"http://127.0.0.1:{port}", origin, settings, signer)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
