"""Byte-level helpers that build valid and deliberately broken compact JWS strings.

The shared vectors need signatures that a normal signing library does not produce: an
Ed25519 signature with S >= L or with a small-order R, an ES256 signature with r = 0, a
segment whose base64url has non-zero unused bits. This module builds them from the fixed test
keys with plain integer arithmetic, so ``generate.py`` stays a readable list of cases.

Security:
    Everything here is for test vectors only. The keys come from fixed, published seeds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from nacl.signing import SigningKey

from authz.jose import b64url_encode

# Order of the edwards25519 prime-order subgroup (RFC 8032 section 5.1).
ED25519_L = 2**252 + 27742317777372353535851937790883648493
# Field prime of edwards25519 and the curve constant d (RFC 8032 section 5.1).
ED25519_P = 2**255 - 19
ED25519_D = (-121665 * pow(121666, -1, ED25519_P)) % ED25519_P
# Order of the P-256 group (SEC 2 section 2.4.2).
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# Encodings of small-order edwards25519 points used to forge signatures and keys.
IDENTITY = bytes([1]) + bytes(31)
IDENTITY_SIGN_BIT = bytes([1]) + bytes(30) + bytes([0x80])
IDENTITY_NON_CANONICAL = (ED25519_P + 1).to_bytes(32, "little")
ORDER_8_POINT = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def b64url_json(text: str) -> str:
    """Encode hand-written JSON text (kept byte-exact, including duplicates) as base64url."""
    return b64url_encode(text.encode("utf-8"))


def set_unused_bits(segment: str) -> str:
    """Return ``segment`` with the lowest unused bit of its last character set.

    The result decodes to the same bytes under a lenient decoder but is not canonical
    base64url (RFC 4648 section 3.5).
    """
    if len(segment) % 4 not in (2, 3):
        raise ValueError("segment has no unused bits: its length is a multiple of 4")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(segment[-1]) | 1
    return segment[:-1] + alphabet[last]


def std_b64_padded(data: bytes) -> str:
    """Encode with the standard alphabet and padding, the non-URL-safe spelling."""
    return base64.b64encode(data).decode("ascii")


class Ed25519Crafter:
    """Signs with a fixed Ed25519 seed, honestly or with chosen R and S (RFC 8032 section 5.1.6).

    Attributes:
        public_key: the 32-byte encoded public key A.
    """

    def __init__(self, seed: bytes) -> None:
        self._signing_key = SigningKey(seed)
        self.public_key = bytes(self._signing_key.verify_key)
        digest = hashlib.sha512(seed).digest()
        clamped = bytearray(digest[:32])
        clamped[0] &= 248
        clamped[31] &= 127
        clamped[31] |= 64
        self._secret_scalar = int.from_bytes(clamped, "little")

    def __repr__(self) -> str:
        return "Ed25519Crafter(<redacted>)"

    def sign(self, message: bytes) -> bytes:
        """Return the honest RFC 8032 signature R || S of ``message``."""
        return self._signing_key.sign(message).signature

    def sign_with_non_canonical_s(self, message: bytes) -> bytes:
        """Return an honest signature whose S is replaced by S + L, which is still < 2**256."""
        signature = self.sign(message)
        s_value = int.from_bytes(signature[32:], "little") + ED25519_L
        return signature[:32] + s_value.to_bytes(32, "little")

    def sign_with_chosen_r(self, message: bytes, r_encoding: bytes) -> bytes:
        """Return R || S with S = k * a mod L, where k = SHA-512(R || A || M) mod L.

        For R = identity this satisfies the cofactorless equation [S]B = R + [k]A exactly, so
        only an explicit small-order check on R rejects it.
        """
        k = int.from_bytes(
            hashlib.sha512(r_encoding + self.public_key + message).digest(), "little"
        )
        s_value = (k * self._secret_scalar) % ED25519_L
        return r_encoding + s_value.to_bytes(32, "little")


class P256Crafter:
    """Signs ES256 with a fixed P-256 scalar, deterministically (RFC 6979).

    Attributes:
        x: the 32-byte affine x coordinate of the public key.
        y: the 32-byte affine y coordinate of the public key.
    """

    def __init__(self, scalar: int) -> None:
        self._private_key = ec.derive_private_key(scalar, ec.SECP256R1())
        numbers = self._private_key.public_key().public_numbers()
        self.x = numbers.x.to_bytes(32, "big")
        self.y = numbers.y.to_bytes(32, "big")

    def __repr__(self) -> str:
        return "P256Crafter(<redacted>)"

    def sign_der(self, message: bytes) -> bytes:
        """Return the ASN.1 DER ECDSA signature, which JOSE does not accept (RFC 7518 s. 3.4)."""
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        return self._private_key.sign(message, algorithm)

    def sign_rs(self, message: bytes) -> tuple[int, int]:
        """Return the integers (r, s) of a deterministic signature."""
        return decode_dss_signature(self.sign_der(message))

    def sign(self, message: bytes) -> bytes:
        """Return the JOSE ES256 signature: r and s as 32-byte big-endian integers."""
        r_value, s_value = self.sign_rs(message)
        return raw_rs(r_value, s_value)


def raw_rs(r_value: int, s_value: int) -> bytes:
    """Concatenate r and s as 32-byte big-endian integers (RFC 7518 section 3.4)."""
    return r_value.to_bytes(32, "big") + s_value.to_bytes(32, "big")


def der_rs(r_value: int, s_value: int) -> bytes:
    """Encode (r, s) as an ASN.1 DER ECDSA signature."""
    return encode_dss_signature(r_value, s_value)


def hs256(key: bytes, message: bytes) -> bytes:
    """Return HMAC-SHA-256, used to forge the classic alg-confusion token."""
    return hmac.new(key, message, hashlib.sha256).digest()


def ed25519_y_on_curve(y_value: int) -> bool:
    """Tell whether some x satisfies -x^2 + y^2 = 1 + d x^2 y^2 (RFC 8032 section 5.1.3)."""
    p = ED25519_P
    numerator = (y_value * y_value - 1) % p
    denominator = (ED25519_D * y_value * y_value + 1) % p
    x_squared = numerator * pow(denominator, -1, p) % p
    return x_squared == 0 or pow(x_squared, (p - 1) // 2, p) == 1
