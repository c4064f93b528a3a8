"""check_assertion and the request digest shared with the mint."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from mesh_unit_support import SoftAuthenticator, token_claims

from actors.assertion_check import (
    check_assertion,
    derive_challenge,
    request_digest,
    request_digest_of_claims,
)
from actors.errors import AssertionRejected


def test_request_digest_sorts_scopes() -> None:
    assert request_digest("alice", ["b", "a"], "svc", 900) == request_digest(
        "alice", ["a", "b"], "svc", 900
    )


def test_request_digest_hashes_canonical_json() -> None:
    expected = hashlib.sha256(b'{"aud":"svc","scopes":["a","b"],"sub":"alice","ttl":900}').digest()

    assert request_digest("alice", ["b", "a"], "svc", 900) == expected


def test_request_digest_differs_per_field() -> None:
    base = request_digest("alice", ["a"], "svc", 900)

    assert request_digest("bob", ["a"], "svc", 900) != base
    assert request_digest("alice", ["b"], "svc", 900) != base
    assert request_digest("alice", ["a"], "other", 900) != base
    assert request_digest("alice", ["a"], "svc", 901) != base


def test_request_digest_of_claims_matches_request() -> None:
    claims = token_claims()

    assert request_digest_of_claims(claims.to_json()) == request_digest(
        claims.sub, claims.scopes, claims.aud, claims.ttl
    )


def test_derive_challenge_is_sha256_of_salt_and_digest() -> None:
    salt, digest = b"\x01" * 32, b"\x02" * 32

    assert derive_challenge(salt, digest) == hashlib.sha256(salt + digest).digest()


def test_derive_challenge_rejects_short_salt() -> None:
    with pytest.raises(ValueError, match="challenge_salt is 16 bytes, expected 32"):
        derive_challenge(b"\x01" * 16, b"\x02" * 32)


def test_check_assertion_accepts_matching_request() -> None:
    claims = token_claims()

    check_assertion(SoftAuthenticator().assert_claims(claims), claims.to_json())


def test_check_assertion_rejects_create_type() -> None:
    claims = token_claims()
    evidence = SoftAuthenticator().assert_claims(claims, client_type="webauthn.create")

    with pytest.raises(AssertionRejected, match="type is 'webauthn.create'"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_other_ttl() -> None:
    claims = token_claims()
    evidence = SoftAuthenticator().assert_claims(claims)

    with pytest.raises(AssertionRejected, match="made for another request"):
        check_assertion(evidence, dataclasses.replace(claims, ttl=1800).to_json())


def test_check_assertion_rejects_other_salt() -> None:
    claims = token_claims()
    evidence = dataclasses.replace(
        SoftAuthenticator().assert_claims(claims), challenge_salt=b"\x09" * 32
    )

    with pytest.raises(AssertionRejected, match="made for another request"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_missing_user_presence() -> None:
    claims = token_claims()
    evidence = SoftAuthenticator().assert_claims(claims, flags=0x04)

    with pytest.raises(AssertionRejected, match="UP \\(user present\\) flag cleared"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_other_credential_key() -> None:
    claims = token_claims()
    evidence = dataclasses.replace(
        SoftAuthenticator().assert_claims(claims),
        credential_public_key=SoftAuthenticator().cose_key(),
    )

    with pytest.raises(AssertionRejected, match="signature does not verify"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_malformed_client_data() -> None:
    claims = token_claims()
    evidence = dataclasses.replace(
        SoftAuthenticator().assert_claims(claims), client_data_json=b"not json"
    )

    with pytest.raises(AssertionRejected, match="clientDataJSON is not a JSON object"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_short_authenticator_data() -> None:
    claims = token_claims()
    evidence = dataclasses.replace(
        SoftAuthenticator().assert_claims(claims), authenticator_data=b"\x00" * 10
    )

    with pytest.raises(AssertionRejected, match="does not parse"):
        check_assertion(evidence, claims.to_json())


def test_check_assertion_rejects_non_cose_key() -> None:
    claims = token_claims()
    evidence = dataclasses.replace(
        SoftAuthenticator().assert_claims(claims), credential_public_key=b"\x01"
    )

    with pytest.raises(AssertionRejected, match="not a COSE_Key"):
        check_assertion(evidence, claims.to_json())


def test_assertion_evidence_repr_hides_signature() -> None:
    evidence = SoftAuthenticator().assert_claims(token_claims())

    assert evidence.signature.hex() not in repr(evidence)
    assert json.dumps(repr(evidence))
