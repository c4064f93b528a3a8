"""Receipts signed by an EC P-256 key in a PKCS#11 token (an HSM, or SoftHSM2 for development).

``Pkcs11Kms`` implements ``mint.kms.ReceiptSigner`` with python-pkcs11. It hashes the receipt's
JWS signing input with SHA-256 in Python and signs the digest with ``CKM_ECDSA``, whose output
PKCS#11 defines as ``r || s`` with each half as long as the curve order (32 bytes for P-256).
That is already the ES256 form of RFC 7518 section 3.4, so no DER conversion is needed. The
public key is read from the token's public key object with the same label: ``CKA_EC_POINT``
contains the uncompressed point ``04 || X || Y`` inside a DER OCTET STRING.

Security:
    The PIN comes from an environment variable or a file and is never logged or kept in the
    object's ``repr``. Each signature is checked against the published public key before it
    is returned, so a public key object that does not match the private key, or a device
    fault, raises ``KmsError`` instead of producing receipts nobody can verify.

Limitations:
    One ``Pkcs11Kms`` per token per process. PKCS#11 login state belongs to the whole
    application, so a second instance on a token that this process is already logged in to
    fails with ``Pkcs11LoginFailed`` (``CKR_USER_ALREADY_LOGGED_IN``). Signing calls are
    serialised by a lock on one session, which caps throughput at one signature at a time.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from authz.jwk import ec_p256_jwk, thumbprint
from mint.kms import P256_SCALAR_SIZE, KmsError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
# DER of the named-curve OID 1.2.840.10045.3.1.7 (prime256v1), the CKA_EC_PARAMS of P-256.
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")
_UNCOMPRESSED_POINT_SIZE = 1 + 2 * P256_SCALAR_SIZE


class Pkcs11LoginFailed(KmsError):
    """The token cannot be found, or the PIN is wrong, locked or missing."""


class Pkcs11KeyNotFound(KmsError):
    """The token has no usable P-256 key pair with the configured label."""


class Pkcs11SignFailed(KmsError):
    """The token failed to sign, or returned a signature that does not verify."""


def read_pin(env_var: str | None = None, pin_file: Path | None = None) -> str:
    """Read the user PIN from an environment variable or a file; exactly one must be given.

    Raises:
        Pkcs11LoginFailed: when neither or both sources are given, or the source is empty.
    """
    if (env_var is None) == (pin_file is None):
        raise Pkcs11LoginFailed("pass exactly one PIN source: an environment variable or a file")
    if env_var is not None:
        pin = os.environ.get(env_var, "")
        source = f"environment variable {env_var}"
    else:
        assert pin_file is not None
        try:
            pin = pin_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise Pkcs11LoginFailed(f"cannot read PIN file {pin_file}: {error.strerror}") from error
        source = f"file {pin_file}"
    if not pin:
        raise Pkcs11LoginFailed(f"PIN from {source} is empty; set it to the token's user PIN")
    return pin


class Pkcs11Kms:
    """An EC P-256 receipt key in a PKCS#11 token, found by token label and key label.

    The constructor opens a logged-in session and keeps it; ``close`` logs out. Use it as a
    context manager in tests and short-lived tools.

    Args:
        module: path of the PKCS#11 library (``libsofthsm2.so`` for SoftHSM2).
        token_label: ``CKA_LABEL`` of the token.
        key_label: ``CKA_LABEL`` of both the private and the public key object.
        pin: the user PIN, from ``read_pin``.

    Raises:
        Pkcs11LoginFailed: when the library cannot be loaded, the token is missing, or the
            login fails.
        Pkcs11KeyNotFound: when the key pair is missing, ambiguous or not P-256.
    """

    def __init__(self, module: str, token_label: str, key_label: str, pin: str) -> None:
        self._token_label = token_label
        self._key_label = key_label
        self._lock = threading.Lock()
        try:
            library = pkcs11.lib(module)
            token = library.get_token(token_label=token_label)
        except (RuntimeError, OSError) as error:
            raise Pkcs11LoginFailed(
                f"PKCS#11 token {token_label!r} not available through {module}: "
                f"{type(error).__name__}; check the module path and token label"
            ) from error
        try:
            self._session: Any = token.open(user_pin=pin)
        except pkcs11.PKCS11Error as error:
            raise Pkcs11LoginFailed(
                f"login to PKCS#11 token {token_label!r} failed: {type(error).__name__}; "
                "check the PIN, and that no other Pkcs11Kms in this process uses the token"
            ) from error
        try:
            self._private_key, public_point = self._find_key_pair()
        except KmsError:
            self._session.close()
            raise
        self._public_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), public_point
        )
        self._jwk = ec_p256_jwk(public_point[1:33], public_point[33:])
        self._kid = thumbprint(self._jwk)

    def __repr__(self) -> str:
        return (
            f"Pkcs11Kms(token={self._token_label!r}, key={self._key_label!r}, "
            f"kid={self._kid!r}, <redacted>)"
        )

    def __enter__(self) -> Pkcs11Kms:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the key's public JWK."""
        return self._kid

    def public_jwk(self) -> dict[str, str]:
        """Return the public key as an EC P-256 JWK."""
        return dict(self._jwk)

    def close(self) -> None:
        """Close the session, which logs this process out of the token."""
        with self._lock:
            self._session.close()

    def sign(self, signing_input: bytes) -> bytes:
        """Sign ``signing_input`` with ECDSA P-256 SHA-256 on the token; return raw ``r || s``.

        Raises:
            Pkcs11SignFailed: when the token fails, or its signature is not 64 bytes or does
                not verify under the public key read from the token.
        """
        digest = hashlib.sha256(signing_input).digest()
        try:
            with self._lock:
                signature = self._private_key.sign(digest, mechanism=Mechanism.ECDSA)
        except pkcs11.PKCS11Error as error:
            raise Pkcs11SignFailed(
                f"PKCS#11 token {self._token_label!r} failed to sign with key "
                f"{self._key_label!r}: {type(error).__name__}; no receipt issued"
            ) from error

        if len(signature) != 2 * P256_SCALAR_SIZE:
            raise Pkcs11SignFailed(
                f"CKM_ECDSA returned {len(signature)} bytes, expected 64 (r || s)"
            )
        r = int.from_bytes(signature[:P256_SCALAR_SIZE], "big")
        s = int.from_bytes(signature[P256_SCALAR_SIZE:], "big")
        try:
            self._public_key.verify(
                encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256()))
            )
        except InvalidSignature as error:
            raise Pkcs11SignFailed(
                f"signature from key {self._key_label!r} does not verify under the token's "
                "public key object with that label; regenerate the key pair"
            ) from error
        return signature

    def _find_key_pair(self) -> tuple[Any, bytes]:
        try:
            private_key = self._session.get_key(
                object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=self._key_label
            )
            public_key = self._session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=self._key_label
            )
            ec_params = bytes(public_key[Attribute.EC_PARAMS])
            ec_point = bytes(public_key[Attribute.EC_POINT])
        except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned) as error:
            raise Pkcs11KeyNotFound(
                f"token {self._token_label!r} needs exactly one EC private key and one EC "
                f"public key labelled {self._key_label!r}: {type(error).__name__}; "
                "run scripts/softhsm-init.sh or generate the pair on the HSM"
            ) from error
        except pkcs11.PKCS11Error as error:
            raise Pkcs11KeyNotFound(
                f"reading key {self._key_label!r} failed: {type(error).__name__}"
            ) from error
        if ec_params != P256_EC_PARAMS:
            raise Pkcs11KeyNotFound(
                f"key {self._key_label!r} is not on P-256 (CKA_EC_PARAMS {ec_params.hex()})"
            )
        return private_key, _decode_ec_point(ec_point, self._key_label)


def _decode_ec_point(value: bytes, key_label: str) -> bytes:
    # PKCS#11 2.40 wraps the point in a DER OCTET STRING; a few older modules return it bare.
    point = value
    if len(value) != _UNCOMPRESSED_POINT_SIZE:
        try:
            point = bytes(OctetString.load(value).native)
        except ValueError as error:
            raise Pkcs11KeyNotFound(
                f"CKA_EC_POINT of key {key_label!r} is not a DER OCTET STRING"
            ) from error
    if len(point) != _UNCOMPRESSED_POINT_SIZE or point[0] != 0x04:
        raise Pkcs11KeyNotFound(
            f"CKA_EC_POINT of key {key_label!r} is not an uncompressed P-256 point"
        )
    return point
