"""Token verification: every refusal reason with a concrete malformed token."""

from __future__ import annotations

import dataclasses

import pytest

from authz.errors import AuthzError, Reason
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact
from authz.keys import GroupKey
from authz.verify import verify_token
from tests.unit.authz.authz_testkit import AUDIENCE, DROP, ISSUER, NOW, Issuer, replace_segment

L = 2**252 + 27742317777372353535851937790883648493
IDENTITY_POINT = (1).to_bytes(32, "little")


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


def _verify(issuer: Issuer, token: str, now: int = NOW, **kwargs: object):
    return verify_token(token, issuer.key_set(), now, AUDIENCE, ISSUER, **kwargs)


def _reason(issuer: Issuer, token: str, now: int = NOW, **kwargs: object) -> Reason:
    with pytest.raises(AuthzError) as raised:
        _verify(issuer, token, now, **kwargs)
    return raised.value.reason


def test_verify_token_accepts_valid_token(issuer: Issuer) -> None:
    verified = _verify(issuer, issuer.token(scopes=("orders:read", "orders:write")))

    assert verified.sub == "alice@example.com"
    assert verified.scopes == ("orders:read", "orders:write")
    assert verified.kid == issuer.kid
    assert verified.exp == NOW + 900


def test_verified_token_repr_hides_token(issuer: Issuer) -> None:
    token = issuer.token()

    assert token not in repr(_verify(issuer, token))


@pytest.mark.parametrize("alg", ["none", "NONE", "None", "HS256", "Ed448", "ES256", "Ed25519"])
def test_verify_token_rejects_alg(issuer: Issuer, alg: str) -> None:
    assert _reason(issuer, issuer.token_with({"alg": alg})) == Reason.TOKEN_ALG_UNSUPPORTED


def test_verify_token_rejects_alg_none_with_empty_signature(issuer: Issuer) -> None:
    token = replace_segment(issuer.token_with({"alg": "none"}), 2, "")

    assert _reason(issuer, token) == Reason.TOKEN_ALG_UNSUPPORTED


def test_verify_token_rejects_missing_alg(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token_with({"alg": DROP})) == Reason.TOKEN_ALG_UNSUPPORTED


@pytest.mark.parametrize(
    ("member", "value"),
    [
        (
            "jwk",
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        ),
        ("jku", "https://attacker.test/jwks.json"),
        ("x5u", "https://attacker.test/cert.pem"),
        ("x5c", ["MIIB"]),
        ("crit", ["exp"]),
        ("crit", []),
        ("zip", "DEF"),
        ("enc", "A256GCM"),
        ("b64", False),
        ("cty", "JWT"),
    ],
)
def test_verify_token_rejects_header_member(issuer: Issuer, member: str, value: object) -> None:
    token = issuer.token_with({member: value})

    assert _reason(issuer, token) == Reason.TOKEN_HEADER_INVALID


@pytest.mark.parametrize("typ", ["jwt", "at+jwt", "JOSE", DROP])
def test_verify_token_rejects_typ(issuer: Issuer, typ: object) -> None:
    assert _reason(issuer, issuer.token_with({"typ": typ})) == Reason.TOKEN_HEADER_INVALID


@pytest.mark.parametrize("kid", [DROP, "", 7, None])
def test_verify_token_rejects_bad_kid(issuer: Issuer, kid: object) -> None:
    assert _reason(issuer, issuer.token_with({"kid": kid})) == Reason.TOKEN_HEADER_INVALID


def test_verify_token_rejects_unknown_kid(issuer: Issuer) -> None:
    # Change the last character to a different one; "A" alone would keep a kid ending in "A".
    last = "B" if issuer.kid.endswith("A") else "A"
    token = issuer.token_with({"kid": issuer.kid[:-1] + last})

    assert _reason(issuer, token) == Reason.TOKEN_KID_UNKNOWN


def test_verify_token_rejects_token_of_other_group_key(issuer: Issuer) -> None:
    other = Issuer()

    assert _reason(issuer, other.token()) == Reason.TOKEN_KID_UNKNOWN


def test_verify_token_rejects_receipt_as_token(issuer: Issuer) -> None:
    receipt = issuer.receipt(issuer.token())

    assert _reason(issuer, receipt) == Reason.TOKEN_HEADER_INVALID


def test_verify_token_rejects_duplicate_header_member(issuer: Issuer) -> None:
    header = f'{{"alg":"EdDSA","alg":"EdDSA","typ":"JWT","kid":"{issuer.kid}"}}'.encode()
    token = issuer.sign_token_raw(header, b'{"iss":"x"}')

    assert _reason(issuer, token) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_duplicate_claim(issuer: Issuer) -> None:
    good = issuer.token()
    payload = b64url_decode(good.split(".")[1])
    duplicated = payload[:-1] + b',"aud":"other-api"}'
    token = issuer.sign_token_raw(b64url_decode(good.split(".")[0]), duplicated)

    assert _reason(issuer, token) == Reason.TOKEN_CLAIMS_INVALID


@pytest.mark.parametrize(
    "token_shape",
    ["a.b.c.d.e", "a.b", "a.b.c.d", "..", "abc", "e30.e30"],
    ids=["five-segments-jwe", "two", "four", "dots", "one", "no-signature"],
)
def test_verify_token_rejects_shape(issuer: Issuer, token_shape: str) -> None:
    assert _reason(issuer, token_shape) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_header_not_json(issuer: Issuer) -> None:
    token = replace_segment(issuer.token(), 0, b64url_encode(b"alg=EdDSA"))

    assert _reason(issuer, token) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_jwe(issuer: Issuer) -> None:
    header = b64url_encode(b'{"alg":"dir","enc":"A256GCM","zip":"DEF"}')

    assert _reason(issuer, f"{header}..aXY.Y2lwaGVy.dGFn") == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_padding(issuer: Issuer) -> None:
    token = issuer.token()

    assert _reason(issuer, token + "==") == Reason.TOKEN_MALFORMED


@pytest.mark.parametrize(("url_safe", "standard"), [("-", "+"), ("_", "/")])
def test_verify_token_rejects_standard_base64_alphabet(
    issuer: Issuer, url_safe: str, standard: str
) -> None:
    # Find a token whose signature contains the URL-safe character, then spell it the
    # standard base64 way.
    for index in range(64):
        token = issuer.token(jti=f"jti-alphabet-{index}")
        if url_safe in token.split(".")[2]:
            break
    else:
        pytest.fail(f"no signature with {url_safe!r} in 64 tries")
    bad = replace_segment(token, 2, token.split(".")[2].replace(url_safe, standard))

    assert _reason(issuer, bad) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_nonzero_unused_bits(issuer: Issuer) -> None:
    token = issuer.token()
    signature = token.split(".")[2]
    # 64 bytes encode to 86 characters, and the last character carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    bad = replace_segment(token, 2, signature[:-1] + alphabet[last | 1])

    assert _reason(issuer, bad) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_non_ascii(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token() + "\u00e9") == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_oversized_token(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token(jti="j" * 9000)) == Reason.TOKEN_MALFORMED


def test_verify_token_rejects_empty_token(issuer: Issuer) -> None:
    assert _reason(issuer, "") == Reason.TOKEN_MISSING


def test_verify_token_rejects_tampered_claims(issuer: Issuer) -> None:
    token = issuer.token()
    forged = issuer.claims(scopes=("orders:admin",)).to_json()
    bad = replace_segment(token, 1, b64url_encode(json_dumps_compact(forged)))

    assert _reason(issuer, bad) == Reason.TOKEN_SIGNATURE_INVALID


def test_verify_token_rejects_signature_of_wrong_length(issuer: Issuer) -> None:
    token = issuer.token()
    short = b64url_encode(b64url_decode(token.split(".")[2])[:63])

    assert _reason(issuer, replace_segment(token, 2, short)) == Reason.TOKEN_SIGNATURE_INVALID


def test_verify_token_rejects_non_canonical_s(issuer: Issuer) -> None:
    token = issuer.token()
    signature = b64url_decode(token.split(".")[2])
    s = int.from_bytes(signature[32:], "little")
    # S + L satisfies the verification equation too; RFC 8032 requires S < L.
    malleated = signature[:32] + (s + L).to_bytes(32, "little")

    bad = replace_segment(token, 2, b64url_encode(malleated))

    assert _reason(issuer, bad) == Reason.TOKEN_SIGNATURE_INVALID


def test_verify_token_rejects_small_order_r(issuer: Issuer) -> None:
    token = issuer.token()
    signature = b64url_decode(token.split(".")[2])
    bad = replace_segment(token, 2, b64url_encode(IDENTITY_POINT + signature[32:]))

    assert _reason(issuer, bad) == Reason.TOKEN_SIGNATURE_INVALID


def test_verify_token_rejects_small_order_key(issuer: Issuer) -> None:
    # With the identity as public key and R = identity, S = 0 satisfies the cofactorless
    # equation for every message unless the key is rejected.
    keys = issuer.key_set()
    keys = dataclasses.replace(keys, group_keys={issuer.kid: GroupKey(issuer.kid, IDENTITY_POINT)})
    token = replace_segment(issuer.token(), 2, b64url_encode(IDENTITY_POINT + bytes(32)))

    with pytest.raises(AuthzError) as raised:
        verify_token(token, keys, NOW, AUDIENCE, ISSUER)

    assert raised.value.reason == Reason.TOKEN_SIGNATURE_INVALID


@pytest.mark.parametrize("claim", ["iat", "nbf", "exp"])
@pytest.mark.parametrize("value", ["1800000000", 1800000000.0, 1.8e9, True, None])
def test_verify_token_rejects_non_integer_time(issuer: Issuer, claim: str, value: object) -> None:
    assert _reason(issuer, issuer.token_with(**{claim: value})) == Reason.TOKEN_CLAIMS_INVALID


@pytest.mark.parametrize("value", [2**53, -1])
def test_verify_token_rejects_time_outside_safe_range(issuer: Issuer, value: int) -> None:
    assert _reason(issuer, issuer.token_with(exp=value)) == Reason.TOKEN_CLAIMS_INVALID


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "scope", "iat", "nbf", "exp", "jti"])
def test_verify_token_rejects_missing_claim(issuer: Issuer, claim: str) -> None:
    assert _reason(issuer, issuer.token_with(**{claim: DROP})) == Reason.TOKEN_CLAIMS_INVALID


def test_verify_token_rejects_aud_list(issuer: Issuer) -> None:
    token = issuer.token_with(aud=[AUDIENCE])

    assert _reason(issuer, token) == Reason.TOKEN_CLAIMS_INVALID


def test_verify_token_rejects_other_audience(issuer: Issuer) -> None:
    token = issuer.token(aud="billing-api")

    assert _reason(issuer, token) == Reason.TOKEN_AUDIENCE_MISMATCH


@pytest.mark.parametrize("iss", ["https://mint.ztmint.test/", "https://MINT.ztmint.test", "x"])
def test_verify_token_rejects_wrong_issuer(issuer: Issuer, iss: str) -> None:
    assert _reason(issuer, issuer.token(iss=iss)) == Reason.TOKEN_ISSUER_MISMATCH


@pytest.mark.parametrize("scope", ["orders:read  orders:write", " orders:read", 'a"b', "a\\b"])
def test_verify_token_rejects_bad_scope_string(issuer: Issuer, scope: str) -> None:
    assert _reason(issuer, issuer.token_with(scope=scope)) == Reason.TOKEN_CLAIMS_INVALID


def test_verify_token_rejects_scope_list(issuer: Issuer) -> None:
    token = issuer.token_with(scope=["orders:read"])

    assert _reason(issuer, token) == Reason.TOKEN_CLAIMS_INVALID


def test_verify_token_rejects_expired(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token(), now=NOW + 900, leeway=0) == Reason.TOKEN_EXPIRED


def test_verify_token_accepts_expiry_within_leeway(issuer: Issuer) -> None:
    verified = _verify(issuer, issuer.token(), now=NOW + 900 + 9, leeway=10)

    assert verified.exp == NOW + 900


def test_verify_token_rejects_expiry_past_leeway(issuer: Issuer) -> None:
    reason = _reason(issuer, issuer.token(), now=NOW + 900 + 10, leeway=10)

    assert reason == Reason.TOKEN_EXPIRED


def test_verify_token_rejects_nbf_in_future(issuer: Issuer) -> None:
    token = issuer.token_with(nbf=NOW + 60)

    assert _reason(issuer, token, leeway=30) == Reason.TOKEN_NOT_YET_VALID


def test_verify_token_rejects_iat_in_future(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token(), now=NOW - 31, leeway=30) == Reason.TOKEN_NOT_YET_VALID


def test_verify_token_rejects_ttl_above_maximum(issuer: Issuer) -> None:
    assert _reason(issuer, issuer.token(ttl=3601)) == Reason.TOKEN_TTL_EXCEEDED


def test_verify_token_rejects_ttl_above_configured_maximum(issuer: Issuer) -> None:
    reason = _reason(issuer, issuer.token(ttl=900), max_ttl=600)

    assert reason == Reason.TOKEN_TTL_EXCEEDED


def test_verify_token_rejects_exp_before_iat(issuer: Issuer) -> None:
    token = issuer.token_with(exp=NOW - 1)

    assert _reason(issuer, token, now=NOW - 5) == Reason.TOKEN_CLAIMS_INVALID


@pytest.mark.parametrize("leeway", [-1, 31])
def test_verify_token_rejects_leeway_out_of_range(issuer: Issuer, leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway must be 0 to 30 seconds"):
        _verify(issuer, issuer.token(), leeway=leeway)


def test_authz_error_carries_reason_and_detail(issuer: Issuer) -> None:
    with pytest.raises(AuthzError) as raised:
        _verify(issuer, issuer.token(aud="billing-api"))

    assert raised.value.reason == Reason.TOKEN_AUDIENCE_MISMATCH
    assert str(raised.value) == "token_audience_mismatch: aud 'billing-api' is not 'orders-api'"
