"""``python -m mint.server``: the mint API as its own process, signing through a Ray cluster.

The process reads ``mint.settings`` from ``ZTMINT_*`` variables, connects to the Ray cluster
that runs the signer mesh, checks that the coordinator returns the group key, and serves the
mint API with uvicorn. Variables read here in addition to those of ``mint.settings``:

- ``ZTMINT_HOST``: address to listen on; default ``127.0.0.1``, because in the Helm chart
  Envoy is the only way in.
- ``ZTMINT_PORT``: port to listen on (``mint.settings``); default 8080.
- ``ZTMINT_RAY_ADDRESS``: the Ray cluster, for example ``ray://head:10001`` or
  ``127.0.0.1:6379``; default ``auto``, which takes ``RAY_ADDRESS`` or the local cluster.
- ``ZTMINT_TLS_CERT``, ``ZTMINT_TLS_KEY``, ``ZTMINT_TLS_CLIENT_CA``: PEM files of the server
  certificate, its key and the CA of client certificates. Set all three to require mutual
  TLS (``authz.tls.uvicorn_mtls_options``), or none for plain HTTP.

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C), 2 for invalid settings, 3 when Ray or
the coordinator cannot be reached, 4 when a backend (KMS, store, audit log) cannot be opened,
5 when the address cannot be bound.

Limitations:
    uvicorn reads the TLS files once, so a renewed certificate needs a restart. One worker
    process serves all requests, and audit shipping runs in that process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.tls import TlsConfigError, TlsFiles, server_ssl_context, uvicorn_mtls_options
from mint.settings import Settings, SettingsError, settings_from_env

log = logging.getLogger("ztmint.mint.server")

DEFAULT_HOST = "127.0.0.1"
CONNECT_TIMEOUT_SECONDS = 30.0
EXIT_SETTINGS = 2
EXIT_RAY_UNREACHABLE = 3
EXIT_BACKEND_FAILED = 4
EXIT_LISTEN_FAILED = 5
_TLS_VARIABLES = ("ZTMINT_TLS_CERT", "ZTMINT_TLS_KEY", "ZTMINT_TLS_CLIENT_CA")


class ServerStartError(Exception):
    """The mint server cannot start; ``exit_status`` identifies the part that failed."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


@dataclass(frozen=True)
class ServerSettings:
    """Listening address, Ray cluster and TLS files of the mint server.

    Attributes:
        host: the listening address.
        ray_address: passed to ``ray.init``; ``auto`` takes ``RAY_ADDRESS``.
        tls: the mTLS files, or None for plain HTTP.
    """

    host: str = DEFAULT_HOST
    ray_address: str = "auto"
    tls: TlsFiles | None = None


def server_settings_from_env(env: Mapping[str, str]) -> ServerSettings:
    """Read ``ZTMINT_HOST``, ``ZTMINT_RAY_ADDRESS`` and the ``ZTMINT_TLS_*`` files.

    Raises:
        SettingsError: when only some of the TLS variables are set.
    """
    paths = [env.get(name) or None for name in _TLS_VARIABLES]
    tls = None
    if any(paths):
        missing = [name for name, path in zip(_TLS_VARIABLES, paths, strict=True) if not path]
        if missing:
            raise SettingsError(
                f"{', '.join(missing)} not set; set all of {', '.join(_TLS_VARIABLES)} for "
                "mutual TLS, or none of them for plain HTTP"
            )
        cert, key, client_ca = (Path(path) for path in paths if path)
        tls = TlsFiles(cert=cert, key=key, client_ca=client_ca)
    return ServerSettings(
        host=env.get("ZTMINT_HOST") or DEFAULT_HOST,
        ray_address=env.get("ZTMINT_RAY_ADDRESS") or "auto",
        tls=tls,
    )


def connect_signer(ray_address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> Any:
    """Connect to Ray, find the coordinator and fetch the group key through it.

    Returns:
        A ``mint.ray_signer.RayTokenSigner`` whose coordinator has returned the group key.

    Raises:
        ServerStartError: when the cluster or the coordinator cannot be reached, or the
            group key cannot be fetched.
    """
    from ray.exceptions import RayError

    from actors.mesh import connect
    from mint.ray_signer import RayTokenSigner

    _probe_ray_address(ray_address, timeout)
    try:
        coordinator = connect(ray_address)
    except ConnectionError as error:
        raise ServerStartError(
            f"cannot reach the Ray cluster at {ray_address!r}: {error}; check ZTMINT_RAY_ADDRESS "
            "or RAY_ADDRESS and that the cluster is running",
            EXIT_RAY_UNREACHABLE,
        ) from error
    except ValueError as error:
        raise ServerStartError(
            f"the Ray cluster at {ray_address!r} runs no ztmint coordinator ({error}); start the "
            "signer mesh first",
            EXIT_RAY_UNREACHABLE,
        ) from error
    signer = RayTokenSigner(coordinator, timeout=timeout)
    try:
        signer.group_public_key()
    except RayError as error:
        raise ServerStartError(
            f"the coordinator did not return the group key within {timeout:.0f} s: "
            f"{type(error).__name__}; check `ztmint signers status`",
            EXIT_RAY_UNREACHABLE,
        ) from error
    return signer


def _probe_ray_address(ray_address: str, timeout: float) -> None:
    """Open and close one TCP connection to the Ray address, so a dead one fails fast.

    ``ray.init`` keeps retrying an unreachable GCS address for minutes (Ray 2.60), which would
    leave the pod running without ever listening.
    """
    address = os.environ.get("RAY_ADDRESS", "") if ray_address == "auto" else ray_address
    host, separator, port = address.removeprefix("ray://").rpartition(":")
    if not separator or not port.isdigit():
        return  # "auto" without RAY_ADDRESS: Ray looks for a cluster on this machine.
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout, 5.0)):
            pass
    except OSError as error:
        raise ServerStartError(
            f"cannot reach the Ray cluster at {address!r}: {error.strerror or error}; check "
            "ZTMINT_RAY_ADDRESS or RAY_ADDRESS and that the cluster is running",
            EXIT_RAY_UNREACHABLE,
        ) from error


def build_server(settings: Settings, server: ServerSettings, signer: Any) -> tuple[Any, Any]:
    """Build the uvicorn server of the mint app and the audit shipping, if configured.

    Returns:
        The ``uvicorn.Server`` and the ``mint.shipping.AuditShipping`` (not started) or None.

    Raises:
        ServerStartError: when a backend cannot be opened or the TLS files cannot be used.
    """
    import uvicorn

    from mint.app import create_app, service_from_settings
    from mint.audit import AuditError
    from mint.kms import KmsError
    from mint.oci_sinks import ShipError
    from mint.shipping import AuditShipping, ShippingStateCorrupt

    settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    shipping = None
    try:
        if settings.shipping is not None:
            shipping = AuditShipping.open(
                settings.shipping, settings.state_dir, settings.audit_path, time.time
            )
        service = service_from_settings(settings, signer, shipping=shipping)
    except (KmsError, AuditError, ShipError, ShippingStateCorrupt, OSError) as error:
        raise ServerStartError(
            f"cannot open the mint's backends: {type(error).__name__}: {error}",
            EXIT_BACKEND_FAILED,
        ) from error
    tls_options: dict[str, Any] = {}
    if server.tls is not None:
        try:
            server_ssl_context(server.tls)
        except TlsConfigError as error:
            raise ServerStartError(str(error), EXIT_SETTINGS) from error
        tls_options = uvicorn_mtls_options(server.tls)
    config = uvicorn.Config(
        create_app(service, settings),
        host=server.host,
        port=settings.port,
        log_level="warning",
        lifespan="off",
        **tls_options,
    )
    return uvicorn.Server(config), shipping


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the mint server until SIGTERM or Ctrl-C; return the exit status."""
    del argv  # Every setting is an environment variable, as the Helm chart sets them.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    env = os.environ if environ is None else environ
    try:
        settings = settings_from_env(env)
        server_settings = server_settings_from_env(env)
    except SettingsError as error:
        log.error("event=mint_server_settings_invalid error=%s", error)
        return EXIT_SETTINGS
    try:
        signer = connect_signer(server_settings.ray_address)
        server, shipping = build_server(settings, server_settings, signer)
        listener = _listen(server_settings.host, settings.port)
    except ServerStartError as error:
        log.error("event=mint_server_start_failed error=%s", error)
        return error.exit_status

    # Ray's driver exits with status 15 on SIGTERM; uvicorn passes the signal on to the
    # handler installed before it ran, so this one makes a stop by SIGTERM exit with 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if shipping is not None:
        shipping.start()
    # The socket already accepts connections (the kernel queues them until uvicorn runs),
    # so this line means clients can connect.
    log.info(
        "event=mint_listening url=%s://%s:%d mtls=%s issuer=%s kms=%s audit_shipping=%s",
        "https" if server_settings.tls is not None else "http",
        server_settings.host,
        settings.port,
        server_settings.tls is not None,
        settings.issuer,
        settings.kms.backend,
        shipping is not None,
    )
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        if shipping is not None:
            shipping.stop()
            log.info("event=audit_shipping_stopped backlog=%d", shipping.depth)
        log.info("event=mint_server_stopped")
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as error:
        listener.close()
        raise ServerStartError(
            f"cannot listen on {host}:{port}: {error.strerror or error}; free the port or set "
            "ZTMINT_HOST and ZTMINT_PORT",
            EXIT_LISTEN_FAILED,
        ) from error
    return listener


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
