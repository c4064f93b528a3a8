"""Receipt key rotation: one active receipt key, and retired keys published until they expire.

A verifier finds a receipt's key by its ``kid`` (RFC 7515 section 4.1.4) in the mint's JWKS
(RFC 7517 section 5). When the mint moves to a new receipt key, tokens minted just before the
move still carry receipts signed by the old key, and they stay valid for up to
``MAX_TTL_SECONDS``. So the JWKS keeps a retired key for a grace period of at least that long
after its ``retired_at``, and then drops it. The mint always signs with the active key.

``ReceiptKeyRing`` is the ``mint.kms.ReceiptSigner`` the service uses: it signs with the active
key and lists every key the JWKS publishes. Where the retired keys come from depends on the
backend:

- local KMS: ``rotate_local_key`` (``ztmint kms rotate --state DIR``) writes a new P-256 key
  to ``kms-p256.pem`` and appends the old public key with its ``retired_at`` to
  ``kms-retired.json`` in the same folder. The old private key is deleted.
- PKCS#11 and OCI KMS: the settings list the retired key labels or key versions with their
  ``retired_at`` (``mint.kms_select``).

The JWKS document has no member for ``retired_at``, because ``authz.keys`` rejects JWK members
it does not know. Verifiers that load the mint's JWKS see a retired key as a plain receipt key
until the mint drops it. Verifiers that keep their previous key set see the drop through
``authz.keys.KeySet.rotated``.

Security:
    A retired key still verifies receipts until its grace period ends, so rotating does not
    help against a leaked key within that period. Replace a leaked local key with
    ``ztmint kms rotate --state DIR --revoke``, which drops the old key from the JWKS at once
    and so also rejects the receipts of tokens minted before the rotation.

Limitations:
    A running mint reads its keys at start. After a rotation, restart every mint process so
    that it signs with the new key and publishes the new JWKS.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.formats import MAX_TTL_SECONDS
from authz.jwk import PublishedKey, ec_p256_jwk, thumbprint
from mint.kms import P256_SCALAR_SIZE, KmsError, LocalKms, ReceiptSigner, published_key

MIN_GRACE_SECONDS = MAX_TTL_SECONDS
"""The shortest grace period: the maximum token lifetime, so no valid token loses its receipt."""

LOCAL_KEY_FILE = "kms-p256.pem"
RETIRED_KEYS_FILE = "kms-retired.json"
_LOCK_FILE = ".kms-rotate.lock"


class RotationError(KmsError):
    """A rotation cannot be done, or the retired key list cannot be read."""


@dataclass(frozen=True)
class RetiredReceiptKey:
    """A receipt key that no longer signs but is still published.

    Attributes:
        kid: the RFC 7638 thumbprint of ``jwk``.
        jwk: the public key as an EC P-256 JWK.
        retired_at: when the key stopped signing, seconds since the epoch.
    """

    kid: str
    jwk: dict[str, str]
    retired_at: int

    def to_json(self) -> dict[str, Any]:
        """Return the entry as stored in ``kms-retired.json``."""
        return {"kid": self.kid, "jwk": dict(self.jwk), "retired_at": self.retired_at}


class ReceiptKeyRing:
    """The active receipt key plus the retired keys still in their grace period.

    Implements ``mint.kms.ReceiptSigner`` by delegating to ``active``.

    Args:
        active: the key that signs receipts and checkpoints.
        retired: keys that signed before, with their ``retired_at``.
        grace_seconds: how long a retired key stays published; at least ``MIN_GRACE_SECONDS``.
        clock: returns the current time in seconds since the epoch.

    Raises:
        RotationError: when ``grace_seconds`` is shorter than ``MIN_GRACE_SECONDS``.
    """

    def __init__(
        self,
        active: ReceiptSigner,
        retired: Sequence[RetiredReceiptKey],
        grace_seconds: int,
        clock: Callable[[], float],
    ) -> None:
        if grace_seconds < MIN_GRACE_SECONDS:
            raise RotationError(
                f"receipt key grace period is {grace_seconds} s; expected at least "
                f"{MIN_GRACE_SECONDS} s, the maximum token lifetime"
            )
        self._active = active
        # A crash during a local rotation can list the active key as retired; it stays active.
        self._retired = [key for key in retired if key.kid != active.kid]
        self._grace_seconds = grace_seconds
        self._clock = clock

    def __repr__(self) -> str:
        retired = [key.kid for key in self._retired]
        return f"ReceiptKeyRing(active={self._active!r}, retired={retired!r})"

    @property
    def kid(self) -> str:
        """Return the kid of the active key."""
        return self._active.kid

    def public_jwk(self) -> dict[str, str]:
        """Return the active key as an EC P-256 JWK."""
        return self._active.public_jwk()

    def sign(self, signing_input: bytes) -> bytes:
        """Sign with the active key and return the 64-byte raw ``r || s``."""
        return self._active.sign(signing_input)

    def close(self) -> None:
        """Close the active key's session when it has one (``mint.kms_pkcs11.Pkcs11Kms``)."""
        close = getattr(self._active, "close", None)
        if close is not None:
            close()

    def published_keys(self) -> list[PublishedKey]:
        """List the active key, then each retired key whose grace period has not ended."""
        now = self._clock()
        keys = [published_key(self._active)]
        for key in self._retired:
            if now < key.retired_at + self._grace_seconds:
                keys.append(PublishedKey(kid=key.kid, jwk=dict(key.jwk)))
        return keys


def published_receipt_keys(signer: ReceiptSigner) -> list[PublishedKey]:
    """List the receipt keys for the JWKS: every key of a ``ReceiptKeyRing``, else the one key."""
    if isinstance(signer, ReceiptKeyRing):
        return signer.published_keys()
    return [published_key(signer)]


def public_key_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """Return a P-256 public key as an EC JWK (RFC 7518 section 6.2.1)."""
    numbers = public_key.public_numbers()
    return ec_p256_jwk(
        numbers.x.to_bytes(P256_SCALAR_SIZE, "big"), numbers.y.to_bytes(P256_SCALAR_SIZE, "big")
    )


def load_retired_keys(path: Path) -> list[RetiredReceiptKey]:
    """Read ``kms-retired.json``; an absent file means no retired key.

    Raises:
        RotationError: when the file is not a list of entries whose kid matches their JWK.
    """
    try:
        entries = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except ValueError as error:
        raise RotationError(f"{path} is not valid JSON ({error}); restore it from backup") from None
    if not isinstance(entries, list):
        raise RotationError(f"{path} must contain a JSON list of retired keys")
    keys = []
    for number, entry in enumerate(entries):
        try:
            key = RetiredReceiptKey(
                kid=str(entry["kid"]), jwk=dict(entry["jwk"]), retired_at=int(entry["retired_at"])
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RotationError(
                f"entry {number} of {path} needs kid, jwk and retired_at: {error!r}"
            ) from None
        if thumbprint(key.jwk) != key.kid:
            raise RotationError(f"entry {number} of {path}: kid does not match the JWK thumbprint")
        keys.append(key)
    return keys


def local_key_ring(
    state_dir: Path, clock: Callable[[], float], grace_seconds: int
) -> ReceiptKeyRing:
    """Open the local KMS key of ``state_dir`` with the retired keys listed next to it.

    Raises:
        KmsError: when the key file is not a P-256 key.
        RotationError: when the retired key list is invalid.
    """
    active = LocalKms(state_dir / LOCAL_KEY_FILE)
    retired = load_retired_keys(state_dir / RETIRED_KEYS_FILE)
    return ReceiptKeyRing(active, retired, grace_seconds, clock)


@dataclass(frozen=True)
class RotationResult:
    """The outcome of ``rotate_local_key``.

    Attributes:
        new_kid: the kid of the new active key.
        retired_kid: the kid of the key it replaced, or None when there was no key.
        revoked: True when the old key was dropped instead of retired.
    """

    new_kid: str
    retired_kid: str | None
    revoked: bool = False


def rotate_local_key(
    state_dir: Path, now: int, grace_seconds: int = MIN_GRACE_SECONDS, *, revoke: bool = False
) -> RotationResult:
    """Replace the local KMS key with a new P-256 key and retire the old one at ``now``.

    The steps are ordered so that a crash at any point leaves a usable state. First the old
    public key is added to the retired list, where the ring ignores it while it is still
    active. Only then is the new private key moved over the old one. Retired keys whose
    grace period has ended are removed from the list.

    Args:
        state_dir: the mint's state folder (``ZTMINT_STATE_DIR``).
        now: the rotation time, seconds since the epoch.
        grace_seconds: the grace period used to prune expired entries.
        revoke: drop the old key at once instead of retiring it (for a leaked key).

    Raises:
        RotationError: when another rotation holds the lock or the retired list is invalid.
        KmsError: when the current key file is not a P-256 key.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    key_path = state_dir / LOCAL_KEY_FILE
    retired_path = state_dir / RETIRED_KEYS_FILE
    with _rotation_lock(state_dir):
        retired = [
            key for key in load_retired_keys(retired_path) if now < key.retired_at + grace_seconds
        ]
        old_kid = None
        if key_path.exists():
            old = LocalKms(key_path)
            old_kid = old.kid
            if revoke:
                retired = [key for key in retired if key.kid != old_kid]
            else:
                retired.append(RetiredReceiptKey(old.kid, old.public_jwk(), now))
        _replace_durably(retired_path, _retired_json(retired), 0o644)

        new_key = ec.generate_private_key(ec.SECP256R1())
        pem = new_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _replace_durably(key_path, pem, 0o600)
    new_kid = thumbprint(public_key_jwk(new_key.public_key()))
    return RotationResult(new_kid=new_kid, retired_kid=old_kid, revoked=revoke and bool(old_kid))


def add_kms_parser(commands: Any) -> None:
    """Add ``ztmint kms rotate`` to the ``ztmint`` subcommands."""
    kms = commands.add_parser("kms", help="receipt key tools")
    kms_commands = kms.add_subparsers(dest="kms_command", required=True)
    rotate = kms_commands.add_parser(
        "rotate", help="replace the local KMS receipt key; the old key stays published"
    )
    rotate.add_argument(
        "--state",
        type=Path,
        required=True,
        help="the mint's state folder (ZTMINT_STATE_DIR) holding kms-p256.pem",
    )
    rotate.add_argument(
        "--revoke",
        action="store_true",
        help="drop the old key from the JWKS at once (for a leaked key); receipts it signed "
        "stop verifying",
    )
    rotate.set_defaults(handler=run_rotate)


def run_rotate(args: argparse.Namespace, clock: Callable[[], float] | None = None) -> int:
    """Run ``ztmint kms rotate`` and print the new and old kids.

    Retired keys are pruned with the mint's grace period, ``ZTMINT_RECEIPT_KEY_GRACE_SECONDS``.
    """
    import time

    from mint.kms_select import kms_settings_from_env

    grace = kms_settings_from_env(os.environ, RotationError).grace_seconds
    now = int((clock or time.time)())
    result = rotate_local_key(args.state, now, grace, revoke=args.revoke)
    print(f"new receipt key {result.new_kid}")
    if result.retired_kid is not None:
        fate = "revoked" if result.revoked else f"retired at {now}, published for the grace period"
        print(f"old receipt key {result.retired_kid} {fate}")
    print("restart every mint process that uses this state folder to sign with the new key")
    return 0


def _retired_json(keys: Sequence[RetiredReceiptKey]) -> bytes:
    return json.dumps([key.to_json() for key in keys], indent=2, sort_keys=True).encode() + b"\n"


class _rotation_lock:  # noqa: N801 - used like a function in a with statement
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / _LOCK_FILE
        self._fd = -1

    def __enter__(self) -> None:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RotationError(
                f"another rotation has locked {self._path}; wait for it to finish and run again"
            ) from None

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)


def _replace_durably(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
