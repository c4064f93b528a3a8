"""Secret handling: redacted reprs, and why a nonce pair must never sign twice."""

from __future__ import annotations

import pickle
from typing import Any

from actors.frost import dkg
from actors.frost.ciphersuite import GROUP_ORDER, base_mul
from actors.frost.keys import KeyPackage, PublicKeyPackage, derive_interpolating_value
from actors.frost.round1 import commit
from actors.frost.round2 import (
    compute_binding_factors,
    compute_challenge,
    compute_group_commitment,
    make_signing_package,
    sign,
)

from .conftest import seeded_random

DkgResult = tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]


def test_key_package_repr_redacts_signing_share(dkg_2_of_3: DkgResult) -> None:
    key_package = dkg_2_of_3[0][1]
    text = repr(key_package)
    assert key_package.signing_share.hex() not in text
    assert "signing_share=<redacted>" in text


def test_signing_nonces_repr_redacts_nonces(dkg_2_of_3: DkgResult) -> None:
    nonces, _ = commit(dkg_2_of_3[0][1], seeded_random(1))
    text = repr(nonces)
    assert nonces.hiding.hex() not in text
    assert nonces.binding.hex() not in text
    assert "hiding=<redacted>" in text


def test_dkg_secret_packages_repr_redact_secrets() -> None:
    rng = seeded_random(2)
    round1 = {i: dkg.part1(i, 3, 2, rng) for i in (1, 2, 3)}
    secret = round1[1][0]
    others = {j: round1[j][1] for j in (2, 3)}
    round2_secret, sent = dkg.part2(secret, others)
    for coefficient in secret.coefficients:
        assert coefficient.hex() not in repr(secret)
    assert round2_secret.secret_share.hex() not in repr(round2_secret)
    assert sent[2].signing_share.hex() not in repr(sent[2])


def _int(scalar: bytes) -> int:
    return int.from_bytes(scalar, "little")


def _solve_3x3_mod_l(rows: list[list[int]], values: list[int]) -> list[int]:
    """Solve a 3x3 linear system modulo L with Cramer's rule."""

    def det(m: list[list[int]]) -> int:
        return (
            m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
        ) % GROUP_ORDER

    inverse = pow(det(rows), -1, GROUP_ORDER)
    solution = []
    for column in range(3):
        replaced = [[values[r] if c == column else rows[r][c] for c in range(3)] for r in range(3)]
        solution.append(det(replaced) * inverse % GROUP_ORDER)
    return solution


def test_nonce_reuse_reveals_signing_share(dkg_2_of_3: DkgResult) -> None:
    """Three shares from one nonce pair give d, e and s_1 by linear algebra (round1 Security)."""
    key_packages, public_key_package, _ = dkg_2_of_3
    group_key = public_key_package.group_public_key
    rng = seeded_random(3)
    reused_nonces, reused_commitments = commit(key_packages[1], rng)

    rows: list[list[int]] = []
    values: list[int] = []
    for message, partner in ((b"first", 2), (b"second", 3), (b"third", 2)):
        _, partner_commitments = commit(key_packages[partner], rng)
        package = make_signing_package([reused_commitments, partner_commitments], message)
        share = sign(package, reused_nonces, key_packages[1])
        # Everything but d, e and s_1 in z = d + e * rho + lambda * c * s_1 is public.
        rho = compute_binding_factors(group_key, package)
        challenge = compute_challenge(compute_group_commitment(package, rho), group_key, message)
        weight = derive_interpolating_value(package.participants, 1)
        rows.append([1, _int(rho[1]), _int(weight) * _int(challenge) % GROUP_ORDER])
        values.append(_int(share.value))

    recovered = _solve_3x3_mod_l(rows, values)[2].to_bytes(32, "little")

    assert base_mul(recovered) == key_packages[1].verifying_share


def test_packages_survive_pickle_round_trip(dkg_2_of_3: DkgResult) -> None:
    key_packages, public_key_package, intermediates = dkg_2_of_3
    nonces, commitments = commit(key_packages[1], seeded_random(4))
    values = [
        key_packages[1],
        public_key_package,
        nonces,
        commitments,
        intermediates["round1"][1][1],
        intermediates["round2"][1][1][2],
    ]
    for value in values:
        # The bytes come from pickle.dumps just above, never from outside.
        restored = pickle.loads(pickle.dumps(value))  # noqa: S301
        assert restored == value, type(value).__name__
