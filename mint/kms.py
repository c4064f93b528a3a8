"""The KMS co-signature: receipts over the SHA-256 of each token.

``ReceiptSigner`` is the interface to a key management service. ``LocalKms`` is the embedded
stand-in: a P-256 key in a 0600 PEM file in the state folder. Receipts are ES256 compact JWS
(RFC 7515) whose signature is the raw ``r || s`` pair required by RFC 7518 section 3.4, not
the DER encoding that ``cryptography`` produces.

Security:
    ``LocalKms`` keeps its private key in a plain file on the mint's disk, so anyone who can read
    the state folder can forge receipts. A production deployment uses a KMS or HSM, where
    the key never leaves the device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from authz.formats import assemble_compact, receipt_signing_input
from authz.jwk import PublishedKey, ec_p256_jwk, thumbprint

P256_SCALAR_SIZE = 32


class KmsError(Exception):
    """The KMS key cannot be loaded or used."""


class ReceiptSigner(Protocol):
    """A key management service holding one receipt key version."""

    @property
    def kid(self) -> str:
        """Return the key id of the current key version (its RFC 7638 thumbprint)."""
        ...

    def public_jwk(self) -> dict[str, str]:
        """Return the public key as an EC P-256 JWK."""
        ...

    def sign(self, signing_input: bytes) -> bytes:
        """Sign with ECDSA P-256 SHA-256 and return the 64-byte raw ``r || s``."""
        ...


def der_to_raw_signature(der: bytes) -> bytes:
    """Convert a DER ECDSA-Sig-Value to the fixed-size ``r || s`` of RFC 7518 section 3.4."""
    r, s = decode_dss_signature(der)
    return r.to_bytes(P256_SCALAR_SIZE, "big") + s.to_bytes(P256_SCALAR_SIZE, "big")


class LocalKms:
    """A P-256 receipt key stored in a PEM file (PKCS#8, mode 0600), created on first use.

    Args:
        key_path: the PEM file; created with a new key when absent.
    """

    def __init__(self, key_path: Path) -> None:
        self._private_key = _load_or_create(key_path)
        numbers = self._private_key.public_key().public_numbers()
        self._jwk = ec_p256_jwk(
            numbers.x.to_bytes(P256_SCALAR_SIZE, "big"),
            numbers.y.to_bytes(P256_SCALAR_SIZE, "big"),
        )
        self._kid = thumbprint(self._jwk)

    def __repr__(self) -> str:
        return f"LocalKms(kid={self._kid!r}, <redacted>)"

    @property
    def kid(self) -> str:
        """Return the RFC 7638 thumbprint of the receipt key."""
        return self._kid

    def public_jwk(self) -> dict[str, str]:
        """Return the public key as an EC P-256 JWK."""
        return dict(self._jwk)

    def sign(self, signing_input: bytes) -> bytes:
        """Sign with ECDSA P-256 SHA-256 and return the 64-byte raw ``r || s``."""
        der = self._private_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        return der_to_raw_signature(der)


def published_key(signer: ReceiptSigner) -> PublishedKey:
    """Describe the receipt key for the JWKS document."""
    return PublishedKey(kid=signer.kid, jwk=signer.public_jwk())


def issue_receipt(signer: ReceiptSigner, token: str, iss: str, iat: int, token_jti: str) -> str:
    """Sign a receipt binding the whole ``token`` and return it as a compact JWS.

    Raises:
        KmsError: when the signer returns a signature that is not 64 bytes.
    """
    signing_input = receipt_signing_input(token, signer.kid, iss, iat, token_jti)
    signature = signer.sign(signing_input)
    if len(signature) != 2 * P256_SCALAR_SIZE:
        raise KmsError(f"receipt signature is {len(signature)} bytes; expected raw r || s of 64")
    return assemble_compact(signing_input, signature)


def _load_or_create(key_path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        pem = key_path.read_bytes()
    except FileNotFoundError:
        return _create(key_path)
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KmsError(f"{key_path} does not contain a P-256 private key; move it away to rotate")
    return key


def _create(key_path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temporary file, then link it into place: the link is atomic and fails
    # when the key exists, so a concurrent process never reads a half-written key.
    temporary = key_path.with_name(f"{key_path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, key_path)
    except FileExistsError:
        return _load_or_create(key_path)
    finally:
        temporary.unlink()
    return key
