"""Mutual TLS for Ray's gRPC channels: a local CA, node certificates, and Ray's TLS environment.

Ray encrypts and authenticates its gRPC channels (GCS, raylets, workers, drivers) when every
process starts with ``RAY_USE_TLS=1`` and the PEM paths ``RAY_TLS_SERVER_CERT``,
``RAY_TLS_SERVER_KEY`` and ``RAY_TLS_CA_CERT`` (Ray documentation, "TLS Authentication").
Each process presents the server certificate both as a server and as a client, so a process
without a certificate signed by the CA cannot join the cluster or call an actor.

``ensure_node_tls`` creates a CA (EC P-256, ten years) under ``<state_dir>/tls/`` on first
use. It then issues a certificate for this node (EC P-256, ``lifetime_days``) for serverAuth
and clientAuth. Its subject alternative names are ``localhost``, ``127.0.0.1`` and any names
and addresses passed. ``NodeTls.ray_environment`` returns the variables to give Ray.

Production set-up (KubeRay on Kubernetes): do not use this module. cert-manager issues the
certificates. A ``ClusterIssuer`` (or an ``Issuer`` of kind CA backed by an HSM or a cloud
private CA) signs a ``Certificate`` per Ray pod, with the pod IP and the head service DNS
name as subject alternative names, usages ``server auth`` and ``client auth``, and a short
duration with automatic renewal. The resulting Secret (``tls.crt``, ``tls.key``,
``ca.crt``) is mounted into every head and worker container, and the four ``RAY_*TLS*``
variables point at the mounted files (KubeRay 1.7 automates this behind its
``RayClusterMTLS`` feature gate). The CA private key never sits in a cluster Secret.

Security:
    The CA private key is written unencrypted (mode 0600) beside the certificates, so anyone
    who reads the state folder can mint a node certificate and join the cluster. That is
    acceptable on one development machine only. The per-call coordinator tokens
    (``actors.caller_auth``) still keep a process that joined the cluster from getting
    signature shares.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
DEFAULT_NODE_LIFETIME_DAYS = 30
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class NodeTls:
    """Paths of one node's TLS material.

    Attributes:
        ca_cert: PEM certificate of the CA every Ray process trusts.
        server_cert: PEM certificate of this node, signed by the CA.
        server_key: PEM (PKCS #8, unencrypted) private key of ``server_cert``.
    """

    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ray_environment(self) -> dict[str, str]:
        """Return the variables that switch Ray's gRPC channels to mutual TLS."""
        return {
            "RAY_USE_TLS": "1",
            "RAY_TLS_SERVER_CERT": str(self.server_cert),
            "RAY_TLS_SERVER_KEY": str(self.server_key),
            "RAY_TLS_CA_CERT": str(self.ca_cert),
        }


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_or_create_ca(
    folder: Path, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / "ca.pem", folder / "ca-key.pem"
    if cert_path.is_file() and key_path.is_file():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key: delete {folder} to start over")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ztmint Ray development CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    _write_private(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return certificate, key


def ensure_node_tls(
    state_dir: str | Path,
    node_name: str = "node",
    hostnames: Sequence[str] = (),
    addresses: Sequence[str] = (),
    lifetime_days: int = DEFAULT_NODE_LIFETIME_DAYS,
    now: datetime.datetime | None = None,
) -> NodeTls:
    """Create the CA if needed and a fresh certificate for one node; return their paths.

    Args:
        state_dir: the mesh state folder; files go to ``<state_dir>/tls/``.
        node_name: file name stem and common name of the node certificate.
        hostnames: DNS names of the node besides ``localhost``.
        addresses: IP addresses of the node besides ``127.0.0.1``.
        lifetime_days: validity of the node certificate.
        now: the issue time (defaults to the current UTC time).

    Raises:
        ValueError: an address does not parse, or the stored CA key is not an EC key.
    """
    issued_at = now or datetime.datetime.now(datetime.UTC)
    folder = Path(state_dir) / "tls"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_certificate, ca_key = _load_or_create_ca(folder, issued_at)

    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    names += [x509.DNSName(hostname) for hostname in hostnames]
    names += [
        x509.IPAddress(ipaddress.ip_address(address)) for address in ("127.0.0.1", *addresses)
    ]
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - _BACKDATE)
        .not_valid_after(issued_at + datetime.timedelta(days=lifetime_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = NodeTls(
        ca_cert=folder / "ca.pem",
        server_cert=folder / f"{node_name}.pem",
        server_key=folder / f"{node_name}-key.pem",
    )
    _write_private(paths.server_key, _key_pem(key))
    _write_private(paths.server_cert, certificate.public_bytes(serialization.Encoding.PEM))
    return paths
