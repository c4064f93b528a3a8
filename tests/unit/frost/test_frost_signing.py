"""Threshold properties of FROST signing with keys from the dealerless DKG.

Keys come from ``run_dkg`` with (t, n) in {(2, 3), (3, 5)}. Every t-subset must produce a
signature that `cryptography` and PyJWT accept under the one group key; t - 1 signers must not.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.frost.aggregate import aggregate
from actors.frost.ciphersuite import (
    GROUP_ORDER,
    ZERO_SCALAR,
    base_mul,
    scalar_add,
    scalar_from_int,
    scalar_mul,
    verify_signature,
)
from actors.frost.errors import InvalidSignature, InvalidSignatureShare, TooFewSigners
from actors.frost.keys import KeyPackage, PublicKeyPackage, derive_interpolating_value
from actors.frost.round1 import SigningNonces, commit
from actors.frost.round2 import (
    SignatureShare,
    SigningPackage,
    compute_binding_factors,
    compute_challenge,
    compute_group_commitment,
    make_signing_package,
    sign,
)
from authz.formats import TokenClaims, assemble_compact, token_signing_input
from authz.jwk import okp_ed25519_jwk, thumbprint

from .conftest import seeded_random

DkgResult = tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]


@pytest.fixture(params=["dkg_2_of_3", "dkg_3_of_5"])
def keys(request: pytest.FixtureRequest) -> DkgResult:
    return request.getfixturevalue(request.param)


def _sign_with(
    key_packages: dict[int, KeyPackage], signers: tuple[int, ...], message: bytes, seed: int
) -> tuple[SigningPackage, dict[int, SignatureShare]]:
    rng = seeded_random(seed)
    round1 = {i: commit(key_packages[i], rng) for i in signers}
    package = make_signing_package([c for _, c in round1.values()], message)
    shares = {i: sign(package, round1[i][0], key_packages[i]) for i in signers}
    return package, shares


def _token_signing_input(group_public_key: bytes, jti: str) -> tuple[bytes, str]:
    kid = thumbprint(okp_ed25519_jwk(group_public_key))
    claims = TokenClaims(
        iss="https://mint.test",
        sub="engineer@example.test",
        aud="payments",
        scopes=("read",),
        iat=1_800_000_000,
        ttl=900,
        jti=jti,
    )
    return token_signing_input(claims, kid), kid


def test_every_t_subset_signs_a_token_cryptography_verifies(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    group_key = Ed25519PublicKey.from_public_bytes(public_key_package.group_public_key)
    t = public_key_package.min_signers
    for seed, signers in enumerate(itertools.combinations(sorted(key_packages), t)):
        message, _ = _token_signing_input(public_key_package.group_public_key, f"jti-{seed}")
        package, shares = _sign_with(key_packages, signers, message, seed)
        signature = aggregate(package, shares, public_key_package)
        group_key.verify(signature, message)


def test_every_t_subset_signs_a_token_pyjwt_verifies(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    group_key = Ed25519PublicKey.from_public_bytes(public_key_package.group_public_key)
    t = public_key_package.min_signers
    for seed, signers in enumerate(itertools.combinations(sorted(key_packages), t)):
        message, kid = _token_signing_input(public_key_package.group_public_key, f"jti-{seed}")
        package, shares = _sign_with(key_packages, signers, message, 1000 + seed)
        token = assemble_compact(message, aggregate(package, shares, public_key_package))

        claims = jwt.decode(
            token,
            key=group_key,
            algorithms=["EdDSA"],
            audience="payments",
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )

        assert claims["jti"] == f"jti-{seed}", signers
        assert jwt.get_unverified_header(token)["kid"] == kid, signers


def test_sign_rejects_t_minus_one_signers(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    t = public_key_package.min_signers
    for seed, signers in enumerate(itertools.combinations(sorted(key_packages), t - 1)):
        rng = seeded_random(seed)
        round1 = {i: commit(key_packages[i], rng) for i in signers}
        package = make_signing_package([c for _, c in round1.values()], b"message")
        first = signers[0]
        with pytest.raises(TooFewSigners, match=f"expected at least min_signers = {t}"):
            sign(package, round1[first][0], key_packages[first])


def _share_without_threshold_check(
    package: SigningPackage, nonces: SigningNonces, key_package: KeyPackage
) -> bytes:
    """Compute z_i = d + e * rho + lambda * s * c exactly as sign does, minus its checks."""
    group_key = key_package.group_public_key
    rho = compute_binding_factors(group_key, package)
    group_commitment = compute_group_commitment(package, rho)
    challenge = compute_challenge(group_commitment, group_key, package.message)
    weight = derive_interpolating_value(package.participants, key_package.identifier)
    binding_term = scalar_mul(nonces.binding, rho[key_package.identifier])
    key_term = scalar_mul(scalar_mul(weight, key_package.signing_share), challenge)
    return scalar_add(scalar_add(nonces.hiding, binding_term), key_term)


def test_forced_t_minus_one_aggregate_does_not_verify(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    group_key = public_key_package.group_public_key
    t = public_key_package.min_signers
    for seed, signers in enumerate(itertools.combinations(sorted(key_packages), t - 1)):
        rng = seeded_random(seed)
        round1 = {i: commit(key_packages[i], rng) for i in signers}
        package = make_signing_package([c for _, c in round1.values()], b"message")
        z = ZERO_SCALAR
        for i in signers:
            z = scalar_add(
                z, _share_without_threshold_check(package, round1[i][0], key_packages[i])
            )
        group_commitment = compute_group_commitment(
            package, compute_binding_factors(group_key, package)
        )

        with pytest.raises(InvalidSignature):
            verify_signature(package.message, group_commitment + z, group_key)


def test_aggregate_names_tampered_share_culprit(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    signers = tuple(sorted(key_packages))[: public_key_package.min_signers]
    package, shares = _sign_with(key_packages, signers, b"message", 7)
    culprit = signers[-1]
    tampered = scalar_add(shares[culprit].value, scalar_from_int(1))
    shares[culprit] = SignatureShare(culprit, tampered)

    with pytest.raises(InvalidSignatureShare) as raised:
        aggregate(package, shares, public_key_package)

    assert raised.value.culprit == culprit
    assert f"signer {culprit}" in str(raised.value)


def test_aggregate_names_share_swapped_between_signers(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    signers = tuple(sorted(key_packages))[: public_key_package.min_signers]
    package, shares = _sign_with(key_packages, signers, b"message", 8)
    first, second = signers[0], signers[1]
    shares[first] = SignatureShare(first, shares[second].value)

    with pytest.raises(InvalidSignatureShare) as raised:
        aggregate(package, shares, public_key_package)

    assert raised.value.culprit == first


def _lagrange_reconstruct_for_test_only(
    key_packages: dict[int, KeyPackage], signers: tuple[int, ...]
) -> bytes:
    """Reconstruct the group secret from t signing shares, only to check consistency."""
    secret = ZERO_SCALAR
    for i in signers:
        weight = derive_interpolating_value(signers, i)
        secret = scalar_add(secret, scalar_mul(weight, key_packages[i].signing_share))
    return secret


def test_dkg_shares_interpolate_to_group_key(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    t = public_key_package.min_signers
    for signers in itertools.combinations(sorted(key_packages), t):
        secret = _lagrange_reconstruct_for_test_only(key_packages, signers)
        assert base_mul(secret) == public_key_package.group_public_key, signers


def _all_bytes(value: Any) -> list[bytes]:
    """Collect every bytes value reachable from dataclasses, mappings and sequences."""
    if isinstance(value, bytes):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [b for f in dataclasses.fields(value) for b in _all_bytes(getattr(value, f.name))]
    if hasattr(value, "items"):
        return [b for k, v in value.items() for b in _all_bytes(k) + _all_bytes(v)]
    if isinstance(value, list | tuple):
        return [b for item in value for b in _all_bytes(item)]
    return []


def test_dkg_outputs_never_contain_group_secret(keys: DkgResult) -> None:
    key_packages, public_key_package, intermediates = keys
    t = public_key_package.min_signers
    secret = _lagrange_reconstruct_for_test_only(key_packages, tuple(sorted(key_packages))[:t])
    returned = _all_bytes([key_packages, public_key_package, intermediates])
    assert len(returned) > 0
    assert secret not in returned
    negated = (GROUP_ORDER - int.from_bytes(secret, "little")).to_bytes(32, "little")
    assert negated not in returned


def test_signing_outputs_never_contain_group_secret(keys: DkgResult) -> None:
    key_packages, public_key_package, _ = keys
    signers = tuple(sorted(key_packages))[: public_key_package.min_signers]
    package, shares = _sign_with(key_packages, signers, b"message", 9)
    signature = aggregate(package, shares, public_key_package)
    secret = _lagrange_reconstruct_for_test_only(key_packages, signers)
    returned = _all_bytes([package, shares]) + [signature[:32], signature[32:]]
    assert secret not in returned


@settings(max_examples=25, deadline=None)
@given(message=st.binary(max_size=256), data=st.data())
def test_random_t_subset_signs_random_message(
    dkg_3_of_5: DkgResult, message: bytes, data: st.DataObject
) -> None:
    key_packages, public_key_package, _ = dkg_3_of_5
    signers = tuple(sorted(data.draw(st.sets(st.sampled_from(sorted(key_packages)), min_size=3))))
    seed = data.draw(st.integers(min_value=0, max_value=2**32))
    package, shares = _sign_with(key_packages, signers, message, seed)
    signature = aggregate(package, shares, public_key_package)
    Ed25519PublicKey.from_public_bytes(public_key_package.group_public_key).verify(
        signature, message
    )
