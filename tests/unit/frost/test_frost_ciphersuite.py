"""Encoding checks, hashes and signature verification of the FROST(Ed25519, SHA-512) suite."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from actors.frost.ciphersuite import (
    GROUP_ORDER,
    IDENTITY_ELEMENT,
    base_mul,
    decode_element,
    decode_scalar,
    element_add,
    encode_element,
    scalar_from_int,
    scalar_invert,
    verify_signature,
)
from actors.frost.errors import InvalidElement, InvalidScalar, InvalidSignature
from actors.frost.keys import decode_identifier, encode_identifier

from .conftest import load_vector

# An order-8 point of edwards25519 (x != 0); every small-order encoding must be rejected.
SMALL_ORDER_POINT = bytes.fromhex(
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
)
# y = p (= 2**255 - 19) is a non-canonical spelling of y = 0.
NON_CANONICAL_POINT = (2**255 - 19).to_bytes(32, "little")


def test_decode_element_rejects_zf_torsion_element() -> None:
    invalid = bytes.fromhex(
        load_vector("zf-frost-ed25519-elements.json")["elements"]["invalid_element"]
    )
    with pytest.raises(InvalidElement, match="prime-order subgroup"):
        decode_element(invalid)


def test_decode_element_rejects_identity() -> None:
    with pytest.raises(InvalidElement, match="non-identity"):
        decode_element(IDENTITY_ELEMENT)


def test_decode_element_rejects_small_order_point() -> None:
    with pytest.raises(InvalidElement, match="small-order"):
        decode_element(SMALL_ORDER_POINT)


def test_decode_element_rejects_non_canonical_encoding() -> None:
    with pytest.raises(InvalidElement, match="canonical"):
        decode_element(NON_CANONICAL_POINT)


def test_decode_element_rejects_wrong_length() -> None:
    with pytest.raises(InvalidElement, match="31 bytes, expected a 32-byte point"):
        decode_element(bytes(31))


def test_encode_element_rejects_identity() -> None:
    with pytest.raises(InvalidElement, match="cannot serialize the identity"):
        encode_element(IDENTITY_ELEMENT)


def test_zf_samples_elements_are_base_point_multiples() -> None:
    samples = load_vector("zf-frost-ed25519-samples.json")
    assert base_mul(scalar_from_int(1)).hex() == samples["element1"]
    assert base_mul(scalar_from_int(2)).hex() == samples["element2"]
    assert decode_element(bytes.fromhex(samples["element2"])).hex() == samples["element2"]


def test_zf_samples_scalar_is_inverse_of_three() -> None:
    samples = load_vector("zf-frost-ed25519-samples.json")
    assert scalar_invert(scalar_from_int(3)).hex() == samples["scalar1"]


def test_zf_samples_identifier_encoding() -> None:
    samples = load_vector("zf-frost-ed25519-samples.json")
    assert encode_identifier(42).hex() == samples["identifier"]
    assert decode_identifier(bytes.fromhex(samples["identifier"])) == 42


def test_decode_scalar_accepts_largest_canonical_value() -> None:
    largest = (GROUP_ORDER - 1).to_bytes(32, "little")
    assert decode_scalar(largest) == largest


def test_decode_scalar_rejects_group_order() -> None:
    with pytest.raises(InvalidScalar, match="not canonical"):
        decode_scalar(GROUP_ORDER.to_bytes(32, "little"))


def test_decode_scalar_rejects_all_ones() -> None:
    with pytest.raises(InvalidScalar, match="not canonical"):
        decode_scalar(b"\xff" * 32)


def test_decode_scalar_rejects_wrong_length() -> None:
    with pytest.raises(InvalidScalar, match="33 bytes, expected 32 bytes"):
        decode_scalar(bytes(33))


def test_scalar_invert_rejects_zero() -> None:
    with pytest.raises(InvalidScalar, match="cannot invert the zero scalar"):
        scalar_invert(bytes(32))


def _ed25519_signature(message: bytes) -> tuple[bytes, bytes]:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private_key.sign(message), public_key


def test_verify_signature_accepts_rfc8032_signature() -> None:
    signature, public_key = _ed25519_signature(b"message")
    verify_signature(b"message", signature, public_key)


def test_verify_signature_rejects_other_message() -> None:
    signature, public_key = _ed25519_signature(b"message")
    with pytest.raises(InvalidSignature, match="does not verify"):
        verify_signature(b"messagf", signature, public_key)


def test_verify_signature_rejects_non_canonical_s() -> None:
    signature, public_key = _ed25519_signature(b"message")
    s_plus_l = int.from_bytes(signature[32:], "little") + GROUP_ORDER
    malleated = signature[:32] + s_plus_l.to_bytes(32, "little")
    with pytest.raises(InvalidSignature, match="malformed"):
        verify_signature(b"message", malleated, public_key)


def test_verify_signature_rejects_wrong_length() -> None:
    signature, public_key = _ed25519_signature(b"message")
    with pytest.raises(InvalidSignature, match="63 bytes, expected 64 bytes"):
        verify_signature(b"message", signature[:63], public_key)


def test_verify_signature_rejects_small_order_public_key() -> None:
    signature, _ = _ed25519_signature(b"message")
    with pytest.raises(InvalidSignature, match="public key is malformed"):
        verify_signature(b"message", signature, SMALL_ORDER_POINT)


def test_element_add_doubles_base_point() -> None:
    one_b = base_mul(scalar_from_int(1))
    assert element_add(one_b, one_b) == base_mul(scalar_from_int(2))


def _wycheproof_cases() -> list[tuple[int, bytes, bytes, bytes, bool]]:
    vector = load_vector("wycheproof-ed25519_test.json")
    cases = [
        (
            case["tcId"],
            bytes.fromhex(case["msg"]),
            bytes.fromhex(case["sig"]),
            bytes.fromhex(group["publicKey"]["pk"]),
            case["result"] == "valid",
        )
        for group in vector["testGroups"]
        for case in group["tests"]
    ]
    assert len(cases) == vector["numberOfTests"]
    return cases


@pytest.mark.parametrize(
    ("tc_id", "message", "signature", "public_key", "valid"),
    _wycheproof_cases(),
    ids=lambda value: str(value) if isinstance(value, int) else "",
)
def test_verify_signature_agrees_with_wycheproof(
    tc_id: int, message: bytes, signature: bytes, public_key: bytes, valid: bool
) -> None:
    if valid:
        verify_signature(message, signature, public_key)
    else:
        with pytest.raises(InvalidSignature):
            verify_signature(message, signature, public_key)
