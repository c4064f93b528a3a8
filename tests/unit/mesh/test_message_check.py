"""The signer's message check: only token signing inputs for the group key are signed."""

from __future__ import annotations

import os

import pytest
from mesh_unit_support import token_message

from actors.errors import MessageRejected
from actors.message_check import check_signer_set, check_token_signing_input
from authz.jose import b64url_encode, json_dumps_compact
from authz.jwk import okp_ed25519_jwk, thumbprint

GROUP_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def _message(header: dict[str, object], claims: dict[str, object]) -> bytes:
    return b".".join(b64url_encode(json_dumps_compact(part)).encode() for part in (header, claims))


def _header(**changes: object) -> dict[str, object]:
    header: dict[str, object] = {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": thumbprint(okp_ed25519_jwk(GROUP_KEY)),
    }
    header.update(changes)
    return header


def test_check_accepts_token_signing_input() -> None:
    check_token_signing_input(token_message(GROUP_KEY), GROUP_KEY)


@pytest.mark.parametrize("ttl", [300, 3600])
def test_check_accepts_lifetime_bounds(ttl: int) -> None:
    check_token_signing_input(token_message(GROUP_KEY, ttl=ttl), GROUP_KEY)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"plain bytes", "expected header.claims"),
        ("é.é".encode(), "not ASCII"),
        (b"a.b.c", "3 segments"),
        (b"!!.!!", "not base64url JSON"),
        (_message(_header(alg="none"), {"iat": 0, "exp": 900}), "alg='none'"),
        (_message(_header(typ="at+jwt"), {"iat": 0, "exp": 900}), "typ='at\\+jwt'"),
        (_message(_header(kid="other"), {"iat": 0, "exp": 900}), "does not match"),
        (_message(_header(jku="https://x"), {"iat": 0, "exp": 900}), "does not match"),
        (_message(_header(), {"iat": 0, "exp": 299}), "exp - iat = 299 s"),
        (_message(_header(), {"iat": 0, "exp": 3601}), "exp - iat = 3601 s"),
        (_message(_header(), {"iat": "0", "exp": 900}), "integer iat and exp"),
        (_message(_header(), {"iat": True, "exp": 900}), "integer iat and exp"),
        (_message(_header(), {"exp": 900}), "integer iat and exp"),
    ],
)
def test_check_rejects_non_token_message(message: bytes, expected: str) -> None:
    with pytest.raises(MessageRejected, match=expected):
        check_token_signing_input(message, GROUP_KEY)


def test_check_rejects_token_for_other_group_key() -> None:
    with pytest.raises(MessageRejected, match="does not match"):
        check_token_signing_input(token_message(os.urandom(32)), GROUP_KEY)


def test_check_signer_set_rejects_other_set() -> None:
    with pytest.raises(MessageRejected, match="expected the same set"):
        check_signer_set({"ztm": {"signers": [1, 3]}}, (1, 2))


def test_check_signer_set_rejects_non_integer_signers() -> None:
    with pytest.raises(MessageRejected, match="expected the same set"):
        check_signer_set({"ztm": {"signers": ["1", 2]}}, (1, 2))


def test_check_signer_set_accepts_same_set() -> None:
    check_signer_set({"ztm": {"signers": [2, 1]}}, (1, 2))
