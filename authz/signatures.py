"""Strict Ed25519 and ES256 signature checks shared by the token and receipt verifiers.

Both functions are the single place where ztmint decides whether a signature is valid, so
the Wycheproof vector tests exercise exactly the code that the verifier runs.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authz.errors import AuthzError, Reason

ED25519_SIGNATURE_SIZE = 64
ED25519_POINT_SIZE = 32
ES256_SIGNATURE_SIZE = 64

# The field prime p = 2^255 - 19 and the group order L of edwards25519 (RFC 8032 section 5.1).
_ED25519_P = 2**255 - 19
_ED25519_L = 2**252 + 27742317777372353535851937790883648493
# The order n of the P-256 base point (SEC 2 section 2.4.2, FIPS 186-4 D.1.2.3).
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def ed25519_point_is_canonical(encoded: bytes) -> bool:
    """Return whether a 32-byte point encoding has its y coordinate below p (RFC 8032 5.1.3).

    An encoding with y >= p decodes to the same point as y - p. RFC 8032 section 5.1.3 step 1
    requires a decoder to reject it, so one point has only one accepted spelling.
    """
    if len(encoded) != ED25519_POINT_SIZE:
        return False
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    return y < _ED25519_P


def ed25519_public_key_is_valid(public_key: bytes) -> bool:
    """Return whether ``public_key`` is a canonical Ed25519 point of prime order.

    libsodium's ``crypto_core_ed25519_is_valid_point`` rejects non-canonical encodings, points
    off the curve, the eight small-order points and points outside the prime-order subgroup.
    """
    if not ed25519_point_is_canonical(public_key):
        return False
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(public_key))


def verify_ed25519_strict(
    public_key: bytes,
    message: bytes,
    signature: bytes,
    reason: Reason = Reason.TOKEN_SIGNATURE_INVALID,
) -> None:
    """Verify an Ed25519 signature (RFC 8032 section 5.1.7) with the strict checks.

    On top of the RFC's verification equation this rejects: S >= L (RFC 8032 5.1.7 step 1,
    the malleability check), an R or public key encoding with y >= p, and an R or public key
    of small order. The cofactorless equation is checked by libsodium's
    ``crypto_sign_verify_detached`` through PyNaCl.

    Security:
        Small-order and non-canonical points let one message carry several valid signatures
        and let a crafted key accept signatures on many messages. A verifier that skips these
        checks can disagree with the Go and Node SDKs on which tokens are valid.

    Raises:
        AuthzError: with ``reason`` when the signature is not valid for ``message``.
    """
    if len(public_key) != ED25519_POINT_SIZE:
        raise AuthzError(reason, f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    if len(signature) != ED25519_SIGNATURE_SIZE:
        raise AuthzError(reason, f"Ed25519 signature must be 64 bytes, got {len(signature)}")
    if not ed25519_public_key_is_valid(public_key):
        raise AuthzError(reason, "Ed25519 public key is not a canonical point of prime order")

    encoded_r, encoded_s = signature[:32], signature[32:]
    if int.from_bytes(encoded_s, "little") >= _ED25519_L:
        raise AuthzError(reason, "Ed25519 signature has S >= L, expected S reduced modulo L")
    if not ed25519_point_is_canonical(encoded_r):
        raise AuthzError(reason, "Ed25519 signature has a non-canonical R encoding")
    if _ed25519_has_small_order(encoded_r):
        raise AuthzError(reason, "Ed25519 signature has an R of small order")

    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError as exc:
        raise AuthzError(reason, "Ed25519 signature does not verify") from exc


def _ed25519_has_small_order(encoded: bytes) -> bool:
    # A point P has small order exactly when 8P is the identity, encoded as y = 1, x = 0.
    # libsodium's scalar multiplication fails rather than return the identity, so compute
    # 8P with three point doublings instead.
    try:
        doubled = nacl.bindings.crypto_core_ed25519_add(encoded, encoded)
        quadrupled = nacl.bindings.crypto_core_ed25519_add(doubled, doubled)
        octupled = nacl.bindings.crypto_core_ed25519_add(quadrupled, quadrupled)
    except nacl.exceptions.RuntimeError:
        # libsodium returns an error for encodings that are not points on the curve, and the
        # caller treats them like small-order points: the signature is rejected either way.
        return True
    return octupled == (1).to_bytes(32, "little")


def verify_es256_raw(
    public_key: ec.EllipticCurvePublicKey,
    message: bytes,
    signature: bytes,
    reason: Reason = Reason.RECEIPT_SIGNATURE_INVALID,
) -> None:
    """Verify an ES256 JWS signature given as raw ``r || s`` (RFC 7518 section 3.4).

    Only the 64-byte form that JWS requires is accepted, never DER. Both r and s must lie in
    [1, n - 1] (FIPS 186-4 section 6.4.2 step 1) before they are DER-encoded for
    ``cryptography``'s ECDSA verification with SHA-256.

    Raises:
        AuthzError: with ``reason`` when the signature is not valid for ``message``.
    """
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise AuthzError(reason, f"ES256 needs a P-256 key, got {public_key.curve.name}")
    if len(signature) != ES256_SIGNATURE_SIZE:
        raise AuthzError(
            reason, f"ES256 signature must be 64 bytes r || s, got {len(signature)} bytes"
        )
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not 0 < r < _P256_N:
        raise AuthzError(reason, "ES256 signature has r outside [1, n - 1]")
    if not 0 < s < _P256_N:
        raise AuthzError(reason, "ES256 signature has s outside [1, n - 1]")

    try:
        public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AuthzError(reason, "ES256 signature does not verify") from exc
