"""Per-call tokens that prove a signer call comes from the coordinator.

Ray lets any driver connected to the cluster look up a named actor and call it. Ray's mTLS
(``actors.tls``) keeps other machines out, but not another process that runs in the cluster.
So every call that makes a signer touch a nonce, a signing share or key generation state carries a
compact JWS (RFC 7515) signed with EdDSA over Ed25519 (RFC 8037) by the coordinator's key:

    header  {"alg":"EdDSA","typ":"JWT"}
    claims  {"iss":"ztmint-coordinator", "aud":<signer actor name>, "iat", "exp", "jti",
             "mth":<signer method>, "req":<base64url SHA-256 of the call's arguments>}

The signer verifies the signature with the coordinator public key it got at creation, and the
issuer. It checks that ``aud`` is its own actor name and that ``exp - iat <= 30`` seconds.
It checks the time window, that ``mth`` and ``req`` match the call, and that the ``jti`` is
new (RFC 7519 sections 4.1.1-4.1.7). PyJWT verifies the signature, and this module checks
the time claims against an injected clock.

Security:
    The coordinator's private key is sealed at rest under the state folder, like the signing
    shares (``actors.sealing``), and never leaves the coordinator process. A token binds the
    exact arguments of one call, so a captured token cannot carry another signing package.
    A signer stores every ``jti`` until its ``exp`` plus the allowed clock skew has passed,
    which makes each token single-use per signer.

Limitations:
    The set of seen ``jti`` values lives in memory. A signer restarted by Ray forgets it, so a
    token captured before the restart can be replayed for up to 30 seconds. A replayed
    ``sign`` still fails because the signing package names the old epoch, and a replayed
    ``publish_commitments`` only adds fresh nonces to the pool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from actors.errors import CallerRejected
from actors.sealing import FileSealingKeyProvider, seal_secret, unseal_secret
from authz.jose import b64url_encode

CALLER_ISSUER = "ztmint-coordinator"
MAX_CALL_TOKEN_LIFETIME = 30
CLOCK_SKEW_SECONDS = 5
COORDINATOR_KEY_NAME = "coordinator"
_JTI_SIZE = 16
_SEALED_KEY_VERSION = 1

Clock = Callable[[], float]
RandomSource = Callable[[int], bytes]


def call_digest(method: str, arguments: tuple[Any, ...]) -> bytes:
    """Return the SHA-256 of an unambiguous encoding of ``method`` and its arguments.

    Supports None, bool, int, str, bytes, tuples, lists, dicts and dataclasses, which is
    everything the coordinator passes to a signer. Each value is written as a one-byte type
    tag, then its length or its parts, so two different calls never share an encoding.
    Dataclasses are encoded by class name and fields in declaration order, and dict entries
    are sorted by their encoded keys.

    Raises:
        TypeError: an argument has a type outside that list.
    """
    return hashlib.sha256(_encode(method) + _encode(tuple(arguments))).digest()


def _encode(value: Any) -> bytes:
    if value is None:
        return b"N"
    if isinstance(value, bool):
        return b"T" if value else b"F"
    if isinstance(value, int):
        text = str(value).encode("ascii")
        return b"I" + struct.pack(">I", len(text)) + text
    if isinstance(value, str):
        return b"S" + _length_prefixed(value.encode("utf-8"))
    if isinstance(value, bytes):
        return b"B" + _length_prefixed(value)
    if isinstance(value, tuple | list):
        return b"L" + struct.pack(">I", len(value)) + b"".join(_encode(item) for item in value)
    if isinstance(value, dict):
        entries = sorted(_encode(key) + _encode(item) for key, item in value.items())
        return b"D" + struct.pack(">I", len(entries)) + b"".join(entries)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        parts = [_encode(getattr(value, item.name)) for item in dataclasses.fields(value)]
        return b"C" + _encode(type(value).__qualname__) + _encode(parts)
    raise TypeError(f"cannot bind a call argument of type {type(value).__name__}")


def _length_prefixed(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """Return the 32-byte raw Ed25519 public key of ``private_key``."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_or_create_coordinator_key(state_dir: str | Path) -> Ed25519PrivateKey:
    """Load the coordinator's sealed Ed25519 key from ``state_dir``, creating it on first use.

    The key is sealed in ``<state_dir>/coordinator/caller-key.sealed.json`` under the sealing
    key ``<state_dir>/sealing-keys/coordinator.key``.

    Raises:
        SealedShareInvalid: the sealed key file was altered or its sealing key replaced.
    """
    folder = Path(state_dir)
    sealing_key = FileSealingKeyProvider(folder).get_or_create_named_key(COORDINATOR_KEY_NAME)
    path = folder / "coordinator" / "caller-key.sealed.json"
    if path.is_file():
        _, seed = unseal_secret(path.read_bytes(), sealing_key)
        return Ed25519PrivateKey.from_private_bytes(seed)

    private_key = Ed25519PrivateKey.generate()
    seed = private_key.private_bytes_raw()
    public = {"v": _SEALED_KEY_VERSION, "public_key": b64url_encode(public_key_bytes(private_key))}
    sealed = seal_secret(seed, public, sealing_key, os.urandom(24))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(sealed)
    try:
        # A link fails if another process created the key first; then use that one.
        os.link(temporary, path)
    except FileExistsError:
        os.unlink(temporary)
        _, seed = unseal_secret(path.read_bytes(), sealing_key)
        return Ed25519PrivateKey.from_private_bytes(seed)
    os.unlink(temporary)
    return private_key


class CallTokenIssuer:
    """Signs per-call tokens with the coordinator key.

    Args:
        private_key: the coordinator's Ed25519 key.
        clock: returns seconds since the epoch.
        rng: source of the ``jti`` bytes.
        lifetime: seconds from ``iat`` to ``exp``, at most ``MAX_CALL_TOKEN_LIFETIME``.
    """

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        clock: Clock = time.time,
        rng: RandomSource = os.urandom,
        lifetime: int = MAX_CALL_TOKEN_LIFETIME,
    ) -> None:
        if not 1 <= lifetime <= MAX_CALL_TOKEN_LIFETIME:
            raise ValueError(
                f"call token lifetime {lifetime} s must be 1 to {MAX_CALL_TOKEN_LIFETIME} s"
            )
        self._private_key = private_key
        self._clock = clock
        self._rng = rng
        self._lifetime = lifetime

    def __repr__(self) -> str:
        return "CallTokenIssuer(<redacted>)"

    def issue(self, audience: str, method: str, arguments: tuple[Any, ...]) -> str:
        """Return a token for one call of ``method`` with ``arguments`` on signer ``audience``."""
        now = int(self._clock())
        claims = {
            "iss": CALLER_ISSUER,
            "aud": audience,
            "iat": now,
            "exp": now + self._lifetime,
            "jti": b64url_encode(self._rng(_JTI_SIZE)),
            "mth": method,
            "req": b64url_encode(call_digest(method, arguments)),
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA")


class CallTokenVerifier:
    """Checks per-call tokens on the signer side and remembers used ``jti`` values.

    Args:
        coordinator_public_key: the 32-byte Ed25519 key of the coordinator.
        audience: this signer's actor name.
        clock: returns seconds since the epoch.
    """

    def __init__(self, coordinator_public_key: bytes, audience: str, clock: Clock = time.time):
        self._public_key = Ed25519PublicKey.from_public_bytes(coordinator_public_key)
        self._audience = audience
        self._clock = clock
        self._seen: dict[str, int] = {}

    def verify(self, token: object, method: str, arguments: tuple[Any, ...]) -> None:
        """Accept ``token`` for this call once, or raise.

        Raises:
            CallerRejected: the token is missing, not an EdDSA JWS by the coordinator key,
                for another signer or method, bound to other arguments, outside its time
                window, longer-lived than 30 s, or already used.
        """
        if not isinstance(token, str) or not token:
            raise CallerRejected(
                f"{method} call without a coordinator token: only the coordinator may call "
                f"signer {self._audience}"
            )
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["EdDSA"],
                audience=self._audience,
                issuer=CALLER_ISSUER,
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["iss", "aud", "iat", "exp", "jti", "mth", "req"],
                },
            )
        except jwt.PyJWTError as exc:
            raise CallerRejected(
                f"{method} call token rejected ({type(exc).__name__}: {exc}): expected an "
                f"EdDSA token from {CALLER_ISSUER} for {self._audience}"
            ) from exc

        self._check_time(claims, method)
        if claims["mth"] != method:
            raise CallerRejected(f"call token was issued for {claims['mth']!r}, not {method!r}")
        if claims["req"] != b64url_encode(call_digest(method, arguments)):
            raise CallerRejected(
                f"{method} call token is bound to other arguments: the request was altered"
            )
        jti = claims["jti"]
        if not isinstance(jti, str) or jti in self._seen:
            raise CallerRejected(f"{method} call token jti was used already: tokens are single-use")
        self._seen[jti] = claims["exp"]

    def _check_time(self, claims: dict[str, Any], method: str) -> None:
        iat, exp = claims["iat"], claims["exp"]
        if not _is_integer(iat) or not _is_integer(exp):
            raise CallerRejected(f"{method} call token needs integer iat and exp")
        if not 0 < exp - iat <= MAX_CALL_TOKEN_LIFETIME:
            raise CallerRejected(
                f"{method} call token lives {exp - iat} s: expected 1 to "
                f"{MAX_CALL_TOKEN_LIFETIME} s"
            )
        now = self._clock()
        if iat > now + CLOCK_SKEW_SECONDS:
            raise CallerRejected(
                f"{method} call token is issued in the future (iat {iat}, now {int(now)}): "
                "check the clocks of the coordinator and signer nodes"
            )
        if now >= exp + CLOCK_SKEW_SECONDS:
            raise CallerRejected(f"{method} call token expired at {exp} (now {int(now)})")
        self._seen = {
            jti: expiry for jti, expiry in self._seen.items() if expiry + CLOCK_SKEW_SECONDS > now
        }


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
