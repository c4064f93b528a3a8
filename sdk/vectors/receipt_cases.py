"""Receipt cases and key-set cases of the shared vectors."""

from __future__ import annotations

import json

from crafting import (
    ED25519_P,
    IDENTITY,
    ORDER_8_POINT,
    P256_N,
    b64url_json,
    der_rs,
    ed25519_y_on_curve,
    hs256,
    raw_rs,
    set_unused_bits,
)
from fixtures import (
    GROUP,
    GROUP_JWK,
    GROUP_KID,
    GROUP_SEED,
    KMS,
    MAX_RECEIPT_CHARS,
    OTHER_KMS,
    RECEIPT_JWK,
    RECEIPT_KID,
    assemble_es256,
    bad,
    receipt_for,
    receipt_segments,
    segment_json,
    valid_token,
)
from nacl.bindings import crypto_core_ed25519_add

from authz.formats import assemble_compact
from authz.jose import b64url_encode
from authz.jwk import thumbprint


def receipt_cases() -> list[dict]:
    """Build receipt cases, each checked against a token with verify_receipt."""
    token = valid_token("t-receipt")
    good = receipt_for(token)
    signing_input = receipt_segments(token)
    r_value, s_value = KMS.sign_rs(signing_input)
    header_segment, payload_segment, signature_segment = good.split(".")

    def with_signature(signature: bytes) -> str:
        return assemble_compact(signing_input, signature)

    def signed_receipt(header: dict | None = None, payload: dict | None = None) -> str:
        return assemble_es256(receipt_segments(token, header, payload), KMS)

    header = {"alg": "ES256", "typ": "kms-receipt+jwt", "kid": RECEIPT_KID}
    payload = json.loads(segment_json(payload_segment))
    same_jti_other_token = valid_token("t-receipt", scope="payments:admin")
    other_token = valid_token("t-receipt-other")
    flipped = bytearray(KMS.sign(signing_input))
    flipped[10] ^= 0x01
    duplicate_jti_payload = b64url_json(
        segment_json(payload_segment)[:-1] + ',"token_jti":"t-receipt-other"}'
    )

    cases = [
        {
            "name": "valid",
            "description": "A receipt exactly as the KMS issues it.",
            "token": token,
            "receipt": good,
            "expect": {"result": "ok", "token_jti": "t-receipt"},
        },
        {
            "name": "valid_high_s",
            "description": "s replaced by n - s: ES256 (RFC 7518) does not require low s.",
            "token": token,
            "receipt": with_signature(raw_rs(r_value, P256_N - s_value)),
            "expect": {"result": "ok", "token_jti": "t-receipt"},
        },
    ]
    errors = [
        ("empty", "The empty string.", "receipt_missing", ""),
        (
            "token_as_receipt",
            "The token presented as its own receipt: typ names the other format.",
            "receipt_header_invalid",
            token,
        ),
        (
            "too_long",
            f"A validly signed receipt of more than {MAX_RECEIPT_CHARS} characters.",
            "receipt_malformed",
            signed_receipt(payload={**payload, "pad": "x" * MAX_RECEIPT_CHARS}),
        ),
        (
            "five_segments",
            "Five segments, the shape of a JWE.",
            "receipt_malformed",
            f"{header_segment}..{payload_segment}.{signature_segment}.AAAA",
        ),
        (
            "signature_padded",
            "The signature segment carries '=' padding.",
            "receipt_malformed",
            f"{good}==",
        ),
        (
            "signature_unused_bits",
            "The last signature character has a non-zero unused bit.",
            "receipt_malformed",
            f"{header_segment}.{payload_segment}.{set_unused_bits(signature_segment)}",
        ),
        (
            "payload_duplicate_jti",
            "token_jti named twice.",
            "receipt_malformed",
            assemble_es256(f"{header_segment}.{duplicate_jti_payload}".encode(), KMS),
        ),
        (
            "alg_none",
            "alg none with an empty signature.",
            "receipt_alg_unsupported",
            f"{b64url_json(json.dumps({**header, 'alg': 'none'}, separators=(',', ':')))}"
            f".{payload_segment}.",
        ),
        (
            "alg_hs256",
            "HS256 keyed with the receipt key's x coordinate.",
            "receipt_alg_unsupported",
            _hs256_receipt(token, header),
        ),
        (
            "alg_es384",
            "alg ES384.",
            "receipt_alg_unsupported",
            signed_receipt({**header, "alg": "ES384"}),
        ),
        (
            "typ_jwt",
            "typ JWT on an ES256 receipt.",
            "receipt_header_invalid",
            signed_receipt({**header, "typ": "JWT"}),
        ),
        (
            "typ_missing",
            "No typ member.",
            "receipt_header_invalid",
            signed_receipt({"alg": "ES256", "kid": RECEIPT_KID}),
        ),
        (
            "header_member_jwk",
            "The header embeds a jwk.",
            "receipt_header_invalid",
            signed_receipt({**header, "jwk": RECEIPT_JWK}),
        ),
        (
            "header_member_crit",
            "The header carries crit.",
            "receipt_header_invalid",
            signed_receipt({**header, "crit": ["iat"]}),
        ),
        (
            "header_member_x5c",
            "The header carries x5c.",
            "receipt_header_invalid",
            signed_receipt({**header, "x5c": ["MIIBszCCAVmgAwIBAgIUE"]}),
        ),
        (
            "kid_unknown",
            "kid the JWKS does not hold.",
            "receipt_kid_unknown",
            signed_receipt({**header, "kid": "kms-receipt-key-v0"}),
        ),
        (
            "kid_of_group_key",
            "kid names the Ed25519 group key.",
            "receipt_kid_unknown",
            signed_receipt({**header, "kid": GROUP_KID}),
        ),
        (
            "signature_der",
            "The ASN.1 DER form instead of raw r || s.",
            "receipt_signature_invalid",
            with_signature(der_rs(r_value, s_value)),
        ),
        (
            "signature_r_zero",
            "r = 0.",
            "receipt_signature_invalid",
            with_signature(raw_rs(0, s_value)),
        ),
        (
            "signature_s_zero",
            "s = 0.",
            "receipt_signature_invalid",
            with_signature(raw_rs(r_value, 0)),
        ),
        (
            "signature_r_equals_n",
            "r = n, the group order.",
            "receipt_signature_invalid",
            with_signature(raw_rs(P256_N, s_value)),
        ),
        (
            "signature_s_equals_n",
            "s = n, the group order.",
            "receipt_signature_invalid",
            with_signature(raw_rs(r_value, P256_N)),
        ),
        (
            "signature_all_zero",
            "64 zero bytes.",
            "receipt_signature_invalid",
            with_signature(bytes(64)),
        ),
        (
            "signature_63_bytes",
            "The signature lost its last byte.",
            "receipt_signature_invalid",
            with_signature(raw_rs(r_value, s_value)[:63]),
        ),
        (
            "signature_bit_flipped",
            "One bit of r flipped.",
            "receipt_signature_invalid",
            with_signature(bytes(flipped)),
        ),
        (
            "signature_wrong_key",
            "Signed by another P-256 key under the receipt kid.",
            "receipt_signature_invalid",
            assemble_es256(signing_input, OTHER_KMS),
        ),
        (
            "token_sha256_missing",
            "No token_sha256 member.",
            "receipt_malformed",
            signed_receipt(payload={k: v for k, v in payload.items() if k != "token_sha256"}),
        ),
        (
            "token_jti_number",
            "token_jti is a number.",
            "receipt_malformed",
            signed_receipt(payload={**payload, "token_jti": 17}),
        ),
    ]
    for name, description, reason, receipt in errors:
        cases.append(bad(name, description, reason, token=token, receipt=receipt))
    cases += [
        bad(
            "for_other_token",
            "A valid receipt of another token.",
            "receipt_mismatch",
            token=token,
            receipt=receipt_for(other_token),
        ),
        bad(
            "same_jti_other_token",
            "The receipt of another token that carries the same jti.",
            "receipt_mismatch",
            token=token,
            receipt=receipt_for(same_jti_other_token),
        ),
        bad(
            "jti_differs",
            "token_sha256 matches but token_jti names another token.",
            "receipt_mismatch",
            token=token,
            receipt=signed_receipt(payload={**payload, "token_jti": "t-receipt-other"}),
        ),
    ]
    return cases


def _hs256_receipt(token: str, header: dict[str, object]) -> str:
    signing_input = receipt_segments(token, {**header, "alg": "HS256"})
    return assemble_compact(signing_input, hs256(KMS.x, signing_input))


def key_cases() -> list[dict]:
    """Build JWKS documents that a key-set loader must reject."""
    group = {**GROUP_JWK, "kid": GROUP_KID, "use": "sig", "alg": "EdDSA"}
    receipt = {**RECEIPT_JWK, "kid": RECEIPT_KID, "use": "sig", "alg": "ES256"}
    off_curve_y = next(y for y in range(2, 100) if not ed25519_y_on_curve(y))
    non_canonical_y = next(y for y in range(2, 19) if ed25519_y_on_curve(y))
    bad_p256_y = (int.from_bytes(KMS.y, "big") + 1).to_bytes(32, "big")
    mixed_order_key = crypto_core_ed25519_add(GROUP.public_key, ORDER_8_POINT)

    def okp(x: bytes, **extra: object) -> dict:
        return {**group, "x": b64url_encode(x), **extra}

    documents = [
        ("ed25519_identity", "The group key is the identity point.", [okp(IDENTITY)]),
        ("ed25519_order_8", "The group key is a point of order 8.", [okp(ORDER_8_POINT)]),
        (
            "ed25519_order_4_sign_bit",
            "The group key is a point of order 4 with the sign bit.",
            [okp(bytes(31) + b"\x80")],
        ),
        (
            "ed25519_non_canonical",
            f"The group key is encoded with y = {non_canonical_y} + p.",
            [okp((non_canonical_y + ED25519_P).to_bytes(32, "little"))],
        ),
        (
            "ed25519_off_curve",
            f"The group key has y = {off_curve_y}, which has no x.",
            [okp(off_curve_y.to_bytes(32, "little"))],
        ),
        ("ed25519_31_bytes", "The group key is 31 bytes long.", [okp(GROUP.public_key[:31])]),
        (
            "ed25519_private_d",
            "The group key carries its private member d.",
            [okp(GROUP.public_key, d=b64url_encode(GROUP_SEED))],
        ),
        ("ed448", "An Ed448 key.", [{**group, "crv": "Ed448", "x": b64url_encode(bytes(57))}]),
        (
            "p256_off_curve",
            "The receipt key's y plus one, off the curve.",
            [group, {**receipt, "y": b64url_encode(bad_p256_y)}],
        ),
        ("p384", "A P-384 receipt key.", [group, {**receipt, "crv": "P-384"}]),
        ("rsa", "An RSA key.", [group, {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}]),
        ("duplicate_kid", "Two keys share one kid.", [group, {**receipt, "kid": GROUP_KID}]),
        ("kid_missing", "A key without kid.", [{k: v for k, v in group.items() if k != "kid"}]),
        ("alg_mismatch", "An Ed25519 key labelled alg ES256.", [{**group, "alg": "ES256"}]),
        ("use_enc", "A key labelled use enc.", [{**group, "use": "enc"}]),
        ("x_padded", "The Ed25519 x carries '=' padding.", [{**group, "x": group["x"] + "="}]),
        (
            "ed25519_mixed_order",
            "The group key plus a point of order 8: on the curve, not of small order, but outside "
            "the prime-order subgroup.",
            [
                okp(
                    mixed_order_key,
                    kid=thumbprint({**GROUP_JWK, "x": b64url_encode(mixed_order_key)}),
                )
            ],
        ),
        ("alg_missing", "A key without alg.", [{k: v for k, v in group.items() if k != "alg"}]),
        (
            "group_kid_not_thumbprint",
            "A group key whose kid is not its RFC 7638 thumbprint.",
            [{**group, "kid": "group-key-1"}],
        ),
        (
            "unknown_member",
            "A key with a member outside kty, crv, x, y, kid, alg, use.",
            [{**group, "key_ops": ["verify"]}],
        ),
    ]
    return [
        {
            "name": name,
            "description": description,
            "jwks": {"keys": keys},
            "expect": {"result": "error"},
        }
        for name, description, keys in documents
    ]
