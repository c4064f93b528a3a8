"""Envoy's gRPC ext_authz service (``envoy.service.auth.v3.Authorization/Check``).

A thin shell over ``authz.decision.DecisionCore``: it reads the method, path and headers from
``CheckRequest.attributes.request.http`` and encodes the ``CheckResult`` as a
``CheckResponse`` (Envoy API ``envoy/service/auth/v3/external_auth.proto``).
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from authz.decision import CheckResult, DecisionCore, HttpRequest
from authz.tls import TlsFiles, grpc_server_credentials

logger = logging.getLogger("ztmint.authz.grpc")

_GRPC_CODE_BY_STATUS = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
}


def request_from_check(check: external_auth_pb2.CheckRequest) -> HttpRequest:
    """Read the HTTP method, path and headers that Envoy put in a ``CheckRequest``.

    Envoy fills either ``headers`` (a map, repeated headers joined with ",") or, with
    ``encode_raw_headers``, ``header_map`` (one entry per value, bytes in ``raw_value``).
    Repeated entries in ``header_map`` are joined with "," here, so both forms reach the
    decision core in the same shape.
    """
    http = check.attributes.request.http
    headers = _headers_from(http)
    return HttpRequest(method=http.method, path=http.path, headers=headers)


def _headers_from(http: attribute_context_pb2.AttributeContext.HttpRequest) -> dict[str, str]:
    headers: dict[str, str] = {}

    def add(name: str, value: str) -> None:
        # Header names are case-insensitive: "Authorization" and "authorization" in one map
        # are two values of one header, so the core sees them as repeated, never one of them.
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value

    for name, value in http.headers.items():
        add(name, value)
    for entry in http.header_map.headers:
        add(entry.key, entry.value or entry.raw_value.decode("utf-8", errors="replace"))
    return headers


def response_from_result(result: CheckResult) -> external_auth_pb2.CheckResponse:
    """Encode a decision as the ``CheckResponse`` that Envoy expects."""
    if result.allowed:
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=external_auth_pb2.OkHttpResponse(
                headers=[_header(name, value) for name, value in result.upstream_headers.items()]
            ),
        )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(
            code=_GRPC_CODE_BY_STATUS.get(result.status, code_pb2.PERMISSION_DENIED),
            message=result.reason.value if result.reason is not None else "",
        ),
        denied_response=external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=result.status),
            headers=[_header("content-type", "application/json")],
            body=result.denied_body().decode("ascii"),
        ),
    )


def _header(name: str, value: str) -> base_pb2.HeaderValueOption:
    # Overwrite, so a client cannot smuggle its own x-ztmint-* values past the check.
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )


# The generated servicer base class has no type annotations.
class AuthorizationService(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """The ``Authorization`` gRPC service backed by one decision core."""

    def __init__(self, core: DecisionCore) -> None:
        self._core = core

    def Check(  # noqa: N802 - the method name is fixed by the proto service.
        self, request: external_auth_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> external_auth_pb2.CheckResponse:
        """Decide one ext_authz check. A refusal is an ordinary response, not a gRPC error."""
        return response_from_result(self._core.check(request_from_check(request)))


def start_grpc_server(
    core: DecisionCore, address: str, max_workers: int = 8, tls: TlsFiles | None = None
) -> tuple[grpc.Server, int]:
    """Start the gRPC ext_authz server on ``address`` (``host:port``, port 0 for any).

    Args:
        core: the decision core that decides every check.
        address: where to listen.
        max_workers: threads serving checks concurrently.
        tls: when given, serve mTLS with these files, reloaded when they change
            (``authz.tls.grpc_server_credentials``); when None, serve plaintext, which is
            only safe on loopback next to the Envoy that calls it.

    Raises:
        TlsConfigError: when ``tls`` files cannot be loaded.

    Returns:
        The running server and the port it is bound to.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers))
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(AuthorizationService(core), server)
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, grpc_server_credentials(tls))
    server.start()
    logger.info(
        "grpc ext_authz listening address=%s port=%d tls=%s", address, port, tls is not None
    )
    return server, port
