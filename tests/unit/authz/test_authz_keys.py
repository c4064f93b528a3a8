"""Strict JWKS loading into a KeySet, and receipt key rotation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from authz.errors import AuthzError, Reason
from authz.jose import b64url_encode
from authz.jwk import okp_ed25519_jwk, thumbprint
from authz.keys import KeySetError, key_set_from_jwks, load_key_set_file, parse_jwks
from tests.unit.authz.authz_testkit import NOW, Issuer


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _jwks(issuer: Issuer) -> dict[str, Any]:
    return copy.deepcopy(issuer.jwks())


def test_key_set_from_jwks_loads_both_kinds(issuer: Issuer) -> None:
    keys = key_set_from_jwks(issuer.jwks())

    assert keys.group_key(issuer.kid).public_key == issuer.group_key.verify_key.encode()
    assert keys.receipt_key(issuer.receipt_kid).retired_at is None


def test_group_key_lookup_rejects_unknown_kid(issuer: Issuer) -> None:
    with pytest.raises(AuthzError) as raised:
        key_set_from_jwks(issuer.jwks()).group_key("nope")

    assert raised.value.reason == Reason.TOKEN_KID_UNKNOWN


def test_receipt_key_lookup_rejects_unknown_kid(issuer: Issuer) -> None:
    with pytest.raises(AuthzError) as raised:
        key_set_from_jwks(issuer.jwks()).receipt_key("nope")

    assert raised.value.reason == Reason.RECEIPT_KID_UNKNOWN


@pytest.mark.parametrize(
    ("index", "member", "value", "message"),
    [
        (0, "alg", "ES256", "crv Ed25519 and alg EdDSA"),
        (0, "alg", None, "crv Ed25519 and alg EdDSA"),
        (0, "crv", "Ed448", "crv Ed25519 and alg EdDSA"),
        (0, "kty", "RSA", "expected OKP"),
        (0, "kty", "oct", "expected OKP"),
        (0, "d", "AAAA", "unexpected members"),
        (0, "x5c", ["MIIB"], "unexpected members"),
        (0, "use", "enc", "expected sig"),
        (0, "kid", "", "non-empty kid"),
        (0, "kid", "not-the-thumbprint", "RFC 7638 thumbprint"),
        (0, "x", "AAAA", "not a canonical Ed25519 point"),
        (0, "x", "A" * 42 + "B", "not canonical base64url"),
        (1, "alg", "ES384", "crv P-256 and alg ES256"),
        (1, "crv", "P-384", "crv P-256 and alg ES256"),
        (1, "d", "AAAA", "unexpected members"),
        (1, "y", b64url_encode(b"\x01" * 32), "not a point on P-256"),
        (1, "y", b64url_encode(b"\x01" * 31), "32 bytes each"),
    ],
)
def test_key_set_from_jwks_rejects_bad_key(
    issuer: Issuer, index: int, member: str, value: object, message: str
) -> None:
    document = _jwks(issuer)
    if value is None:
        del document["keys"][index][member]
    else:
        document["keys"][index][member] = value

    with pytest.raises(KeySetError, match=message):
        key_set_from_jwks(document)


def test_key_set_from_jwks_rejects_small_order_group_key() -> None:
    identity = (1).to_bytes(32, "little")
    jwk = okp_ed25519_jwk(identity)
    document = {"keys": [{**jwk, "kid": thumbprint(jwk), "alg": "EdDSA", "use": "sig"}]}

    with pytest.raises(KeySetError, match="not a canonical Ed25519 point of prime order"):
        key_set_from_jwks(document)


def test_key_set_from_jwks_rejects_duplicate_kid(issuer: Issuer) -> None:
    document = _jwks(issuer)
    document["keys"].append(document["keys"][1])

    with pytest.raises(KeySetError, match="two keys with kid"):
        key_set_from_jwks(document)


@pytest.mark.parametrize("document", [{}, {"keys": {}}, {"keys": [1]}, []])
def test_key_set_from_jwks_rejects_bad_document(document: Any) -> None:
    with pytest.raises(KeySetError):
        key_set_from_jwks(document)


def test_parse_jwks_rejects_duplicate_members() -> None:
    with pytest.raises(KeySetError, match="not a valid JSON object"):
        parse_jwks(b'{"keys":[],"keys":[]}')


def test_parse_jwks_rejects_oversized_document() -> None:
    with pytest.raises(KeySetError, match="more than the limit"):
        parse_jwks(b" " * (64 * 1024 + 1))


def test_load_key_set_file_reads_jwks(issuer: Issuer, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))

    keys = load_key_set_file(path)

    assert set(keys.group_keys) == {issuer.kid}
    assert set(keys.receipt_keys) == {issuer.receipt_kid}


def test_load_key_set_file_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeySetError, match="cannot read JWKS file"):
        load_key_set_file(tmp_path / "absent.json")


def test_rotated_keeps_dropped_receipt_key_as_retired(issuer: Issuer) -> None:
    newer = Issuer(group_key=issuer.group_key, receipt_kid="kms-key-v2")

    keys = key_set_from_jwks(issuer.jwks()).rotated(newer.jwks(), now=NOW)

    assert keys.receipt_keys[issuer.receipt_kid].retired_at == NOW
    assert keys.receipt_keys["kms-key-v2"].retired_at is None


def test_rotated_keeps_first_retirement_time(issuer: Issuer) -> None:
    newer = Issuer(group_key=issuer.group_key, receipt_kid="kms-key-v2")
    keys = key_set_from_jwks(issuer.jwks()).rotated(newer.jwks(), now=NOW)

    keys = keys.rotated(newer.jwks(), now=NOW + 100)

    assert keys.receipt_keys[issuer.receipt_kid].retired_at == NOW


def test_rotated_forgets_receipt_key_after_grace(issuer: Issuer) -> None:
    newer = Issuer(group_key=issuer.group_key, receipt_kid="kms-key-v2")
    keys = key_set_from_jwks(issuer.jwks()).rotated(newer.jwks(), now=NOW)

    keys = keys.rotated(newer.jwks(), now=NOW + keys.receipt_grace_seconds)

    assert issuer.receipt_kid not in keys.receipt_keys


def test_rotated_drops_withdrawn_group_key(issuer: Issuer) -> None:
    newer = Issuer(receipt_key=issuer.receipt_key)

    keys = key_set_from_jwks(issuer.jwks()).rotated(newer.jwks(), now=NOW)

    assert set(keys.group_keys) == {newer.kid}
