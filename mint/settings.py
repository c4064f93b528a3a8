"""Settings of the mint service, read once from ``ZTMINT_*`` environment variables.

Variables (all optional):

- ``ZTMINT_PORT``: TCP port the service listens on; default 8080.
- ``ZTMINT_RP_ID``: WebAuthn relying party id; default ``localhost``.
- ``ZTMINT_ORIGIN``: the one origin accepted in client data; default
  ``http://localhost:<port>``.
- ``ZTMINT_ISSUER``: the ``iss`` claim of tokens and receipts; default the origin.
- ``ZTMINT_STATE_DIR``: folder for the database, the local KMS key and the audit log;
  default ``./.ztmint``.
- ``ZTMINT_ALLOW_SELF_ATTESTATION``: ``true`` or ``false``; accept packed self-attestation
  (software authenticators). Default ``true``, which suits development only.
- ``ZTMINT_USER_VERIFICATION``: ``preferred`` or ``required``; default ``preferred``.
- ``ZTMINT_ATTESTATION_ROOTS``: path of a PEM file of trusted WebAuthn attestation root
  certificates (for example Yubico's FIDO root); default none.
- ``ZTMINT_DATABASE_URL``: ``postgresql://user:password@host:port/dbname`` selects the
  PostgreSQL store, shared by several replicas; default unset, the SQLite file.
- ``ZTMINT_AUDIT_ORIGIN``: origin line of the audit log's signed checkpoints; default the
  issuer's host and path followed by ``/audit``. Replicas with separate logs need distinct
  origins.
- ``ZTMINT_ENROLLMENT``: ``invitation`` (default) or ``open``. With ``invitation``, enrolling
  needs an invitation from ``ztmint users invite``. With ``open``, anyone may enroll a user name
  that has no credential yet. Open enrollment is for development only, and the mint logs a
  WARNING at start when it is set.
- ``ZTMINT_MAX_BODY_BYTES``: the largest request body accepted, in bytes; default 65536.
- ``ZTMINT_CLIENT_RATE_BURST`` and ``ZTMINT_CLIENT_RATE_PER_MINUTE``: the token bucket of each
  client address in front of every POST route; default 120 and 600. A rate of 0 turns it off.
- ``ZTMINT_REJECTION_AUDIT_PER_MINUTE``: rejections of one kind from one client address that
  get their own audit record each minute before the rest are counted in one summary record;
  default 10.
- ``ZTMINT_RATE_BURST``, ``ZTMINT_RATE_PER_MINUTE``, ``ZTMINT_OPA_URL``,
  ``ZTMINT_OPA_TIMEOUT_SECONDS``, ``ZTMINT_BREAKER_*`` and ``ZTMINT_GLOBAL_*``: rate limits,
  the mint policy server and the circuit breakers; see ``mint.limits.guard_settings_from_env``.
  Without ``ZTMINT_OPA_URL`` no mint policy is applied and the mint logs a warning.
- ``ZTMINT_GUARDIANS`` (comma-separated user ids) and ``ZTMINT_GUARDIAN_THRESHOLD`` (t_g,
  default 2): the break-glass guardians; unset turns break-glass off (``mint.breakglass``).
- ``ZTMINT_KMS`` and ``ZTMINT_PKCS11_*`` / ``ZTMINT_OCI_*``: the receipt key backend and its
  rotation; see ``mint.kms_select``. ``ZTMINT_AUDIT_BUCKET``, ``ZTMINT_OCI_LOG_ID`` and the
  other shipping variables: copies of the audit log in OCI; see ``mint.shipping``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from mint.breakglass import BreakGlassSettings, breakglass_settings_from_env
from mint.http_guard import DEFAULT_MAX_BODY_BYTES
from mint.invitations import EnrollmentMode
from mint.kms_select import KmsSettings, kms_settings_from_env
from mint.limits import GuardSettings, RateLimit, guard_settings_from_env
from mint.shipping import ShippingSettings, shipping_settings_from_env

DEFAULT_PORT = 8080
USER_VERIFICATION_VALUES = ("preferred", "required")


class SettingsError(ValueError):
    """An environment variable has a value the mint cannot use."""


@dataclass(frozen=True)
class Settings:
    """Configuration of one mint service instance.

    Attributes:
        rp_id: WebAuthn relying party id, compared exactly against the rpIdHash.
        origin: the one origin accepted in ``clientDataJSON``, compared exactly.
        issuer: ``iss`` of every token and receipt.
        state_dir: folder holding ``mint.sqlite3``, ``kms-p256.pem`` and ``audit.jsonl``.
        allow_self_attestation: accept packed self-attestation; development only.
        user_verification: ``preferred`` or ``required``.
        attestation_roots: PEM file of trusted attestation roots, or None.
        port: TCP port of the HTTP service.
        database_url: PostgreSQL URL of the shared store, or None for SQLite. Hidden from
            ``repr`` because it may carry a password.
        audit_origin: checkpoint origin of the audit log, or None for the default.
        guard: rate limits, circuit breakers and the mint policy server.
        breakglass: the break-glass guardians and their threshold t_g.
        kms: the receipt key backend.
        shipping: where the audit log is copied in OCI, or None.
        enrollment: who may enroll: invited users only, or anyone (development only).
        max_body_bytes: the largest request body accepted, in bytes.
        client_rate: the token bucket of each client address, or None for none.
        rejection_audit_per_minute: rejections of one kind per client and minute audited
            one by one before the rest are counted in a summary record.
    """

    rp_id: str = "localhost"
    origin: str = f"http://localhost:{DEFAULT_PORT}"
    issuer: str = f"http://localhost:{DEFAULT_PORT}"
    state_dir: Path = Path(".ztmint")
    allow_self_attestation: bool = True
    user_verification: str = "preferred"
    attestation_roots: Path | None = None
    port: int = DEFAULT_PORT
    database_url: str | None = field(default=None, repr=False)
    audit_origin: str | None = None
    guard: GuardSettings = field(default_factory=GuardSettings)
    breakglass: BreakGlassSettings = field(default_factory=BreakGlassSettings)
    kms: KmsSettings = field(default_factory=KmsSettings)
    shipping: ShippingSettings | None = None
    enrollment: EnrollmentMode = EnrollmentMode.INVITATION
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    client_rate: RateLimit | None = field(
        default_factory=lambda: RateLimit(burst=120, per_minute=600.0)
    )
    rejection_audit_per_minute: int = 10

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise SettingsError(
                f"max_body_bytes is {self.max_body_bytes}; expected a positive number of bytes"
            )
        if self.user_verification not in USER_VERIFICATION_VALUES:
            raise SettingsError(
                f"user_verification is {self.user_verification!r}; "
                f"expected one of {', '.join(USER_VERIFICATION_VALUES)}"
            )

    @property
    def database_path(self) -> Path:
        """Path of the SQLite database."""
        return self.state_dir / "mint.sqlite3"

    @property
    def checkpoint_origin(self) -> str:
        """Origin line of the audit checkpoints: ``audit_origin`` or ``<host><path>/audit``."""
        if self.audit_origin:
            return self.audit_origin
        parts = urlsplit(self.issuer)
        return f"{parts.netloc}{parts.path.rstrip('/')}/audit"

    @property
    def kms_key_path(self) -> Path:
        """Path of the local KMS P-256 private key."""
        return self.state_dir / "kms-p256.pem"

    @property
    def audit_path(self) -> Path:
        """Path of the hash-chained audit log."""
        return self.state_dir / "audit.jsonl"


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise SettingsError(f"{name} is {text!r}; expected true or false")


def _parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise SettingsError(f"ZTMINT_PORT is {text!r}; expected an integer 1..65535") from None
    if not 0 < port < 65536:
        raise SettingsError(f"ZTMINT_PORT is {port}; expected an integer 1..65535")
    return port


def _parse_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    text = env.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} is {text!r}; expected an integer") from None
    if value < minimum:
        raise SettingsError(f"{name} is {value}; expected at least {minimum}")
    return value


def _parse_enrollment(text: str) -> EnrollmentMode:
    try:
        return EnrollmentMode(text.strip().lower())
    except ValueError:
        raise SettingsError(f"ZTMINT_ENROLLMENT is {text!r}; expected invitation or open") from None


def _client_rate(env: Mapping[str, str]) -> RateLimit | None:
    per_minute = _parse_int(env, "ZTMINT_CLIENT_RATE_PER_MINUTE", 600, 0)
    if per_minute == 0:
        return None
    return RateLimit(
        burst=_parse_int(env, "ZTMINT_CLIENT_RATE_BURST", 120, 1), per_minute=float(per_minute)
    )


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Build ``Settings`` from ``ZTMINT_*`` variables of ``environ`` (default ``os.environ``).

    Raises:
        SettingsError: when a variable is set to a value that cannot be used.
    """
    env = os.environ if environ is None else environ
    port = _parse_port(env.get("ZTMINT_PORT", str(DEFAULT_PORT)))
    origin = env.get("ZTMINT_ORIGIN", f"http://localhost:{port}")
    roots = env.get("ZTMINT_ATTESTATION_ROOTS")
    return Settings(
        rp_id=env.get("ZTMINT_RP_ID", "localhost"),
        origin=origin,
        issuer=env.get("ZTMINT_ISSUER", origin),
        state_dir=Path(env.get("ZTMINT_STATE_DIR", ".ztmint")),
        allow_self_attestation=_parse_bool(
            "ZTMINT_ALLOW_SELF_ATTESTATION", env.get("ZTMINT_ALLOW_SELF_ATTESTATION", "true")
        ),
        user_verification=env.get("ZTMINT_USER_VERIFICATION", "preferred"),
        attestation_roots=Path(roots) if roots else None,
        port=port,
        database_url=env.get("ZTMINT_DATABASE_URL") or None,
        audit_origin=env.get("ZTMINT_AUDIT_ORIGIN") or None,
        guard=guard_settings_from_env(env, SettingsError),
        breakglass=breakglass_settings_from_env(env, SettingsError),
        kms=kms_settings_from_env(env, SettingsError),
        shipping=shipping_settings_from_env(env, SettingsError),
        enrollment=_parse_enrollment(env.get("ZTMINT_ENROLLMENT", "invitation")),
        max_body_bytes=_parse_int(env, "ZTMINT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1),
        client_rate=_client_rate(env),
        rejection_audit_per_minute=_parse_int(env, "ZTMINT_REJECTION_AUDIT_PER_MINUTE", 10, 0),
    )
