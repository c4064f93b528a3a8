"""Mutual TLS for the ext_authz listeners, with certificate files reloaded when they change.

cert-manager and similar tools renew a certificate by replacing the files on disk. Both
listeners notice this without a restart. The gRPC server gets its certificate through a
certificate configuration fetcher (``grpc.dynamic_ssl_server_credentials``) that gRPC calls
before each new TLS handshake. The HTTP server builds a new ``ssl.SSLContext`` for the next
connection once a file's fingerprint (``st_mtime_ns``, ``st_ino``, ``st_size``) changes.
Connections already open keep the certificate they started with.

Both listeners require a client certificate that chains to ``client_ca``
(``CERT_REQUIRED``, RFC 8446 section 4.3.2), and OpenSSL rejects an expired one.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

logger = logging.getLogger("ztmint.authz.tls")

_Fingerprint = tuple[tuple[int, int, int], ...]
_RELOAD_FAILED = "tls reload failed, keeping previous certificate until the files load error=%s"


class TlsConfigError(ValueError):
    """Raised when the certificate, key or client CA files cannot be read or used."""


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one mTLS server.

    Attributes:
        cert: the server certificate chain, leaf first.
        key: the server's private key (unencrypted PEM).
        client_ca: the CA certificates that client certificates must chain to.
    """

    cert: Path
    key: Path
    client_ca: Path

    def fingerprint(self) -> _Fingerprint:
        """Return (mtime in ns, inode, size) of each file, which changes when one is replaced.

        Raises:
            TlsConfigError: when a file cannot be read.
        """
        try:
            stats = [os.stat(path) for path in (self.cert, self.key, self.client_ca)]
        except OSError as exc:
            raise TlsConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc
        return tuple((item.st_mtime_ns, item.st_ino, item.st_size) for item in stats)

    def read(self) -> tuple[bytes, bytes, bytes]:
        """Return the bytes of the certificate chain, the private key and the client CA.

        Raises:
            TlsConfigError: when a file cannot be read.
        """
        try:
            return self.cert.read_bytes(), self.key.read_bytes(), self.client_ca.read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """Build a TLS 1.2+ server context that requires a client certificate from ``client_ca``.

    Raises:
        TlsConfigError: when a file is missing or the certificate and key do not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_cert_chain(files.cert, files.key)
        context.load_verify_locations(cafile=files.client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"cannot load TLS files {files}: {exc}") from exc
    return context


class ReloadingSslContext:
    """The server SSL context for new connections, rebuilt when the files change.

    Args:
        files: the certificate, key and client CA files.

    Raises:
        TlsConfigError: at construction when the files cannot be loaded.
    """

    def __init__(self, files: TlsFiles) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._fingerprint = files.fingerprint()
        self._context = server_ssl_context(files)

    def current(self) -> ssl.SSLContext:
        """Return the context to use for a new connection, reloading changed files first.

        A failed reload, such as a certificate written before its key, keeps the previous
        context and logs a warning. The next connection tries again.
        """
        with self._lock:
            try:
                fingerprint = self._files.fingerprint()
                if fingerprint != self._fingerprint:
                    self._context = server_ssl_context(self._files)
                    self._fingerprint = fingerprint
                    logger.info("tls certificate reloaded cert=%s", self._files.cert)
            except TlsConfigError as exc:
                logger.warning(_RELOAD_FAILED, exc)
            return self._context


class _CertificateFetcher:
    """gRPC's certificate configuration fetcher: a new configuration when the files changed."""

    def __init__(self, files: TlsFiles, fingerprint: _Fingerprint) -> None:
        self._files = files
        self._fingerprint = fingerprint
        self._lock = threading.Lock()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                fingerprint = self._files.fingerprint()
                if fingerprint == self._fingerprint:
                    return None
                configuration = _grpc_certificate_configuration(self._files)
            except TlsConfigError as exc:
                logger.warning(_RELOAD_FAILED, exc)
                return None
            self._fingerprint = fingerprint
            logger.info("tls certificate reloaded cert=%s", self._files.cert)
            return configuration


def _grpc_certificate_configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    # Loading into an SSLContext first checks that the key matches the certificate, which
    # gRPC would otherwise only find out during a handshake.
    server_ssl_context(files)
    cert, key, client_ca = files.read()
    return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=client_ca)


def grpc_server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Build gRPC server credentials that require client certificates and follow file changes.

    Raises:
        TlsConfigError: when the files cannot be loaded.
    """
    fingerprint = files.fingerprint()
    initial = _grpc_certificate_configuration(files)
    return grpc.dynamic_ssl_server_credentials(
        initial,
        _CertificateFetcher(files, fingerprint),
        require_client_authentication=True,
    )


def uvicorn_mtls_options(files: TlsFiles) -> dict[str, Any]:
    """Return the ``uvicorn.run`` / ``uvicorn.Config`` options for an mTLS listener.

    The mint API can pass these to uvicorn so that only clients with a certificate from
    ``client_ca`` can connect (``ssl_cert_reqs=CERT_REQUIRED``).

    Limitations:
        uvicorn loads the files once at start, so a renewed certificate needs a restart of
        the mint API, unlike the authz listeners in this module.
    """
    return {
        "ssl_certfile": str(files.cert),
        "ssl_keyfile": str(files.key),
        "ssl_ca_certs": str(files.client_ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
