"""Choose the mint's KMS backend from ``ZTMINT_KMS`` and open its receipt key ring.

All three backends produce the same receipt: an ES256 compact JWS (RFC 7515, RFC 7518
section 3.4) whose ``kid`` is the RFC 7638 thumbprint of the signing key. They differ only in
where the private key lives.

Variables:

- ``ZTMINT_KMS``: ``local`` (default), ``pkcs11`` or ``oci``.
- ``ZTMINT_RECEIPT_KEY_GRACE_SECONDS``: how long a retired receipt key stays in the JWKS;
  default and minimum 3600, the maximum token lifetime.
- local: the key is ``<ZTMINT_STATE_DIR>/kms-p256.pem``; ``ztmint kms rotate`` rotates it.
- pkcs11: ``ZTMINT_PKCS11_MODULE`` (default the SoftHSM2 library), ``ZTMINT_PKCS11_TOKEN_LABEL``,
  ``ZTMINT_PKCS11_KEY_LABEL`` (the active key pair), ``ZTMINT_PKCS11_PIN_FILE`` or
  ``ZTMINT_PKCS11_PIN`` (exactly one), and ``ZTMINT_PKCS11_RETIRED_KEY_LABELS``: retired key
  pairs as ``label=<retired_at unix seconds>``, comma-separated.
- oci: ``ZTMINT_OCI_KEY_ID``, ``ZTMINT_OCI_KEY_VERSION_ID`` (the active version),
  ``ZTMINT_OCI_CRYPTO_ENDPOINT``, ``ZTMINT_OCI_MANAGEMENT_ENDPOINT`` (to read public keys),
  ``ZTMINT_OCI_RETIRED_KEY_VERSION_IDS`` (``ocid=<retired_at>``, comma-separated), and the
  credentials ``ZTMINT_OCI_AUTH`` (``config``: an API key; ``instance``: instance principals;
  ``workload``: OKE workload identity of the pod), ``ZTMINT_OCI_CONFIG_FILE``
  (default ``~/.oci/config``) and ``ZTMINT_OCI_PROFILE`` (default ``DEFAULT``). The audit
  shipping (``mint.shipping``) uses the same credentials.

A variable of a backend that is not selected is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mint.kms import KmsError
from mint.rotation import (
    MIN_GRACE_SECONDS,
    ReceiptKeyRing,
    RetiredReceiptKey,
    local_key_ring,
    public_key_jwk,
)

KMS_BACKENDS = ("local", "pkcs11", "oci")
OCI_AUTH_METHODS = ("config", "instance", "workload")
DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_OCI_CONFIG_FILE = "~/.oci/config"

ErrorFactory = Callable[[str], Exception]


@dataclass(frozen=True)
class RetiredKeyName:
    """A retired key as named in the settings: a PKCS#11 label or an OCI key version OCID.

    Attributes:
        name: the label or OCID.
        retired_at: when it stopped signing, seconds since the epoch.
    """

    name: str
    retired_at: int


@dataclass(frozen=True)
class OciAuthSettings:
    """The OCI credentials to use: ``config`` (an API key), ``instance`` or ``workload``.

    Limitations:
        ``instance`` and ``workload`` work only on OCI: on a compute instance in a dynamic
        group, or in an OKE pod with workload identity. The tests use ``config`` with a mock.
    """

    method: str = "config"
    config_file: Path = Path(DEFAULT_OCI_CONFIG_FILE)
    profile: str = "DEFAULT"

    def open(self) -> Any:
        """Build the ``mint.kms_oci.OciAuth``; raises ``KmsError`` when it cannot."""
        from mint.kms_oci import OciAuth

        if self.method == "instance":
            return OciAuth.instance_principals()
        if self.method == "workload":
            return _workload_identity()
        return OciAuth.from_config_file(self.config_file.expanduser(), self.profile)


@dataclass(frozen=True)
class Pkcs11Settings:
    """Location of the PKCS#11 receipt key, and its PIN, which ``repr`` hides."""

    module: str
    token_label: str
    key_label: str
    pin: str | None = field(default=None, repr=False)
    pin_file: Path | None = None
    retired: tuple[RetiredKeyName, ...] = ()


@dataclass(frozen=True)
class OciKmsSettings:
    """The OCI Vault key version that signs receipts, with the Vault's endpoints."""

    key_id: str
    key_version_id: str
    crypto_endpoint: str
    management_endpoint: str | None
    auth: OciAuthSettings
    retired: tuple[RetiredKeyName, ...] = ()


@dataclass(frozen=True)
class KmsSettings:
    """The chosen KMS backend and its settings.

    Attributes:
        backend: ``local``, ``pkcs11`` or ``oci``.
        grace_seconds: how long a retired receipt key stays in the JWKS.
        pkcs11: the PKCS#11 settings when ``backend`` is ``pkcs11``.
        oci: the OCI KMS settings when ``backend`` is ``oci``.
    """

    backend: str = "local"
    grace_seconds: int = MIN_GRACE_SECONDS
    pkcs11: Pkcs11Settings | None = None
    oci: OciKmsSettings | None = None


def oci_auth_settings_from_env(env: Mapping[str, str], error: ErrorFactory) -> OciAuthSettings:
    """Read ``ZTMINT_OCI_AUTH``, ``ZTMINT_OCI_CONFIG_FILE`` and ``ZTMINT_OCI_PROFILE``."""
    method = env.get("ZTMINT_OCI_AUTH", "config")
    if method not in OCI_AUTH_METHODS:
        raise error(f"ZTMINT_OCI_AUTH is {method!r}; expected one of {', '.join(OCI_AUTH_METHODS)}")
    return OciAuthSettings(
        method=method,
        config_file=Path(env.get("ZTMINT_OCI_CONFIG_FILE", DEFAULT_OCI_CONFIG_FILE)),
        profile=env.get("ZTMINT_OCI_PROFILE", "DEFAULT"),
    )


def kms_settings_from_env(env: Mapping[str, str], error: ErrorFactory) -> KmsSettings:
    """Build ``KmsSettings`` from ``ZTMINT_KMS`` and the variables of the chosen backend.

    Args:
        env: the environment.
        error: builds the exception to raise, ``mint.settings.SettingsError``.

    Raises:
        Exception: built by ``error``, naming the variable that is missing or invalid.
    """
    backend = env.get("ZTMINT_KMS", "local")
    if backend not in KMS_BACKENDS:
        raise error(f"ZTMINT_KMS is {backend!r}; expected one of {', '.join(KMS_BACKENDS)}")
    grace = _parse_int(env, "ZTMINT_RECEIPT_KEY_GRACE_SECONDS", MIN_GRACE_SECONDS, error)
    if grace < MIN_GRACE_SECONDS:
        raise error(
            f"ZTMINT_RECEIPT_KEY_GRACE_SECONDS is {grace}; expected at least {MIN_GRACE_SECONDS}, "
            "the maximum token lifetime, so that no valid token loses its receipt key"
        )
    if backend == "pkcs11":
        return KmsSettings(backend, grace, pkcs11=_pkcs11_settings(env, error))
    if backend == "oci":
        return KmsSettings(backend, grace, oci=_oci_settings(env, error))
    return KmsSettings(backend, grace)


def open_receipt_key_ring(
    settings: KmsSettings, state_dir: Path, clock: Callable[[], float]
) -> ReceiptKeyRing:
    """Open the receipt key ring of the chosen backend.

    Raises:
        KmsError: when the key cannot be loaded: a missing token or key, a wrong PIN, an
            unreachable Vault or an invalid retired key list. The subclass names the cause.
    """
    if settings.backend == "pkcs11" and settings.pkcs11 is not None:
        return _pkcs11_ring(settings.pkcs11, settings.grace_seconds, clock)
    if settings.backend == "oci" and settings.oci is not None:
        return _oci_ring(settings.oci, settings.grace_seconds, clock)
    return local_key_ring(state_dir, clock, settings.grace_seconds)


def _workload_identity() -> Any:
    """Authenticate as the OKE pod's service account (OKE workload identity)."""
    import oci

    from mint.kms_oci import OciAuth

    try:
        signer = oci.auth.signers.get_oke_workload_identity_resource_principal_signer()
    except Exception as error:  # noqa: BLE001 - the SDK raises many types here
        raise KmsError(
            f"OKE workload identity authentication failed: {error}; run in an OKE pod with "
            "workload identity, or set ZTMINT_OCI_AUTH to config or instance"
        ) from error
    return OciAuth(config={"region": signer.region}, signer=signer)


def _pkcs11_settings(env: Mapping[str, str], error: ErrorFactory) -> Pkcs11Settings:
    pin = env.get("ZTMINT_PKCS11_PIN") or None
    pin_file = env.get("ZTMINT_PKCS11_PIN_FILE") or None
    if (pin is None) == (pin_file is None):
        raise error(
            "ZTMINT_KMS=pkcs11 needs exactly one of ZTMINT_PKCS11_PIN_FILE (preferred) and "
            "ZTMINT_PKCS11_PIN; set one and unset the other"
        )
    return Pkcs11Settings(
        module=env.get("ZTMINT_PKCS11_MODULE", DEFAULT_PKCS11_MODULE),
        token_label=_required(env, "ZTMINT_PKCS11_TOKEN_LABEL", "pkcs11", error),
        key_label=_required(env, "ZTMINT_PKCS11_KEY_LABEL", "pkcs11", error),
        pin=pin,
        pin_file=Path(pin_file) if pin_file else None,
        retired=_parse_retired(env, "ZTMINT_PKCS11_RETIRED_KEY_LABELS", error),
    )


def _oci_settings(env: Mapping[str, str], error: ErrorFactory) -> OciKmsSettings:
    settings = OciKmsSettings(
        key_id=_required(env, "ZTMINT_OCI_KEY_ID", "oci", error),
        key_version_id=_required(env, "ZTMINT_OCI_KEY_VERSION_ID", "oci", error),
        crypto_endpoint=_required(env, "ZTMINT_OCI_CRYPTO_ENDPOINT", "oci", error),
        management_endpoint=env.get("ZTMINT_OCI_MANAGEMENT_ENDPOINT") or None,
        auth=oci_auth_settings_from_env(env, error),
        retired=_parse_retired(env, "ZTMINT_OCI_RETIRED_KEY_VERSION_IDS", error),
    )
    if settings.management_endpoint is None:
        raise error(
            "ZTMINT_KMS=oci needs ZTMINT_OCI_MANAGEMENT_ENDPOINT to read the public keys of the "
            "key versions; set it to the vault's management endpoint URL"
        )
    return settings


def _required(env: Mapping[str, str], name: str, backend: str, error: ErrorFactory) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise error(f"ZTMINT_KMS={backend} needs {name}; set it")
    return value


def _parse_int(env: Mapping[str, str], name: str, default: int, error: ErrorFactory) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise error(f"{name} is {text!r}; expected an integer number of seconds") from None


def _parse_retired(
    env: Mapping[str, str], name: str, error: ErrorFactory
) -> tuple[RetiredKeyName, ...]:
    entries = []
    for part in env.get(name, "").split(","):
        part = part.strip()
        if not part:
            continue
        key_name, separator, retired_at = part.rpartition("=")
        if not separator or not key_name or not retired_at.isdigit():
            raise error(
                f"{name} entry {part!r} is invalid; expected <name>=<retired_at unix seconds>"
            )
        entries.append(RetiredKeyName(key_name, int(retired_at)))
    return tuple(entries)


def _pkcs11_ring(
    settings: Pkcs11Settings, grace_seconds: int, clock: Callable[[], float]
) -> ReceiptKeyRing:
    from mint.kms_pkcs11 import Pkcs11Kms, read_pin

    pin = read_pin(pin_file=settings.pin_file) if settings.pin_file else settings.pin or ""
    active = Pkcs11Kms(settings.module, settings.token_label, settings.key_label, pin)
    try:
        retired = [
            _retired_key(_pkcs11_public_jwk(settings, entry.name), entry.retired_at)
            for entry in settings.retired
        ]
    except KmsError:
        active.close()
        raise
    return ReceiptKeyRing(active, retired, grace_seconds, clock)


def _pkcs11_public_jwk(settings: Pkcs11Settings, key_label: str) -> dict[str, str]:
    """Read the public key object labelled ``key_label`` in a session without login."""
    import pkcs11
    from asn1crypto.core import OctetString
    from cryptography.hazmat.primitives.asymmetric import ec
    from pkcs11 import Attribute, KeyType, ObjectClass

    from mint.kms_pkcs11 import P256_EC_PARAMS, Pkcs11KeyNotFound

    try:
        token = pkcs11.lib(settings.module).get_token(token_label=settings.token_label)
        with token.open() as session:
            public_key = session.get_key(
                object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label=key_label
            )
            ec_params = bytes(public_key[Attribute.EC_PARAMS])
            value = bytes(public_key[Attribute.EC_POINT])
    except (pkcs11.PKCS11Error, RuntimeError) as error:
        raise Pkcs11KeyNotFound(
            f"retired receipt key {key_label!r} has no single EC public key object on token "
            f"{settings.token_label!r}: {type(error).__name__}; keep the public key on the "
            "token or remove the label from ZTMINT_PKCS11_RETIRED_KEY_LABELS"
        ) from error
    if ec_params != P256_EC_PARAMS:
        raise Pkcs11KeyNotFound(f"retired receipt key {key_label!r} is not on P-256")
    try:
        # PKCS#11 2.40 wraps the point in a DER OCTET STRING; some modules return it bare.
        point = value if len(value) == 65 else bytes(OctetString.load(value).native)
        loaded = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as error:
        raise Pkcs11KeyNotFound(
            f"CKA_EC_POINT of retired receipt key {key_label!r} is not a P-256 point"
        ) from error
    return public_key_jwk(loaded)


def _oci_ring(
    settings: OciKmsSettings, grace_seconds: int, clock: Callable[[], float]
) -> ReceiptKeyRing:
    import oci
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from mint.kms_oci import DEFAULT_TIMEOUT_SECONDS, OciKms, fetch_public_key_pem

    auth = settings.auth.open()
    active = OciKms.connect(
        auth,
        settings.crypto_endpoint,
        settings.key_id,
        settings.key_version_id,
        management_endpoint=settings.management_endpoint,
    )
    management = oci.key_management.KmsManagementClient(
        auth.config,
        service_endpoint=settings.management_endpoint,
        **auth.client_kwargs(DEFAULT_TIMEOUT_SECONDS),
    )
    retired = []
    for entry in settings.retired:
        pem = fetch_public_key_pem(management, settings.key_id, entry.name)
        public_key = serialization.load_pem_public_key(pem)
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise KmsError(f"retired key version {entry.name} is not a P-256 key")
        retired.append(_retired_key(public_key_jwk(public_key), entry.retired_at))
    return ReceiptKeyRing(active, retired, grace_seconds, clock)


def _retired_key(jwk: dict[str, str], retired_at: int) -> RetiredReceiptKey:
    from authz.jwk import thumbprint

    return RetiredReceiptKey(kid=thumbprint(jwk), jwk=jwk, retired_at=retired_at)
