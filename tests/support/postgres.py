"""A real PostgreSQL server for the tests, from the Debian ``postgresql`` package.

``shared_server()`` starts one server per test process on first use and stops it when the
process exits: ``initdb`` into a temporary folder, then ``postgres`` listening on 127.0.0.1
at a free port with its Unix socket in that folder. PostgreSQL refuses to run as root, so
under root both programs run as the ``postgres`` system user (created by the package)
through ``runuser``. Each test gets its own schema through ``fresh_schema_url``.

Limitations:
    Authentication is ``trust`` for connections from 127.0.0.1, and ``fsync`` is off
    because a test database need not survive a crash. Never copy these settings to a
    real deployment.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

STARTUP_TIMEOUT_SECONDS = 30.0
DATABASE = "ztmint_test"
_SERVER_USER = "postgres"

_shared: PostgresServer | None = None


class PostgresNotInstalled(RuntimeError):
    """The PostgreSQL server programs are not installed on this machine."""


def find_bin_dir() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb``, or None."""
    candidates = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not candidates:
        return None
    newest = max(candidates, key=lambda path: int(Path(path).parts[4]))
    return Path(newest).parent


@dataclass
class PostgresServer:
    """A running PostgreSQL server and the URL of its test database."""

    process: subprocess.Popen[bytes]
    data_root: Path
    port: int
    url: str

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its folder."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_root, ignore_errors=True)


def shared_server() -> PostgresServer:
    """Return this process's server, starting it on first use.

    Raises:
        PostgresNotInstalled: ``initdb`` is missing; install the Debian package
            ``postgresql``.
    """
    global _shared
    if _shared is None:
        _shared = start_server()
        atexit.register(_shared.stop)
    return _shared


def start_server() -> PostgresServer:
    """Initialise a new cluster in a temporary folder, start it and create the database.

    Raises:
        PostgresNotInstalled: ``initdb`` is missing.
        RuntimeError: the server did not become ready within ``STARTUP_TIMEOUT_SECONDS``.
    """
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresNotInstalled(
            "PostgreSQL is not installed: /usr/lib/postgresql/*/bin/initdb is missing; "
            "run `apt-get install -y postgresql`"
        )
    as_user = _run_as_prefix()
    root = Path(tempfile.mkdtemp(prefix="ztmint-pg-"))
    data_dir = root / "data"
    socket_dir = root / "sock"
    socket_dir.mkdir()
    if as_user:
        entry = pwd.getpwnam(_SERVER_USER)
        for path in (root, socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres"]
        + ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    log_file = open(root / "server.log", "wb")  # noqa: SIM115 (owned by the server process)
    process = subprocess.Popen(
        [*as_user, str(bin_dir / "postgres"), "-D", str(data_dir), "-k", str(socket_dir)]
        + ["-p", str(port), "-h", "127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    log_file.close()
    server = PostgresServer(process, root, port, "")
    try:
        _wait_until_ready(bin_dir, server)
        admin_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        server.stop()
        raise
    server.url = f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    return server


def fresh_schema_url(server: PostgresServer) -> str:
    """Create an empty schema and return a URL whose connections use only that schema."""
    schema = f"t_{secrets.token_hex(8)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{server.url}?options=-csearch_path%3D{schema}"


def _run_as_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", _SERVER_USER, "--"]


def _free_port() -> int:
    # The port is released before postgres binds it. Another process could take it in
    # between, and then startup fails with "could not bind" in server.log.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(bin_dir: Path, server: PostgresServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    command = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port), "-q"]
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        if subprocess.run(command, check=False).returncode == 0:
            return
        # pg_isready returns at once while the server is down, so the pause paces the polling.
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        log_text = (server.data_root / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not become ready; server log:\n{log_text}")
    raise RuntimeError("PostgreSQL did not become ready and its log is unreadable")
