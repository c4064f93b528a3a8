"""Envoy's HTTP ext_authz mode, served by the same decision core as the gRPC service.

In HTTP mode Envoy sends the client's method, path and allowed headers to this server
(``http_service`` of the ext_authz filter). A 200 response lets the request through, and
Envoy copies the headers named in ``allowed_upstream_headers`` upstream. Envoy sends any
other status back to the client, together with the body.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from authz.decision import DecisionCore, HttpRequest
from authz.errors import Reason
from authz.tls import ReloadingSslContext, TlsFiles

logger = logging.getLogger("ztmint.authz.http")

MAX_DISCARDED_BODY_BYTES = 1024 * 1024
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0


class _CheckHandler(BaseHTTPRequestHandler):
    """Responds to every method and path with the decision for the forwarded request."""

    core: DecisionCore
    protocol_version = "HTTP/1.1"

    def _check(self) -> None:
        self._discard_body()
        headers: dict[str, str] = {}
        for name in {key.lower() for key in self.headers.keys()}:
            # Join repeated headers with "," as Envoy does, so both modes see the same input.
            headers[name] = ",".join(self.headers.get_all(name) or [])
        result = self.core.check(HttpRequest(self.command, self.path, headers))

        if result.allowed:
            self.send_response(200)
            for name, value in result.upstream_headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = result.denied_body()
        self.send_response(result.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _discard_body(self) -> None:
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            return
        if int(length) > MAX_DISCARDED_BODY_BYTES:
            # The rest of the body stays unread, so this connection cannot carry another request.
            self.close_connection = True
        remaining = min(int(length), MAX_DISCARDED_BODY_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _check  # noqa: N815

    def __getattr__(self, name: str) -> Any:
        # Envoy forwards any method the client sent (PROPFIND, a lower-case "get", ...): each
        # gets a decision from the core instead of the base class's 501 page.
        if name.startswith("do_"):
            return self._check
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Refuse a request the HTTP parser rejected (bad request line, headers too large).

        The base class sends an HTML page; callers of an ext_authz service expect the JSON
        body with a reason code that every other refusal has.
        """
        logger.info(
            "decision outcome=denied reason=%s status=%d detail=%s",
            Reason.REQUEST_MALFORMED.value,
            code,
            message or "",
        )
        body = json.dumps({"error": Reason.REQUEST_MALFORMED.value}).encode("ascii")
        self.send_response(code, message)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # The default writes each request line to stderr; decisions are logged by the core.
        return


class _MutualTlsHttpServer(ThreadingHTTPServer):
    """Wraps each accepted connection in TLS with the newest context, handshaking per thread.

    The handshake runs in the connection's own thread rather than in the accept loop, so one
    slow or silent client cannot hold up the others.
    """

    contexts: ReloadingSslContext

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        wrapped = self.contexts.current().wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(TLS_HANDSHAKE_TIMEOUT_SECONDS)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            # Expected for clients without a valid certificate; the connection is closed.
            logger.info("tls handshake failed peer=%s error=%s", client_address[0], exc)
            return
        request.settimeout(None)
        super().finish_request(request, client_address)


def start_http_server(
    core: DecisionCore, host: str, port: int, tls: TlsFiles | None = None
) -> tuple[ThreadingHTTPServer, int]:
    """Start the HTTP ext_authz server in a daemon thread (port 0 picks a free port).

    Args:
        core: the decision core that decides every check.
        host: the address to bind.
        port: the port to bind, 0 for any free one.
        tls: when given, serve HTTPS that requires a client certificate. Changed files are
            loaded for new connections (``authz.tls.ReloadingSslContext``). When None, serve
            plain HTTP, which is only safe on loopback next to its Envoy.

    Limitations:
        HTTP/1.1 only, so the Envoy cluster that calls it must not force HTTP/2. A request
        body larger than 1 MiB is not drained, and the connection is then closed. The
        filter's ``path_prefix`` must stay empty, because the policy would see the prefixed
        path.

    Raises:
        TlsConfigError: when ``tls`` files cannot be loaded.

    Returns:
        The running server (stop it with ``shutdown()``) and the port it is bound to.
    """
    handler = type("CheckHandler", (_CheckHandler,), {"core": core})
    server: ThreadingHTTPServer
    if tls is None:
        server = ThreadingHTTPServer((host, port), handler)
    else:
        contexts = ReloadingSslContext(tls)
        server_class = type("MutualTlsHttpServer", (_MutualTlsHttpServer,), {"contexts": contexts})
        server = server_class((host, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="authz-http", daemon=True)
    thread.start()
    bound_port = server.server_address[1]
    logger.info(
        "http ext_authz listening host=%s port=%d tls=%s", host, bound_port, tls is not None
    )
    return server, int(bound_port)
