"""The local stack behind ``ztmint up`` and ``ztmint demo``.

One process is the Ray driver: it starts a local Ray instance whose node carries the labels of
the confidential node group, starts the signer mesh and the coordinator, serves the mint API
with uvicorn in a thread, and runs the OPA server and the authz service as child processes.
``Stack.stop`` stops them in the reverse order. All state (sealed signing shares, the SQLite
database, the audit log, the local KMS key) lives under one folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The local stack is one machine: keep every Ray service on loopback. Without this, Ray on
# Linux binds to the host's routable address (ray._private.services.get_node_ip_address).
# Ray reads the variable when it is imported, so it is set before any import of ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

log = logging.getLogger("ztmint.stack")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_GROUP_LABEL = "ztmint.io/node-group"
FAULT_DOMAIN_LABEL = "ztmint.io/fault-domain"
CONFIDENTIAL_NODE_GROUP = "confidential"
DEFAULT_AUDIENCE = "orders"
START_TIMEOUT_SECONDS = 60.0
WATCH_INTERVAL_SECONDS = 1.0


class StackError(Exception):
    """A part of the local stack failed to start."""


@dataclass(frozen=True)
class StackConfig:
    """The state folder, size and listening ports of the local stack.

    A port of 0 picks a free loopback port at start, which tests and the demo use so that two
    stacks on one machine never collide.
    """

    state_dir: Path
    signers: int = 3
    threshold: int = 2
    mint_port: int = 8700
    authz_grpc_port: int = 9191
    authz_http_port: int = 9192
    opa_port: int = 8181
    dashboard_port: int = 8265
    include_dashboard: bool = True
    audience: str = DEFAULT_AUDIENCE


@dataclass
class Endpoints:
    """The loopback addresses the running stack listens on."""

    mint_url: str = ""
    authz_grpc: str = ""
    authz_http: str = ""
    opa_url: str = ""
    dashboard_url: str = ""
    ray_address: str = ""


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port(configured: int) -> int:
    return configured or free_port()


def opa_binary() -> str:
    """Find the OPA binary: the project's .bin first, then PATH."""
    local = PROJECT_ROOT / ".bin" / "opa"
    if local.exists():
        return str(local)
    found = shutil.which("opa")
    if found is None:
        raise StackError("opa binary not found in .bin/ or on PATH: run `make setup` first")
    return found


def wait_until(
    check: Callable[[], bool], what: str, timeout: float = START_TIMEOUT_SECONDS
) -> None:
    """Poll ``check`` until it returns True, or raise StackError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise StackError(f"{what} did not become ready within {timeout:.0f} s")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Stack:
    """The running local stack; start it with ``start`` and always ``stop`` it."""

    config: StackConfig
    progress: Callable[[str], None] = print
    endpoints: Endpoints = field(default_factory=Endpoints)
    _children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _mint_server: object | None = None
    _mint_thread: threading.Thread | None = None
    _ray_started: bool = False

    def start(self) -> Endpoints:
        """Start every part in dependency order; on any failure stop what started and raise."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_ray()
            coordinator = self._start_mesh()
            self._start_opa()
            self._start_mint(coordinator)
            self._start_authz()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def _start_ray(self) -> None:
        import ray

        self.progress("starting Ray (local instance, node labelled as the confidential group)")
        dashboard_port = _port(self.config.dashboard_port)
        context = ray.init(
            # "local" always starts a new instance; without it ray.init joins a cluster that
            # happens to run on this machine (RAY_ADDRESS or the last started one).
            address="local",
            namespace="ztmint",
            labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "local-0"},
            include_dashboard=self.config.include_dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            log_to_driver=False,
            configure_logging=False,
        )
        self._ray_started = True
        self.endpoints.ray_address = context.address_info["gcs_address"]
        if self.config.include_dashboard and context.dashboard_url:
            self.endpoints.dashboard_url = f"http://{context.dashboard_url}"

    def _start_mesh(self) -> object:
        from actors.mesh import start_mesh

        self.progress(
            f"starting {self.config.signers} signers with threshold {self.config.threshold}"
        )
        return start_mesh(
            self.config.state_dir / "signers",
            n=self.config.signers,
            t=self.config.threshold,
            progress=self.progress,
        )

    def _start_opa(self) -> None:
        port = _port(self.config.opa_port)
        self.progress(f"starting OPA on 127.0.0.1:{port}")
        command = [
            opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{port}",
            "--skip-version-check", "--log-level", "error",
            # Each package's data.json under its own prefix, because both have a "scopes" table.
            f"authz:{PROJECT_ROOT / 'opa' / 'authz'}", f"mint:{PROJECT_ROOT / 'opa' / 'mint'}",
        ]  # fmt: skip
        self._spawn("opa", command)
        self.endpoints.opa_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(f"{self.endpoints.opa_url}/health"), "OPA")

    def _start_mint(self, coordinator: object) -> None:
        import uvicorn

        from mint.ray_signer import RayTokenSigner
        from mint.wiring import build_app

        port = _port(self.config.mint_port)
        # WebAuthn forbids IP addresses as relying party ids, so engineers use "localhost".
        self.endpoints.mint_url = f"http://localhost:{port}"
        self.progress(f"starting the mint API on {self.endpoints.mint_url}")
        app = build_app(
            state_dir=self.config.state_dir,
            signer=RayTokenSigner(coordinator),
            public_url=self.endpoints.mint_url,
            opa_url=self.endpoints.opa_url,
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, name="mint-api", daemon=True)
        thread.start()
        self._mint_server, self._mint_thread = server, thread
        wait_until(lambda: _http_ok(f"{self.endpoints.mint_url}/healthz"), "mint API")

    def _start_authz(self) -> None:
        grpc_port = _port(self.config.authz_grpc_port)
        http_port = _port(self.config.authz_http_port)
        self.progress(f"starting the authz service on 127.0.0.1:{grpc_port} (gRPC)")
        command = [
            sys.executable, "-m", "authz.server",
            "--grpc-listen", f"127.0.0.1:{grpc_port}",
            "--http-listen", f"127.0.0.1:{http_port}",
            "--opa-url", self.endpoints.opa_url,
            "--jwks-url", f"{self.endpoints.mint_url}/.well-known/jwks.json",
            "--audience", self.config.audience,
            "--issuer", self.endpoints.mint_url,
        ]  # fmt: skip
        self._spawn("authz", command)
        self.endpoints.authz_grpc = f"127.0.0.1:{grpc_port}"
        self.endpoints.authz_http = f"http://127.0.0.1:{http_port}"
        wait_until(lambda: _tcp_open(grpc_port), "authz service")

    def _spawn(self, name: str, command: list[str]) -> None:
        log_path = self.config.state_dir / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - the command is built from fixed parts
                command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT
            )
        self._children.append((name, process))

    def exited_part(self) -> str | None:
        """Return a description of the first part that stopped on its own, or None."""
        for name, process in self._children:
            status = process.poll()
            if status is not None:
                log_path = self.config.state_dir / f"{name}.log"
                return f"{name} exited with status {status}; see {log_path}"
        if self._mint_thread is not None and not self._mint_thread.is_alive():
            return "the mint API server stopped; see the messages above"
        return None

    def stop(self) -> None:
        """Stop every part that started, in reverse order; safe to call more than once."""
        for name, process in reversed(self._children):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    log.warning("child %s did not stop within 10 s of SIGTERM; killing it", name)
                    process.kill()
                    process.wait()
        self._children.clear()
        if self._mint_server is not None:
            self._mint_server.should_exit = True  # type: ignore[attr-defined]
            if self._mint_thread is not None:
                self._mint_thread.join(timeout=10)
            self._mint_server = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ztmint up`` options to ``parser``."""
    parser.add_argument("--state", type=Path, default=Path(".state/stack"),
                        help="folder for all local state (default: .state/stack)")  # fmt: skip
    parser.add_argument("--signers", type=int, default=3, help="number of signers n (default 3)")
    parser.add_argument("--threshold", type=int, default=2, help="signers t needed (default 2)")
    ports = (
        ("--mint-port", 8700, "mint API"),
        ("--authz-port", 9191, "authz gRPC"),
        ("--authz-http-port", 9192, "authz HTTP"),
        ("--opa-port", 8181, "OPA server"),
        ("--dashboard-port", 8265, "Ray dashboard"),
    )
    for option, default, part in ports:
        parser.add_argument(
            option, type=int, default=default, help=f"{part} port (default {default}; 0: any free)"
        )
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE,
                        help="audience the authz service accepts (default: orders)")  # fmt: skip


def config_from_args(args: argparse.Namespace) -> StackConfig:
    """Build a StackConfig from parsed ``ztmint up`` options."""
    return StackConfig(
        state_dir=args.state.resolve(),
        signers=args.signers,
        threshold=args.threshold,
        mint_port=args.mint_port,
        authz_grpc_port=args.authz_port,
        authz_http_port=args.authz_http_port,
        opa_port=args.opa_port,
        dashboard_port=args.dashboard_port,
        audience=args.audience,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``ztmint up``: start the stack, print where it listens, stop cleanly on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = Stack(config_from_args(args))
    status = 0
    # The handler only records the signal: Event.set() in a handler can deadlock against
    # the main thread's Event.wait().
    stop_signals: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, _frame: stop_signals.append(number))
    try:
        endpoints = stack.start()
        print("ztmint is up:")
        print(f"  mint API        {endpoints.mint_url}")
        print(f"  authz (gRPC)    {endpoints.authz_grpc}")
        print(f"  authz (HTTP)    {endpoints.authz_http}")
        print(f"  OPA             {endpoints.opa_url}")
        print(f"  Ray dashboard   {endpoints.dashboard_url or 'off'}")
        print(f"  Ray cluster     {endpoints.ray_address}  (ztmint signers status --address ...)")
        print(
            f"  enroll          ztmint users invite --state {stack.config.state_dir / 'mint'} "
            "--user USER, then ztmint enroll --user USER --invitation CODE"
        )
        print("Press Ctrl-C to stop.", flush=True)
        # A part that dies would leave the others serving but every mint or check failing,
        # so the stack stops as a whole and says which part died.
        while not stop_signals:
            time.sleep(WATCH_INTERVAL_SECONDS)
            exited = stack.exited_part()
            if exited is not None:
                log.error("stopping the stack because %s", exited)
                status = 1
                break
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping ztmint...", flush=True)
        stack.stop()
    return status
