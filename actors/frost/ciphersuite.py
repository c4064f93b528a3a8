"""The FROST(Ed25519, SHA-512) ciphersuite of RFC 9591 section 6.1.

Scalars are integers modulo the group order L, encoded as 32 bytes little-endian. Elements are
points of the prime-order subgroup of edwards25519, encoded as in RFC 8032 section 5.1.2. All
arithmetic runs in libsodium through ``nacl.bindings``, so secret scalars never become Python
integers, whose arithmetic is not constant time.

Security:
    Every element that arrives from another party must pass ``decode_element``. libsodium's
    point addition accepts any curve point, including the eight small-order points and points
    with a torsion component. Such an element in a commitment lets a malicious signer shift
    the group commitment by a torsion point. The aggregate signature then verifies under
    cofactored verifiers but not under cofactorless ones, so verifiers disagree about it. The
    identity as a commitment would leave a nonce without effect on the group commitment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import nacl.bindings as sodium

from actors.frost.errors import InvalidElement, InvalidScalar, InvalidSignature

CONTEXT_STRING = b"FROST-ED25519-SHA512-v1"

GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
"""L, the order of the prime-order subgroup of edwards25519 (RFC 8032 section 5.1)."""

SCALAR_SIZE = 32
ELEMENT_SIZE = 32
SIGNATURE_SIZE = 64

ZERO_SCALAR = bytes(SCALAR_SIZE)
ONE_SCALAR = (1).to_bytes(SCALAR_SIZE, "little")
RandomSource = Callable[[int], bytes]
"""A source of random bytes such as ``os.urandom``. Tests inject fixed bytes through it."""

IDENTITY_ELEMENT = b"\x01" + bytes(ELEMENT_SIZE - 1)
"""Encoding of the neutral element (x = 0, y = 1), which is never valid on the wire."""


# Scalars


def scalar_from_int(value: int) -> bytes:
    """Encode a public non-negative integer below L as a scalar.

    Only public values (identifiers, polynomial exponents) go through Python integers.

    Raises:
        InvalidScalar: when ``value`` is negative or not below L.
    """
    if not 0 <= value < GROUP_ORDER:
        raise InvalidScalar(f"scalar value {value} is out of range, expected an integer in [0, L)")
    return value.to_bytes(SCALAR_SIZE, "little")


def decode_scalar(data: bytes) -> bytes:
    """Check a scalar encoding, as DeserializeScalar of RFC 9591 section 6.1.

    Returns:
        The same 32 bytes, which are then known to be canonical.

    Raises:
        InvalidScalar: when ``data`` is not 32 bytes or encodes a value not below L.
    """
    if len(data) != SCALAR_SIZE:
        raise InvalidScalar(
            f"scalar encoding is {len(data)} bytes, expected {SCALAR_SIZE} bytes little-endian"
        )
    # Reducing the zero-extended value leaves it unchanged only when it is already below L.
    if sodium.crypto_core_ed25519_scalar_reduce(data + bytes(SCALAR_SIZE)) != data:
        raise InvalidScalar(
            "scalar encoding is not canonical: its value is not below the group order L, so "
            "send the value reduced modulo L"
        )
    return data


def scalar_is_zero(scalar: bytes) -> bool:
    """Return whether a canonical scalar encodes zero."""
    return hmac.compare_digest(scalar, ZERO_SCALAR)


def scalar_add(a: bytes, b: bytes) -> bytes:
    """Return a + b mod L."""
    return sodium.crypto_core_ed25519_scalar_add(a, b)


def scalar_sub(a: bytes, b: bytes) -> bytes:
    """Return a - b mod L."""
    return sodium.crypto_core_ed25519_scalar_sub(a, b)


def scalar_mul(a: bytes, b: bytes) -> bytes:
    """Return a * b mod L."""
    return sodium.crypto_core_ed25519_scalar_mul(a, b)


def scalar_invert(a: bytes) -> bytes:
    """Return the inverse of a non-zero scalar modulo L.

    Raises:
        InvalidScalar: when ``a`` is zero, which has no inverse.
    """
    if scalar_is_zero(a):
        raise InvalidScalar("cannot invert the zero scalar, expected a non-zero scalar")
    return sodium.crypto_core_ed25519_scalar_invert(a)


def scalar_random(rng: RandomSource) -> bytes:
    """Draw a uniform non-zero scalar by reducing 64 random bytes modulo L.

    The 64-byte reduction keeps the bias below 2**-250, as RFC 9591 section 4.1 does for nonces.
    """
    while True:
        scalar = sodium.crypto_core_ed25519_scalar_reduce(read_random(rng, 64))
        if not scalar_is_zero(scalar):
            return scalar


# Elements


def decode_element(data: bytes) -> bytes:
    """Check an element encoding, as DeserializeElement of RFC 9591 section 6.1.

    Accepts only the canonical encoding (RFC 8032 section 5.1.3) of a point in the prime-order
    subgroup other than the identity. libsodium's ``crypto_core_ed25519_is_valid_point`` makes
    exactly these checks: canonical y, on the curve, not of small order, and L times the point
    is the identity.

    Returns:
        The same 32 bytes.

    Raises:
        InvalidElement: when any of these checks fails.
    """
    if len(data) != ELEMENT_SIZE:
        raise InvalidElement(
            f"element encoding is {len(data)} bytes, expected a {ELEMENT_SIZE}-byte point"
        )
    if not sodium.crypto_core_ed25519_is_valid_point(data):
        raise InvalidElement(
            "element is not a canonical encoding of a non-identity point in the prime-order "
            "subgroup of edwards25519 (identity, small-order and torsion points are rejected)"
        )
    return data


def encode_element(element: bytes) -> bytes:
    """Serialize an element computed locally, as SerializeElement of RFC 9591 section 6.1.

    Raises:
        InvalidElement: when ``element`` is the identity, which RFC 9591 forbids serializing.
    """
    if element == IDENTITY_ELEMENT:
        raise InvalidElement("cannot serialize the identity element, expected a non-identity point")
    return element


def base_mul(scalar: bytes) -> bytes:
    """Return scalar * B for the Ed25519 base point B (ScalarBaseMult)."""
    # libsodium reports a zero product as an error, but zero is a valid scalar here.
    if scalar_is_zero(scalar):
        return IDENTITY_ELEMENT
    return sodium.crypto_scalarmult_ed25519_base_noclamp(scalar)


def element_mul(element: bytes, scalar: bytes) -> bytes:
    """Return scalar * element for an element of the prime-order subgroup (ScalarMult)."""
    if scalar_is_zero(scalar) or element == IDENTITY_ELEMENT:
        return IDENTITY_ELEMENT
    return sodium.crypto_scalarmult_ed25519_noclamp(scalar, element)


def element_add(a: bytes, b: bytes) -> bytes:
    """Return a + b."""
    return sodium.crypto_core_ed25519_add(a, b)


def element_sub(a: bytes, b: bytes) -> bytes:
    """Return a - b."""
    return sodium.crypto_core_ed25519_sub(a, b)


# Hashes (RFC 9591 section 6.1)


def _hash_to_scalar(*parts: bytes) -> bytes:
    return sodium.crypto_core_ed25519_scalar_reduce(hashlib.sha512(b"".join(parts)).digest())


def h1(message: bytes) -> bytes:
    """H1, the binding factor hash: SHA-512(contextString || "rho" || m) mod L."""
    return _hash_to_scalar(CONTEXT_STRING, b"rho", message)


def h2(message: bytes) -> bytes:
    """H2, the challenge hash: SHA-512(m) mod L, with no prefix, so that it matches RFC 8032."""
    return _hash_to_scalar(message)


def h3(message: bytes) -> bytes:
    """H3, the nonce hash: SHA-512(contextString || "nonce" || m) mod L."""
    return _hash_to_scalar(CONTEXT_STRING, b"nonce", message)


def h4(message: bytes) -> bytes:
    """H4, the message hash: SHA-512(contextString || "msg" || m), 64 bytes."""
    return hashlib.sha512(CONTEXT_STRING + b"msg" + message).digest()


def h5(message: bytes) -> bytes:
    """H5, the commitment list hash: SHA-512(contextString || "com" || m), 64 bytes."""
    return hashlib.sha512(CONTEXT_STRING + b"com" + message).digest()


def hdkg(message: bytes) -> bytes:
    """HDKG, the DKG proof-of-knowledge challenge hash of the ZF frost-core crate.

    SHA-512(contextString || "dkg" || m) mod L. RFC 9591 defines no DKG.
    """
    return _hash_to_scalar(CONTEXT_STRING, b"dkg", message)


# Signatures


def verify_signature(message: bytes, signature: bytes, public_key: bytes) -> None:
    """Verify an Ed25519 signature R || S with the cofactorless equation [S]B = R + [c]A.

    This is the check of RFC 9591 section 6.1 (``verify_signature`` of Appendix C) and of
    RFC 8032 section 5.1.7 without the cofactor: S must be canonical (below L), A must be a
    valid element, c = SHA-512(R || A || M) mod L, and R must equal [S]B - [c]A byte for byte,
    which also rejects any non-canonical encoding of R.

    Raises:
        InvalidSignature: when the signature or the public key is malformed or the equation
            does not hold.
    """
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature(
            f"signature is {len(signature)} bytes, expected {SIGNATURE_SIZE} bytes (R || S)"
        )
    commitment, response = signature[:ELEMENT_SIZE], signature[ELEMENT_SIZE:]
    try:
        decode_scalar(response)
        decode_element(public_key)
    except (InvalidScalar, InvalidElement) as exc:
        raise InvalidSignature(f"signature or public key is malformed: {exc}") from exc

    challenge = h2(commitment + public_key + message)
    expected_commitment = element_sub(base_mul(response), element_mul(public_key, challenge))
    if expected_commitment != commitment:
        raise InvalidSignature(
            "signature does not verify under the public key: [S]B - [c]A differs from R"
        )


def read_random(rng: RandomSource, size: int) -> bytes:
    """Read ``size`` bytes from ``rng``, checking that it returned exactly that many."""
    data = rng(size)
    if len(data) != size:
        raise ValueError(f"random source returned {len(data)} bytes, expected {size} bytes")
    return data
