"""Real OPA processes, real gRPC and HTTP servers on loopback, for the ext_authz tests."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
OPA_BINARY = REPO / ".bin" / "opa"
POLICY_DIR = REPO / "opa" / "authz"
OPA_START_TIMEOUT_SECONDS = 20


@dataclass
class OpaServer:
    """One running ``opa run --server`` process."""

    process: subprocess.Popen[str]
    url: str

    def kill(self) -> None:
        """Kill the process and wait for it to exit."""
        self.process.kill()
        self.process.wait(timeout=10)


def _free_port() -> int:
    # NOTE: the port is free when this returns, but another process could take it before OPA
    # binds it. OPA then fails to start and the fixture reports that.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_opa(policy_dir: Path = POLICY_DIR) -> OpaServer:
    """Start OPA on a free loopback port with ``policy_dir`` loaded, once its listener is up."""
    if not OPA_BINARY.exists():
        pytest.skip(f"OPA binary not found at {OPA_BINARY}; build it first")
    port = _free_port()
    command = [
        str(OPA_BINARY),
        "run",
        "--server",
        "--skip-version-check",
        "--addr",
        f"127.0.0.1:{port}",
        "--log-level",
        "debug",
        "--log-level-request",
        "error",
        str(policy_dir),
    ]
    # The command is built from fixed paths in this repository, not from outside input.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    ready = threading.Event()
    lines: list[str] = []

    def read_log() -> None:
        # OPA logs "Server initialized." at debug level once its listeners are bound.
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "Server initialized." in line:
                ready.set()
        ready.set()

    threading.Thread(target=read_log, daemon=True).start()
    if not ready.wait(OPA_START_TIMEOUT_SECONDS) or process.poll() is not None:
        process.kill()
        raise RuntimeError(
            f"OPA failed to start on port {port}; its last log lines:\n" + "".join(lines[-20:])
        )
    return OpaServer(process, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    server = start_opa()
    yield server
    server.kill()
