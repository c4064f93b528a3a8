"""Token cases of the shared vectors: valid tokens, then one class of fault after another."""

from __future__ import annotations

from crafting import (
    IDENTITY,
    IDENTITY_NON_CANONICAL,
    IDENTITY_SIGN_BIT,
    ORDER_8_POINT,
    b64url_json,
    hs256,
    set_unused_bits,
    std_b64_padded,
)
from fixtures import (
    ATTACKER,
    AUDIENCE,
    GROUP,
    GROUP_KID,
    ISSUED_AT,
    ISSUER,
    LEEWAY,
    MAX_TOKEN_CHARS,
    MAX_TTL,
    NOW,
    RECEIPT_KID,
    TTL,
    bad,
    claims_json,
    header_json,
    ok_token,
    receipt_for,
    signed,
    token_from_json,
    valid_token,
)

from authz.formats import assemble_compact
from authz.jose import b64url_encode, json_dumps_compact
from authz.jwk import okp_ed25519_jwk, thumbprint


def token_cases() -> list[dict]:
    """Build every token case: valid ones first, then one class of fault after another."""
    return (
        valid_token_cases()
        + structure_token_cases()
        + header_token_cases()
        + signature_token_cases()
        + payload_token_cases()
        + claim_token_cases()
    )


def valid_token_cases() -> list[dict]:
    """Build tokens that must verify, including the edges of the time windows."""
    cases = [
        ok_token(
            "valid", "A token exactly as the mint issues it.", valid_token("t-valid"), "t-valid"
        ),
        ok_token(
            "valid_utf8_sub",
            "The subject holds a non-ASCII character written as raw UTF-8.",
            valid_token("t-utf8", sub="jos\u00e9@example.com"),
            "t-utf8",
            sub="jos\u00e9@example.com",
        ),
        ok_token(
            "valid_escaped_sub",
            "The subject holds a JSON \\u escape that decodes to the same string.",
            token_from_json(
                header_json(),
                claims_json("t-escaped", sub="JOSE_PLACEHOLDER").replace(
                    "JOSE_PLACEHOLDER", "jos\\u00e9@example.com"
                ),
            ),
            "t-escaped",
            sub="jos\u00e9@example.com",
        ),
        ok_token(
            "valid_header_member_order",
            "Header members in another order: JSON member order carries no meaning.",
            token_from_json(
                json_dumps_compact({"kid": GROUP_KID, "typ": "JWT", "alg": "EdDSA"}).decode(),
                claims_json("t-order"),
            ),
            "t-order",
        ),
        ok_token(
            "valid_expiry_edge",
            "now is one second before exp + leeway, the last accepted second.",
            valid_token("t-exp-edge", iat=NOW - 900, nbf=NOW - 900, exp=NOW - LEEWAY + 1),
            "t-exp-edge",
        ),
        ok_token(
            "valid_not_before_edge",
            "nbf - leeway equals now, the first accepted second.",
            valid_token("t-nbf-edge", iat=NOW + LEEWAY, nbf=NOW + LEEWAY, exp=NOW + 600),
            "t-nbf-edge",
        ),
        ok_token(
            "valid_ttl_at_max",
            "exp - iat equals max_ttl exactly.",
            valid_token("t-ttl-max", exp=ISSUED_AT + MAX_TTL),
            "t-ttl-max",
        ),
        ok_token(
            "valid_single_scope",
            "One scope.",
            valid_token("t-one-scope", scope="payments:read"),
            "t-one-scope",
            scope="payments:read",
        ),
    ]
    return cases


def structure_token_cases() -> list[dict]:
    """Build tokens broken at the compact-serialization and base64url level."""
    token = valid_token("t-structure")
    header_segment, payload_segment, signature_segment = token.split(".")
    signature = GROUP.sign(f"{header_segment}.{payload_segment}".encode("ascii"))
    header_bits = set_unused_bits(header_segment)
    payload_bits_source = _payload_with_unused_bits()
    standard_signature = std_b64_padded(signature)
    if not {"+", "/"} & set(standard_signature):
        raise AssertionError("the standard base64 signature has no '+' or '/'; pick another jti")
    return [
        bad("empty", "The empty string.", "token_missing", token=""),
        bad(
            "jwe_five_segments",
            "Five segments, the shape of a JWE.",
            "token_malformed",
            token=f"{header_segment}..{payload_segment}.{signature_segment}.AAAA",
        ),
        bad(
            "two_segments",
            "No signature segment.",
            "token_malformed",
            token=f"{header_segment}.{payload_segment}",
        ),
        bad("four_segments", "An extra segment.", "token_malformed", token=f"{token}.AAAA"),
        bad(
            "too_long",
            f"A validly signed token of more than {MAX_TOKEN_CHARS} characters.",
            "token_malformed",
            token=token_from_json(header_json(), claims_json("t-long", pad="x" * MAX_TOKEN_CHARS)),
        ),
        bad(
            "non_ascii",
            "A non-ASCII character after the signature.",
            "token_malformed",
            token=f"{token}\u00e9",
        ),
        bad("leading_space", "A space before the token.", "token_malformed", token=f" {token}"),
        bad(
            "trailing_newline", "A newline after the token.", "token_malformed", token=f"{token}\n"
        ),
        bad(
            "signature_padded",
            "The signature segment carries '=' padding.",
            "token_malformed",
            token=f"{header_segment}.{payload_segment}.{signature_segment}==",
        ),
        bad(
            "signature_standard_alphabet",
            "The signature in standard base64: padding, and '+' or '/' in place of '-' or '_'.",
            "token_malformed",
            token=f"{header_segment}.{payload_segment}.{standard_signature}",
        ),
        bad(
            "signature_unused_bits",
            "The last signature character has a non-zero unused bit.",
            "token_malformed",
            token=f"{header_segment}.{payload_segment}.{set_unused_bits(signature_segment)}",
        ),
        bad(
            "header_unused_bits",
            "The header segment has a non-zero unused bit and is signed as sent.",
            "token_malformed",
            token=signed(header_bits, payload_segment),
        ),
        bad(
            "payload_unused_bits",
            "The payload segment has a non-zero unused bit and is signed as sent.",
            "token_malformed",
            token=signed(header_segment, payload_bits_source),
        ),
    ]


def _payload_with_unused_bits() -> str:
    """Find a jti whose payload segment length leaves unused bits, then set one."""
    for length in range(8, 12):
        segment = b64url_json(claims_json("t-bits-" + "x" * length))
        if len(segment) % 4 in (2, 3):
            return set_unused_bits(segment)
    raise AssertionError("no payload length with unused bits found")


def header_token_cases() -> list[dict]:
    """Build tokens whose header is rejected: algorithm, members, typ and kid."""
    payload = claims_json("t-header")
    payload_segment = b64url_json(payload)
    cases = [
        bad(
            "header_duplicate_alg",
            "The header names alg twice; a last-wins parser would read none.",
            "token_malformed",
            token=token_from_json(header_json()[:-1] + ',"alg":"none"}', payload),
        ),
        bad(
            "header_not_object",
            "The header is a JSON array.",
            "token_malformed",
            token=token_from_json("[]", payload),
        ),
    ]
    for spelling in ("none", "None", "NONE", "nOnE"):
        header_segment = b64url_json(header_json(alg=spelling))
        cases.append(
            bad(
                f"alg_{spelling}",
                f"alg {spelling!r} with an empty signature.",
                "token_alg_unsupported",
                token=f"{header_segment}.{payload_segment}.",
            )
        )

    hmac_input = f"{b64url_json(header_json(alg='HS256'))}.{payload_segment}".encode()
    cases.append(
        bad(
            "alg_hs256_key_confusion",
            "HS256 keyed with the group public key bytes, the classic algorithm confusion.",
            "token_alg_unsupported",
            token=assemble_compact(hmac_input, hs256(GROUP.public_key, hmac_input)),
        )
    )
    for alg in ("Ed448", "Ed25519", "eddsa", "ES256"):
        cases.append(
            bad(
                f"alg_{alg.lower()}_rejected" if alg != "eddsa" else "alg_lowercase_eddsa",
                f"alg {alg!r}: only the exact string EdDSA is accepted.",
                "token_alg_unsupported",
                token=token_from_json(header_json(alg=alg), payload),
            )
        )

    attacker_jwk = okp_ed25519_jwk(ATTACKER.public_key)
    cases.append(
        bad(
            "header_embedded_jwk",
            "The header embeds the attacker's key as jwk and is signed with it.",
            "token_header_invalid",
            token=token_from_json(header_json(jwk=attacker_jwk), payload, ATTACKER),
        )
    )
    for member, value in (
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIBszCCAVmgAwIBAgIUE"]),
        ("crit", ["exp"]),
        ("zip", "DEF"),
        ("cty", "JWT"),
        ("b64", False),
    ):
        cases.append(
            bad(
                f"header_member_{member}",
                f"The header carries {member!r}, which is not one of alg, typ, kid.",
                "token_header_invalid",
                token=token_from_json(header_json(**{member: value}), payload),
            )
        )

    for name, description, overrides, reason in (
        ("typ_missing", "No typ member.", {"typ": None}, "token_header_invalid"),
        ("typ_at_jwt", "typ at+jwt.", {"typ": "at+jwt"}, "token_header_invalid"),
        ("typ_lowercase", "typ jwt in lower case.", {"typ": "jwt"}, "token_header_invalid"),
        (
            "typ_receipt",
            "The receipt's typ on an EdDSA token.",
            {"typ": "kms-receipt+jwt"},
            "token_header_invalid",
        ),
        ("alg_missing", "No alg member.", {"alg": None}, "token_alg_unsupported"),
        ("kid_missing", "No kid member.", {"kid": None}, "token_header_invalid"),
        ("kid_empty", "kid is the empty string.", {"kid": ""}, "token_header_invalid"),
        ("kid_number", "kid is a number.", {"kid": 7}, "token_header_invalid"),
        (
            "kid_unknown",
            "kid is a thumbprint that the JWKS does not hold.",
            {"kid": thumbprint(attacker_jwk)},
            "token_kid_unknown",
        ),
        (
            "kid_case_changed",
            "kid differs from the group kid only in letter case.",
            {"kid": GROUP_KID.swapcase()},
            "token_kid_unknown",
        ),
        (
            "kid_of_receipt_key",
            "kid names the P-256 receipt key, not an Ed25519 key.",
            {"kid": RECEIPT_KID},
            "token_kid_unknown",
        ),
    ):
        cases.append(
            bad(name, description, reason, token=token_from_json(header_json(**overrides), payload))
        )

    receipt_as_token = receipt_for(valid_token("t-receipt-as-token"))
    cases.append(
        bad(
            "receipt_as_token",
            "A valid receipt presented as the token: its typ names the other format.",
            "token_header_invalid",
            token=receipt_as_token,
        )
    )
    return cases


def signature_token_cases() -> list[dict]:
    """Build tokens whose Ed25519 signature must fail strict verification (RFC 8032 s. 5.1.7)."""
    header_segment = b64url_json(header_json())
    payload_segment = b64url_json(claims_json("t-signature"))
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    honest = GROUP.sign(signing_input)
    flipped = bytearray(honest)
    flipped[40] ^= 0x01
    tampered_payload = b64url_json(claims_json("t-signature", scope="payments:admin"))

    def token_with(signature: bytes, payload: str = payload_segment) -> str:
        return f"{header_segment}.{payload}.{b64url_encode(signature)}"

    return [
        bad(
            "signature_wrong_key",
            "Signed by another Ed25519 key under the group kid.",
            "token_signature_invalid",
            token=signed(header_segment, payload_segment, ATTACKER),
        ),
        bad(
            "signature_bit_flipped",
            "One bit of S flipped.",
            "token_signature_invalid",
            token=token_with(bytes(flipped)),
        ),
        bad(
            "payload_tampered",
            "The scope changed after signing.",
            "token_signature_invalid",
            token=token_with(honest, tampered_payload),
        ),
        bad(
            "signature_empty",
            "alg EdDSA with an empty signature.",
            "token_signature_invalid",
            token=f"{header_segment}.{payload_segment}.",
        ),
        bad(
            "signature_63_bytes",
            "The signature lost its last byte.",
            "token_signature_invalid",
            token=token_with(honest[:63]),
        ),
        bad(
            "signature_65_bytes",
            "A zero byte appended to the signature.",
            "token_signature_invalid",
            token=token_with(honest + b"\x00"),
        ),
        bad(
            "signature_s_plus_l",
            "S replaced by S + L, the malleable twin.",
            "token_signature_invalid",
            token=token_with(GROUP.sign_with_non_canonical_s(signing_input)),
        ),
        bad(
            "signature_r_identity",
            "R is the identity and S = k*a: passes the cofactorless equation, small-order R.",
            "token_signature_invalid",
            token=token_with(GROUP.sign_with_chosen_r(signing_input, IDENTITY)),
        ),
        bad(
            "signature_r_identity_sign_bit",
            "R is the identity with the x sign bit set, a non-canonical encoding.",
            "token_signature_invalid",
            token=token_with(GROUP.sign_with_chosen_r(signing_input, IDENTITY_SIGN_BIT)),
        ),
        bad(
            "signature_r_identity_y_plus_p",
            "R is the identity encoded with y = p + 1, a non-canonical encoding.",
            "token_signature_invalid",
            token=token_with(GROUP.sign_with_chosen_r(signing_input, IDENTITY_NON_CANONICAL)),
        ),
        bad(
            "signature_r_order_8",
            "R is a point of order 8 and S = k*a.",
            "token_signature_invalid",
            token=token_with(GROUP.sign_with_chosen_r(signing_input, ORDER_8_POINT)),
        ),
    ]


def payload_token_cases() -> list[dict]:
    """Build tokens whose signed payload is not one strict JSON object in UTF-8."""
    header = header_json()
    payload = claims_json("t-payload")
    return [
        bad(
            "payload_duplicate_sub",
            "The claims name sub twice.",
            "token_claims_invalid",
            token=token_from_json(header, payload[:-1] + ',"sub":"root@example.com"}'),
        ),
        bad(
            "payload_duplicate_escaped_name",
            "A second sub spelled s\\u0075b, equal after unescaping.",
            "token_claims_invalid",
            token=token_from_json(header, payload[:-1] + ',"s\\u0075b":"root@example.com"}'),
        ),
        bad(
            "payload_array",
            "The payload is a JSON array.",
            "token_claims_invalid",
            token=token_from_json(header, "[" + payload + "]"),
        ),
        bad(
            "payload_trailing_data",
            "Bytes after the JSON object.",
            "token_claims_invalid",
            token=token_from_json(header, payload + "x"),
        ),
        bad(
            "payload_nan",
            "exp is the non-standard constant NaN.",
            "token_claims_invalid",
            token=token_from_json(header, payload.replace(f'"exp":{ISSUED_AT + TTL}', '"exp":NaN')),
        ),
        bad(
            "payload_invalid_utf8",
            "The subject contains the byte 0xff, which is not UTF-8.",
            "token_claims_invalid",
            token=signed(
                b64url_json(header),
                b64url_encode(payload.encode().replace(b"alice", b"al\xffce")),
            ),
        ),
        bad(
            "payload_byte_order_mark",
            "The payload starts with a UTF-8 byte order mark.",
            "token_claims_invalid",
            token=signed(b64url_json(header), b64url_encode(b"\xef\xbb\xbf" + payload.encode())),
        ),
    ]


def claim_token_cases() -> list[dict]:
    """Build tokens with wrong claim types, missing claims, and out-of-window times."""
    exp = ISSUED_AT + TTL
    raw_cases = (
        ("iat_float", "iat written as 1767225540.0.", "iat", f"{ISSUED_AT}.0"),
        ("exp_exponent", "exp written in exponent notation.", "exp", f"{exp}e0"),
        ("exp_string", "exp as a string.", "exp", f'"{exp}"'),
        ("exp_true", "exp as the boolean true.", "exp", "true"),
        ("nbf_null", "nbf is null.", "nbf", "null"),
        ("nbf_negative", "nbf is -1, before the epoch.", "nbf", "-1"),
        (
            "exp_beyond_2_53",
            "exp is 2**53 + 1, outside the I-JSON integer range.",
            "exp",
            str(2**53 + 1),
        ),
        ("aud_array", "aud as an array holding the right audience.", "aud", f'["{AUDIENCE}"]'),
        ("sub_number", "sub as a number.", "sub", "42"),
        (
            "scope_array",
            "scope as an array instead of a space-separated string.",
            "scope",
            '["payments:read"]',
        ),
        ("jti_number", "jti as a number.", "jti", "17"),
    )
    cases = []
    for name, description, claim, literal in raw_cases:
        payload = claims_json("t-" + name, **{claim: "CLAIM_PLACEHOLDER"}).replace(
            '"CLAIM_PLACEHOLDER"', literal
        )
        cases.append(
            bad(
                name,
                description,
                "token_claims_invalid",
                token=token_from_json(header_json(), payload),
            )
        )
    for name, description, overrides in (
        ("sub_empty", "sub is the empty string.", {"sub": ""}),
        ("jti_empty", "jti is the empty string.", {"jti": ""}),
        ("scope_double_space", "Two spaces between scopes.", {"scope": "payments:read  x"}),
        (
            "scope_quote",
            "A scope holds a double quote, outside RFC 6749 scope-token.",
            {"scope": 'payments:"read"'},
        ),
        ("scope_leading_space", "The scope starts with a space.", {"scope": " payments:read"}),
        (
            "exp_before_iat",
            "exp is one second before iat.",
            {"exp": ISSUED_AT - 1, "nbf": ISSUED_AT - 100},
        ),
        ("exp_equals_nbf", "exp equals nbf.", {"exp": ISSUED_AT + 10, "nbf": ISSUED_AT + 10}),
    ):
        cases.append(
            bad(
                name,
                description,
                "token_claims_invalid",
                token=valid_token("t-" + name, **overrides),
            )
        )
    for claim in ("exp", "iat", "sub", "jti", "iss", "aud", "scope"):
        cases.append(
            bad(
                f"{claim}_missing",
                f"No {claim} claim.",
                "token_claims_invalid",
                token=token_from_json(header_json(), claims_json(f"t-no-{claim}", **{claim: None})),
            )
        )
    cases += [
        bad(
            "expired_at_leeway_edge",
            "now equals exp + leeway.",
            "token_expired",
            token=valid_token("t-exp", iat=NOW - 900, nbf=NOW - 900, exp=NOW - LEEWAY),
        ),
        bad(
            "expired_long_ago",
            "Expired a day ago.",
            "token_expired",
            token=valid_token("t-old", iat=NOW - 86400, nbf=NOW - 86400, exp=NOW - 85500),
        ),
        bad(
            "not_yet_valid",
            "nbf - leeway is one second after now.",
            "token_not_yet_valid",
            token=valid_token("t-nbf", iat=NOW - 60, nbf=NOW + LEEWAY + 1, exp=NOW + 900),
        ),
        bad(
            "issued_in_future",
            "iat - leeway is one second after now; nbf is in the past.",
            "token_not_yet_valid",
            token=valid_token("t-iat", iat=NOW + LEEWAY + 1, nbf=NOW - 60, exp=NOW + 900),
        ),
        bad(
            "audience_other",
            "aud names another service.",
            "token_audience_mismatch",
            token=valid_token("t-aud", aud="svc.billing"),
        ),
        bad(
            "audience_case",
            "aud differs only in letter case.",
            "token_audience_mismatch",
            token=valid_token("t-aud-case", aud=AUDIENCE.upper()),
        ),
        bad(
            "issuer_other",
            "iss names another mint.",
            "token_issuer_mismatch",
            token=valid_token("t-iss", iss="https://mint.attacker.example"),
        ),
        bad(
            "issuer_trailing_slash",
            "iss with a trailing slash.",
            "token_issuer_mismatch",
            token=valid_token("t-iss-slash", iss=ISSUER + "/"),
        ),
        bad(
            "ttl_over_max",
            "exp - iat is max_ttl + 1.",
            "token_ttl_exceeded",
            token=valid_token("t-ttl", exp=ISSUED_AT + MAX_TTL + 1),
        ),
    ]
    return cases
