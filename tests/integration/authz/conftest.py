"""Real OPA processes, real gRPC and HTTP servers on loopback, for the ext_authz tests."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
OPA_BINARY = REPO / ".bin" / "opa"
POLICY_DIR = REPO / "opa" / "authz"
OPA_START_TIMEOUT_SECONDS = 20


@dataclass
class OpaServer:
    """One running ``opa run --server`` process.

    Attributes:
        process: the OPA process.
        url: its base URL.
        log_lines: every line OPA has written to stdout or stderr so far (its log, decision
            log included), appended by a reader thread.
    """

    process: subprocess.Popen[str]
    url: str
    log_lines: list[str] = field(default_factory=list)
    log_reader: threading.Thread | None = None

    def kill(self) -> None:
        """Kill the process, wait for it to exit and for its output to be read to the end."""
        self.process.kill()
        self.process.wait(timeout=10)
        if self.log_reader is not None:
            self.log_reader.join(timeout=10)


def _free_port() -> int:
    # NOTE: the port is free when this returns, but another process could take it before OPA
    # binds it. OPA then fails to start and the fixture reports that.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_opa(policy_dir: Path | None = POLICY_DIR, extra_args: Sequence[str] = ()) -> OpaServer:
    """Start OPA on a free loopback port, and return once its listener is up.

    Args:
        policy_dir: a folder of policy and data to load, or None to load nothing.
        extra_args: more ``opa run`` arguments, such as ``--bundle`` and its verification key.

    Raises:
        OpaStartError: OPA exited or did not report ready in time.
    """
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
        *extra_args,
    ]
    if policy_dir is not None:
        command.append(str(policy_dir))
    # The command is built from fixed paths in this repository, not from outside input.
    # OPA prints a load error (such as a failed bundle verification) to stdout and its log to
    # stderr, so both are read as one stream.
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    ready = threading.Event()
    initialized = threading.Event()
    lines: list[str] = []

    def read_log() -> None:
        # OPA logs "Server initialized." at debug level once its listeners are bound.
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Server initialized." in line:
                initialized.set()
                ready.set()
        # End of output: OPA has exited, so stop waiting.
        ready.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    ready.wait(OPA_START_TIMEOUT_SECONDS)
    if not initialized.is_set() or process.poll() is not None:
        process.kill()
        process.wait(timeout=10)
        raise OpaStartError(
            f"OPA failed to start on port {port}; its last log lines:\n" + "".join(lines[-20:]),
            lines,
        )
    return OpaServer(process, f"http://127.0.0.1:{port}", lines, reader)


class OpaStartError(RuntimeError):
    """OPA exited before it was ready, or did not become ready in time.

    Attributes:
        log_lines: what OPA wrote to stdout and stderr.
    """

    def __init__(self, message: str, log_lines: list[str]) -> None:
        super().__init__(message)
        self.log_lines = log_lines


@pytest.fixture(scope="module")
def opa() -> Iterator[OpaServer]:
    server = start_opa()
    yield server
    server.kill()
