"""The verifier's key set: group keys for tokens and receipt keys, loaded from a JWKS.

The JWKS (RFC 7517 section 5) is read strictly. Every key must be either an OKP Ed25519 key
with ``alg: EdDSA`` (RFC 8037 section 2) or an EC P-256 key with ``alg: ES256`` (RFC 7518
section 6.2), carry a unique ``kid``, and decode to a valid public point. Anything else makes
the whole document invalid, because a verifier that skips keys it does not understand can end
up with an empty or different key set from the one the mint API published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from authz.errors import AuthzError, Reason
from authz.jose import b64url_decode, json_loads_strict
from authz.jwk import thumbprint
from authz.signatures import ed25519_public_key_is_valid

DEFAULT_RECEIPT_GRACE_SECONDS = 3600
MAX_JWKS_BYTES = 64 * 1024

_OKP_MEMBERS = frozenset({"kty", "crv", "x", "kid", "alg", "use"})
_EC_MEMBERS = frozenset({"kty", "crv", "x", "y", "kid", "alg", "use"})


class KeySetError(ValueError):
    """Raised when a JWKS document is invalid or cannot be read."""


@dataclass(frozen=True)
class GroupKey:
    """A FROST group public key that signs tokens.

    Attributes:
        kid: the RFC 7638 thumbprint of the key's JWK, as in the token header.
        public_key: the 32-byte Ed25519 public key.
    """

    kid: str
    public_key: bytes


@dataclass(frozen=True)
class ReceiptKey:
    """A KMS public key that signs receipts.

    Attributes:
        kid: the key id from the JWKS, as in the receipt header.
        public_key: the P-256 public key.
        retired_at: when the key was replaced by a newer one (seconds since the epoch), or
            None while it is current. A retired key still verifies receipts issued before
            ``retired_at`` until the key set's grace period has passed.
    """

    kid: str
    public_key: ec.EllipticCurvePublicKey
    retired_at: int | None = None


@dataclass(frozen=True)
class KeySet:
    """Group keys and receipt keys, each looked up by exact ``kid``.

    Attributes:
        group_keys: Ed25519 group keys by kid.
        receipt_keys: P-256 receipt keys by kid.
        receipt_grace_seconds: how long after ``retired_at`` a retired receipt key is still
            accepted. The default equals the longest token lifetime, so a receipt issued just
            before a rotation stays usable for as long as its token.
    """

    group_keys: Mapping[str, GroupKey]
    receipt_keys: Mapping[str, ReceiptKey]
    receipt_grace_seconds: int = DEFAULT_RECEIPT_GRACE_SECONDS

    def group_key(self, kid: str) -> GroupKey:
        """Return the group key with exactly this kid.

        Raises:
            AuthzError: ``token_kid_unknown`` when no group key has this kid.
        """
        key = self.group_keys.get(kid)
        if key is None:
            raise AuthzError(Reason.TOKEN_KID_UNKNOWN, f"no group key with kid {kid!r}")
        return key

    def receipt_key(self, kid: str) -> ReceiptKey:
        """Return the receipt key with exactly this kid, current or retired.

        Raises:
            AuthzError: ``receipt_kid_unknown`` when no receipt key has this kid.
        """
        key = self.receipt_keys.get(kid)
        if key is None:
            raise AuthzError(Reason.RECEIPT_KID_UNKNOWN, f"no receipt key with kid {kid!r}")
        return key

    def rotated(self, document: Mapping[str, Any], now: int) -> KeySet:
        """Build the key set of a newer JWKS, keeping dropped receipt keys as retired.

        A receipt key that is in this set but not in ``document`` is kept with
        ``retired_at = now`` (or its earlier ``retired_at``) until the grace period has
        passed. Group keys are replaced outright: a token signed by a withdrawn group key is
        rejected at once.

        Raises:
            KeySetError: when ``document`` is not a valid JWKS.
        """
        fresh = key_set_from_jwks(document, self.receipt_grace_seconds)
        receipt_keys = dict(fresh.receipt_keys)
        for kid, key in self.receipt_keys.items():
            if kid in receipt_keys:
                continue
            retired_at = now if key.retired_at is None else key.retired_at
            if now < retired_at + self.receipt_grace_seconds:
                receipt_keys[kid] = dataclasses.replace(key, retired_at=retired_at)
        return dataclasses.replace(fresh, receipt_keys=receipt_keys)


def key_set_from_jwks(
    document: Mapping[str, Any],
    receipt_grace_seconds: int = DEFAULT_RECEIPT_GRACE_SECONDS,
) -> KeySet:
    """Build a key set from a parsed JWKS document (RFC 7517 section 5).

    Raises:
        KeySetError: when the document or any key in it is invalid.
    """
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list):
        raise KeySetError('JWKS must be a JSON object with a "keys" array')

    group_keys: dict[str, GroupKey] = {}
    receipt_keys: dict[str, ReceiptKey] = {}
    for index, jwk in enumerate(keys):
        if not isinstance(jwk, dict):
            raise KeySetError(f"JWKS key {index} is not a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise KeySetError(f"JWKS key {index} has no kid. Every key needs a non-empty kid")
        if kid in group_keys or kid in receipt_keys:
            raise KeySetError(f"JWKS has two keys with kid {kid!r}, but kids must be unique")
        if jwk.get("use", "sig") != "sig":
            raise KeySetError(f"JWKS key {kid!r} has use {jwk.get('use')!r}, expected sig")
        if jwk.get("kty") == "OKP":
            group_keys[kid] = _group_key_from_jwk(kid, jwk)
        elif jwk.get("kty") == "EC":
            receipt_keys[kid] = _receipt_key_from_jwk(kid, jwk)
        else:
            raise KeySetError(
                f"JWKS key {kid!r} has kty {jwk.get('kty')!r}, expected OKP (Ed25519) or EC (P-256)"
            )
    return KeySet(group_keys, receipt_keys, receipt_grace_seconds)


def _group_key_from_jwk(kid: str, jwk: dict[str, Any]) -> GroupKey:
    unknown = set(jwk) - _OKP_MEMBERS
    if unknown:
        # A "d" member here would mean the JWKS publishes a private key.
        raise KeySetError(f"group key {kid!r} has unexpected members {sorted(unknown)}")
    if jwk.get("crv") != "Ed25519" or jwk.get("alg") != "EdDSA":
        raise KeySetError(f"group key {kid!r} must have crv Ed25519 and alg EdDSA")
    public_key = _decode_member(kid, jwk, "x")
    if not ed25519_public_key_is_valid(public_key):
        raise KeySetError(f"group key {kid!r} is not a canonical Ed25519 point of prime order")
    if thumbprint(jwk) != kid:
        raise KeySetError(f"group key {kid!r} does not match its RFC 7638 thumbprint")
    return GroupKey(kid, public_key)


def _receipt_key_from_jwk(kid: str, jwk: dict[str, Any]) -> ReceiptKey:
    unknown = set(jwk) - _EC_MEMBERS
    if unknown:
        raise KeySetError(f"receipt key {kid!r} has unexpected members {sorted(unknown)}")
    if jwk.get("crv") != "P-256" or jwk.get("alg") != "ES256":
        raise KeySetError(f"receipt key {kid!r} must have crv P-256 and alg ES256")
    x = _decode_member(kid, jwk, "x")
    y = _decode_member(kid, jwk, "y")
    if len(x) != 32 or len(y) != 32:
        raise KeySetError(f"receipt key {kid!r} coordinates must be 32 bytes each")
    try:
        # from_encoded_point checks that the point is on the curve.
        public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    except ValueError as exc:
        raise KeySetError(f"receipt key {kid!r} is not a point on P-256") from exc
    return ReceiptKey(kid, public_key)


def _decode_member(kid: str, jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise KeySetError(f"key {kid!r} has no string member {name!r}")
    try:
        return b64url_decode(value)
    except AuthzError as exc:
        raise KeySetError(f"key {kid!r} member {name!r} is not canonical base64url") from exc


def parse_jwks(data: bytes) -> dict[str, Any]:
    """Parse JWKS bytes as strict JSON, rejecting duplicate member names.

    Raises:
        KeySetError: when the bytes are too large or not a JSON object.
    """
    if len(data) > MAX_JWKS_BYTES:
        raise KeySetError(f"JWKS is {len(data)} bytes, more than the limit of {MAX_JWKS_BYTES}")
    try:
        return json_loads_strict(data)
    except AuthzError as exc:
        raise KeySetError(f"JWKS is not a valid JSON object: {exc.detail}") from exc


def load_key_set_file(
    path: Path, receipt_grace_seconds: int = DEFAULT_RECEIPT_GRACE_SECONDS
) -> KeySet:
    """Load a key set from a JWKS file.

    Raises:
        KeySetError: when the file cannot be read or is not a valid JWKS.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeySetError(f"cannot read JWKS file {path}: {exc.strerror}") from exc
    return key_set_from_jwks(parse_jwks(data), receipt_grace_seconds)


def fetch_jwks(
    url: str, timeout: float = 5.0, client: httpx.Client | None = None
) -> dict[str, Any]:
    """Fetch and parse the mint API's ``/.well-known/jwks.json``.

    Raises:
        KeySetError: when the request fails, the status is not 200 or the body is not a JWKS.
    """
    owned = client is None
    http = client if client is not None else httpx.Client(timeout=timeout)
    try:
        response = http.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        raise KeySetError(f"fetching JWKS from {url} failed: {type(exc).__name__}") from exc
    finally:
        if owned:
            http.close()
    if response.status_code != 200:
        raise KeySetError(
            f"fetching JWKS from {url} returned HTTP {response.status_code}, expected 200"
        )
    return parse_jwks(response.content)
