"""Receipts signed by an OCI Vault key (OCI KMS), through the official ``oci`` SDK.

``OciKms`` implements ``mint.kms.ReceiptSigner``: it hashes the receipt's JWS signing input
with SHA-256 locally and sends only the digest to the Vault crypto endpoint
(``POST /20180608/sign`` with ``messageType=DIGEST`` and ``signingAlgorithm=ECDSA_SHA_256``).
OCI returns an ASN.1 DER ``ECDSA-Sig-Value`` in base64, which is converted to the raw
``r || s`` that ES256 requires (RFC 7518 section 3.4).

``OciAuth`` makes the choice of credentials explicit: an API key from an OCI config file, or
instance principals on an OCI compute instance. ``mint.oci_sinks`` uses the same class.

Security:
    The call fails closed. A service error, a time-out, a connection failure, a response for
    another key version or algorithm, a signature that is not valid DER, or a signature that
    does not verify under the published public key all raise ``KmsError``, so no receipt is
    ever built from a failed or unexpected call. The SDK's retries and circuit breaker are
    turned off: the caller decides whether to retry a mint.

Limitations:
    Instance principals authentication is only exercised on OCI; the tests use API keys
    against a local mock. The key version is fixed at construction, so rotating the Vault key
    means restarting the mint with the new ``key_version_id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oci
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from authz.jwk import ec_p256_jwk, thumbprint
from mint.kms import P256_SCALAR_SIZE, KmsError, der_to_raw_signature

SIGNING_ALGORITHM = "ECDSA_SHA_256"
DEFAULT_TIMEOUT_SECONDS = (3.0, 10.0)


class OciKmsUnavailable(KmsError):
    """The OCI KMS call failed: service error, throttling, time-out or connection failure."""


class OciKmsResponseInvalid(KmsError):
    """The OCI KMS responded, but the response cannot be trusted as a receipt signature."""


# The exceptions a failed SDK call raises: errors returned by the service, and transport
# failures, which the SDK wraps in its own RequestException and ConnectTimeout.
_CALL_ERRORS: tuple[type[Exception], ...] = (
    oci.exceptions.ServiceError,
    oci.exceptions.ClientError,
    oci.exceptions.RequestException,
    oci.exceptions.ConnectTimeout,
)
# The exceptions the SDK's deserialiser raises on a body that is not the documented JSON.
_RESPONSE_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, AttributeError)


@dataclass(frozen=True)
class OciAuth:
    """The SDK's request authentication: an API key from a config file or instance principals.

    Build it with ``from_config_file`` or ``instance_principals``; there is no default, so a
    deployment always states which credentials it uses.
    """

    config: dict[str, Any]
    signer: Any | None = None

    @staticmethod
    def from_config_file(path: Path, profile: str = "DEFAULT") -> OciAuth:
        """Load an API key profile (user, tenancy, fingerprint, key_file, region).

        Raises:
            KmsError: when the file or profile is missing or invalid.
        """
        try:
            config = oci.config.from_file(str(path), profile)
            oci.config.validate_config(config)
        except oci.exceptions.ClientError as error:
            raise KmsError(
                f"OCI config {path} profile {profile!r} is invalid: {error}; "
                "fix the file or pass another profile"
            ) from error
        return OciAuth(config=config)

    @staticmethod
    def instance_principals() -> OciAuth:
        """Authenticate as the compute instance, through its instance metadata service.

        Raises:
            KmsError: when the instance principal certificate cannot be fetched, which is
                the case anywhere but on an OCI instance in a dynamic group.
        """
        try:
            signer = oci.auth.signers.InstancePrincipalsSecurityTokenSigner()
        except Exception as error:  # noqa: BLE001 - the SDK raises many types here
            raise KmsError(
                f"instance principals authentication failed: {error}; run on an OCI "
                "instance that is in a dynamic group, or use a config file"
            ) from error
        return OciAuth(config={"region": signer.region}, signer=signer)

    def client_kwargs(self, timeout: tuple[float, float]) -> dict[str, Any]:
        """Return the keyword arguments shared by every SDK client that ztmint builds."""
        kwargs: dict[str, Any] = {
            "timeout": timeout,
            "retry_strategy": oci.retry.NoneRetryStrategy(),
            "circuit_breaker_strategy": oci.circuit_breaker.NoCircuitBreakerStrategy(),
        }
        if self.signer is not None:
            kwargs["signer"] = self.signer
        return kwargs


class OciKms:
    """A receipt key held in an OCI Vault, used for ECDSA P-256 SHA-256 signatures.

    Args:
        crypto_client: an ``oci.key_management.KmsCryptoClient`` for the vault's crypto
            endpoint.
        key_id: the OCID of the Vault key.
        key_version_id: the OCID of the key version that signs.
        public_key: the key version's public key, from ``fetch_public_key`` or configuration.

    Raises:
        KmsError: when ``public_key`` is not a P-256 key.
    """

    def __init__(
        self,
        crypto_client: Any,
        key_id: str,
        key_version_id: str,
        public_key: ec.EllipticCurvePublicKey,
    ) -> None:
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise KmsError(f"key version {key_version_id} is not a P-256 key; use ECDSA P-256")
        self._client = crypto_client
        self._key_id = key_id
        self._key_version_id = key_version_id
        self._public_key = public_key
        numbers = public_key.public_numbers()
        self._jwk = ec_p256_jwk(
            numbers.x.to_bytes(P256_SCALAR_SIZE, "big"),
            numbers.y.to_bytes(P256_SCALAR_SIZE, "big"),
        )
        self._kid = thumbprint(self._jwk)

    @staticmethod
    def connect(
        auth: OciAuth,
        crypto_endpoint: str,
        key_id: str,
        key_version_id: str,
        management_endpoint: str | None = None,
        public_key_pem: bytes | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    ) -> OciKms:
        """Build the SDK clients and the signer, reading the public key from the Vault.

        Args:
            auth: the credentials.
            crypto_endpoint: the vault's crypto endpoint URL.
            key_id: the OCID of the Vault key.
            key_version_id: the OCID of the signing key version.
            management_endpoint: the vault's management endpoint URL; required when
                ``public_key_pem`` is not given.
            public_key_pem: the key version's public key, to skip the management call.
            timeout: connect and read time-outs in seconds.

        Raises:
            KmsError: when the public key cannot be obtained or is not P-256.
        """
        kwargs = auth.client_kwargs(timeout)
        crypto_client = oci.key_management.KmsCryptoClient(
            auth.config, service_endpoint=crypto_endpoint, **kwargs
        )
        if public_key_pem is None:
            if management_endpoint is None:
                raise KmsError("no public key configured; pass management_endpoint or the PEM")
            management = oci.key_management.KmsManagementClient(
                auth.config, service_endpoint=management_endpoint, **kwargs
            )
            public_key_pem = fetch_public_key_pem(management, key_id, key_version_id)
        try:
            public_key = serialization.load_pem_public_key(public_key_pem)
        except ValueError as error:
            raise KmsError(f"public key of {key_version_id} is not valid PEM: {error}") from error
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise KmsError(f"key version {key_version_id} is not an EC key; use ECDSA P-256")
        return OciKms(crypto_client, key_id, key_version_id, public_key)

    def __repr__(self) -> str:
        return f"OciKms(key_version_id={self._key_version_id!r}, kid={self._kid!r})"

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the key version's public key."""
        return self._kid

    def public_jwk(self) -> dict[str, str]:
        """Return the public key as an EC P-256 JWK."""
        return dict(self._jwk)

    def sign(self, signing_input: bytes) -> bytes:
        """Sign ``signing_input`` with ECDSA P-256 SHA-256 in the Vault; return raw ``r || s``.

        Raises:
            OciKmsUnavailable: when the call fails or times out.
            OciKmsResponseInvalid: when the response is malformed, names another key version or
                algorithm, or does not verify under the public key.
        """
        digest = hashlib.sha256(signing_input).digest()
        details = oci.key_management.models.SignDataDetails(
            message=base64.b64encode(digest).decode("ascii"),
            message_type="DIGEST",
            signing_algorithm=SIGNING_ALGORITHM,
            key_id=self._key_id,
            key_version_id=self._key_version_id,
        )
        try:
            response = self._client.sign(details)
        except _CALL_ERRORS as error:
            message = _describe_call_error("sign", self._key_version_id, error)
            raise OciKmsUnavailable(message) from error
        except _RESPONSE_ERRORS as error:
            raise OciKmsResponseInvalid(
                f"OCI KMS sign response for {self._key_version_id} is malformed: "
                f"{type(error).__name__}; no receipt issued"
            ) from error

        der = self._check_response(response.data)
        try:
            self._public_key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            return der_to_raw_signature(der)
        except (InvalidSignature, ValueError) as error:
            raise OciKmsResponseInvalid(
                f"signature from key version {self._key_version_id} does not verify under its "
                "published public key; check key_version_id and the configured public key"
            ) from error

    def _check_response(self, data: Any) -> bytes:
        if not isinstance(data, oci.key_management.models.SignedData):
            raise OciKmsResponseInvalid(
                f"sign response is {type(data).__name__}, expected SignedData; no receipt issued"
            )
        if (data.key_id, data.key_version_id) != (self._key_id, self._key_version_id):
            raise OciKmsResponseInvalid(
                f"sign response names key version {data.key_version_id!r}, expected "
                f"{self._key_version_id!r}; no receipt issued"
            )
        if data.signing_algorithm != SIGNING_ALGORITHM:
            raise OciKmsResponseInvalid(
                f"sign response uses {data.signing_algorithm!r}, expected {SIGNING_ALGORITHM}"
            )
        try:
            return base64.b64decode(data.signature or "", validate=True)
        except (binascii.Error, ValueError) as error:
            raise OciKmsResponseInvalid("sign response's signature is not valid base64") from error


def fetch_public_key_pem(management_client: Any, key_id: str, key_version_id: str) -> bytes:
    """Read a key version's public key (PEM) with ``KmsManagementClient.get_key_version``.

    Raises:
        OciKmsUnavailable: when the call fails.
        OciKmsResponseInvalid: when the response has no public key.
    """
    try:
        version = management_client.get_key_version(key_id, key_version_id).data
    except _CALL_ERRORS as error:
        message = _describe_call_error("get_key_version", key_version_id, error)
        raise OciKmsUnavailable(message) from error
    except _RESPONSE_ERRORS as error:
        raise OciKmsResponseInvalid(
            f"get_key_version response for {key_version_id} is malformed: {type(error).__name__}"
        ) from error
    public_key = getattr(version, "public_key", None)
    if not isinstance(public_key, str) or not public_key:
        raise OciKmsResponseInvalid(
            f"key version {key_version_id} has no public key; use an asymmetric ECDSA key"
        )
    return public_key.encode("ascii")


def _describe_call_error(operation: str, key_version_id: str, error: Exception) -> str:
    if isinstance(error, oci.exceptions.ServiceError):
        return (
            f"OCI KMS {operation} for {key_version_id} failed with HTTP {error.status} "
            f"{error.code} (opc-request-id {error.request_id}); no receipt issued, retry later"
        )
    return (
        f"OCI KMS {operation} for {key_version_id} failed: {type(error).__name__}: {error}; "
        "no receipt issued, check the endpoint and network and retry later"
    )
