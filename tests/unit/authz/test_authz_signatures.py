"""Strict Ed25519 and ES256 checks beyond what the Wycheproof files cover."""

from __future__ import annotations

import nacl.bindings
import nacl.signing
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authz.errors import AuthzError, Reason
from authz.signatures import (
    ed25519_point_is_canonical,
    ed25519_public_key_is_valid,
    verify_ed25519_strict,
    verify_es256_raw,
)
from tests.unit.authz.authz_testkit import es256_raw_signature

P = 2**255 - 19
# A point of order 8 on edwards25519, from the small-order list that libsodium rejects.
ORDER_8_POINT = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")


def test_verify_ed25519_strict_accepts_signature() -> None:
    key = nacl.signing.SigningKey.generate()
    signature = key.sign(b"message").signature

    verify_ed25519_strict(key.verify_key.encode(), b"message", signature)


def test_verify_ed25519_strict_rejects_non_canonical_r() -> None:
    key = nacl.signing.SigningKey.generate()
    signature = key.sign(b"message").signature
    # y = p + 1 encodes the same field element as y = 1, but is not canonical.
    non_canonical = (P + 1).to_bytes(32, "little")

    with pytest.raises(AuthzError, match="non-canonical R"):
        verify_ed25519_strict(key.verify_key.encode(), b"message", non_canonical + signature[32:])


def test_verify_ed25519_strict_rejects_order_8_r() -> None:
    key = nacl.signing.SigningKey.generate()
    signature = key.sign(b"message").signature

    with pytest.raises(AuthzError, match="R of small order"):
        verify_ed25519_strict(key.verify_key.encode(), b"message", ORDER_8_POINT + signature[32:])


def test_verify_ed25519_strict_rejects_order_8_key() -> None:
    with pytest.raises(AuthzError, match="not a canonical point of prime order") as raised:
        verify_ed25519_strict(ORDER_8_POINT, b"message", bytes(64))

    assert raised.value.reason == Reason.TOKEN_SIGNATURE_INVALID


def test_verify_ed25519_strict_uses_given_reason() -> None:
    with pytest.raises(AuthzError) as raised:
        verify_ed25519_strict(bytes(31), b"m", bytes(64), Reason.RECEIPT_SIGNATURE_INVALID)

    assert raised.value.reason == Reason.RECEIPT_SIGNATURE_INVALID


def test_ed25519_point_is_canonical_rejects_y_at_p() -> None:
    assert not ed25519_point_is_canonical(P.to_bytes(32, "little"))


def test_ed25519_public_key_is_valid_rejects_mixed_order_key() -> None:
    key = nacl.signing.SigningKey.generate().verify_key.encode()
    mixed = nacl.bindings.crypto_core_ed25519_add(key, ORDER_8_POINT)

    assert not ed25519_public_key_is_valid(mixed)


def test_verify_es256_raw_rejects_p384_key() -> None:
    key = ec.generate_private_key(ec.SECP384R1())

    with pytest.raises(AuthzError, match="needs a P-256 key"):
        verify_es256_raw(key.public_key(), b"m", bytes(64))


def test_verify_es256_raw_accepts_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    verify_es256_raw(key.public_key(), b"m", es256_raw_signature(key, b"m"))


def test_verify_es256_raw_rejects_other_message() -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(AuthzError, match="does not verify"):
        verify_es256_raw(key.public_key(), b"n", es256_raw_signature(key, b"m"))
