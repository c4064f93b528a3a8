"""Byte-exact reproduction of the RFC 9591 and ZF frost-core vectors for FROST(Ed25519, SHA-512)."""

from __future__ import annotations

from typing import Any

import pytest

from actors.frost import dkg
from actors.frost.aggregate import aggregate, verify_signature_share
from actors.frost.ciphersuite import (
    IDENTITY_ELEMENT,
    base_mul,
    element_add,
    verify_signature,
)
from actors.frost.keys import KeyPackage, PublicKeyPackage, shares_from_polynomial
from actors.frost.round1 import commit
from actors.frost.round2 import (
    binding_factor_inputs,
    compute_binding_factors,
    make_signing_package,
    sign,
)

from .conftest import fixed_random, load_vector

SIGNING_VECTORS = {
    "rfc9591-frost-ed25519-sha512.json": "group_public_key",
    "zf-frost-ed25519-vectors.json": "verifying_key_key",
    "zf-frost-ed25519-vectors-big-identifier.json": "verifying_key_key",
}


class SigningRun:
    """Every value the signing protocol computes for one vector file."""

    def __init__(self, name: str) -> None:
        self.vector = load_vector(name)
        inputs = self.vector["inputs"]
        self.group_public_key = bytes.fromhex(inputs[SIGNING_VECTORS[name]])
        self.message = bytes.fromhex(inputs["message"])
        self.min_signers = int(self.vector["config"]["MIN_PARTICIPANTS"])
        coefficients = [bytes.fromhex(inputs["group_secret_key"])] + [
            bytes.fromhex(c) for c in inputs["share_polynomial_coefficients"]
        ]
        identifiers = [p["identifier"] for p in inputs["participant_shares"]]

        # The vector's group secret enters only the trusted-dealer share computation.
        self.shares = shares_from_polynomial(coefficients, identifiers)
        self.key_packages = {
            i: KeyPackage(i, share, base_mul(share), self.group_public_key, self.min_signers)
            for i, share in self.shares.items()
        }
        self.public_key_package = PublicKeyPackage(
            {i: kp.verifying_share for i, kp in self.key_packages.items()},
            self.group_public_key,
            self.min_signers,
        )

        self.round_one = {o["identifier"]: o for o in self.vector["round_one_outputs"]["outputs"]}
        self.nonces = {}
        self.commitments = {}
        for identifier, output in self.round_one.items():
            randomness = [
                bytes.fromhex(output["hiding_nonce_randomness"]),
                bytes.fromhex(output["binding_nonce_randomness"]),
            ]
            nonces, commitments = commit(self.key_packages[identifier], fixed_random(randomness))
            self.nonces[identifier] = nonces
            self.commitments[identifier] = commitments

        self.signing_package = make_signing_package(self.commitments.values(), self.message)
        self.signature_shares = {
            i: sign(self.signing_package, self.nonces[i], self.key_packages[i])
            for i in self.signing_package.participants
        }


@pytest.fixture(scope="module", params=sorted(SIGNING_VECTORS))
def run(request: pytest.FixtureRequest) -> SigningRun:
    return SigningRun(request.param)


def test_shares_from_polynomial_matches_vector(run: SigningRun) -> None:
    for participant in run.vector["inputs"]["participant_shares"]:
        identifier = participant["identifier"]
        assert run.shares[identifier].hex() == participant["participant_share"], identifier


def test_group_public_key_matches_vector_secret(run: SigningRun) -> None:
    secret = bytes.fromhex(run.vector["inputs"]["group_secret_key"])
    assert base_mul(secret) == run.group_public_key


def test_participant_list_matches_vector(run: SigningRun) -> None:
    assert list(run.signing_package.participants) == run.vector["inputs"]["participant_list"]


def test_commit_nonces_match_vector(run: SigningRun) -> None:
    for identifier, output in run.round_one.items():
        assert run.nonces[identifier].hiding.hex() == output["hiding_nonce"], identifier
        assert run.nonces[identifier].binding.hex() == output["binding_nonce"], identifier


def test_commit_commitments_match_vector(run: SigningRun) -> None:
    for identifier, output in run.round_one.items():
        commitments = run.commitments[identifier]
        assert commitments.hiding.hex() == output["hiding_nonce_commitment"], identifier
        assert commitments.binding.hex() == output["binding_nonce_commitment"], identifier


def test_binding_factor_inputs_match_vector(run: SigningRun) -> None:
    inputs = binding_factor_inputs(run.group_public_key, run.signing_package)
    for identifier, output in run.round_one.items():
        assert inputs[identifier].hex() == output["binding_factor_input"], identifier


def test_binding_factors_match_vector(run: SigningRun) -> None:
    factors = compute_binding_factors(run.group_public_key, run.signing_package)
    for identifier, output in run.round_one.items():
        assert factors[identifier].hex() == output["binding_factor"], identifier


def test_sign_shares_match_vector(run: SigningRun) -> None:
    for output in run.vector["round_two_outputs"]["outputs"]:
        share = run.signature_shares[output["identifier"]]
        assert share.value.hex() == output["sig_share"], output["identifier"]


def test_verify_signature_share_accepts_vector_shares(run: SigningRun) -> None:
    for identifier, share in run.signature_shares.items():
        verify_signature_share(
            share,
            run.public_key_package.verifying_share(identifier),
            run.signing_package,
            run.group_public_key,
        )


def test_aggregate_matches_vector_signature(run: SigningRun) -> None:
    signature = aggregate(run.signing_package, run.signature_shares, run.public_key_package)
    assert signature.hex() == run.vector["final_output"]["sig"]


def test_vector_signature_verifies_as_ed25519(run: SigningRun) -> None:
    signature = bytes.fromhex(run.vector["final_output"]["sig"])
    verify_signature(run.message, signature, run.group_public_key)


# ZF frost-core DKG vector: three participants, threshold two.


def _dkg_vector() -> dict[str, Any]:
    return load_vector("zf-frost-ed25519-vectors-dkg.json")["inputs"]


DKG_IDENTIFIERS = (1, 2, 3)


def _round1_packages(inputs: dict[str, Any]) -> dict[int, dkg.Round1Package]:
    return {
        i: dkg.Round1Package(
            i,
            tuple(bytes.fromhex(c) for c in inputs[str(i)]["vss_commitments"]),
            bytes.fromhex(inputs[str(i)]["proof_of_knowledge"]),
        )
        for i in DKG_IDENTIFIERS
    }


def _round1_secret(inputs: dict[str, Any], identifier: int) -> dkg.Round1SecretPackage:
    participant = inputs[str(identifier)]
    coefficients = [
        bytes.fromhex(participant["signing_key"]),
        bytes.fromhex(participant["coefficient"]),
    ]
    return dkg.round1_secret_package(identifier, coefficients, 3, 2)


@pytest.mark.parametrize("identifier", DKG_IDENTIFIERS)
def test_dkg_commitment_matches_vector(identifier: int) -> None:
    inputs = _dkg_vector()
    secret = _round1_secret(inputs, identifier)
    assert [c.hex() for c in secret.commitment] == inputs[str(identifier)]["vss_commitments"]


@pytest.mark.parametrize("identifier", DKG_IDENTIFIERS)
def test_dkg_vector_proof_of_knowledge_verifies(identifier: int) -> None:
    dkg.verify_proof_of_knowledge(_round1_packages(_dkg_vector())[identifier])


@pytest.mark.parametrize("identifier", DKG_IDENTIFIERS)
def test_dkg_part2_shares_match_vector(identifier: int) -> None:
    inputs = _dkg_vector()
    others = {j: p for j, p in _round1_packages(inputs).items() if j != identifier}
    _, sent = dkg.part2(_round1_secret(inputs, identifier), others)
    for recipient, package in sent.items():
        expected = inputs[str(recipient)]["signing_shares"][str(identifier)]
        assert package.signing_share.hex() == expected, recipient


@pytest.mark.parametrize("identifier", DKG_IDENTIFIERS)
def test_dkg_part3_key_package_matches_vector(identifier: int) -> None:
    inputs = _dkg_vector()
    participant = inputs[str(identifier)]
    others = {j: p for j, p in _round1_packages(inputs).items() if j != identifier}
    round2_secret, _ = dkg.part2(_round1_secret(inputs, identifier), others)
    received = {
        j: dkg.Round2Package(j, identifier, bytes.fromhex(participant["signing_shares"][str(j)]))
        for j in others
    }

    key_package, public_key_package = dkg.part3(round2_secret, others, received)

    assert key_package.signing_share.hex() == participant["signing_share"]
    assert key_package.verifying_share.hex() == participant["verifying_share"]
    assert key_package.group_public_key.hex() == inputs["verifying_key"]
    assert key_package.min_signers == 2
    assert public_key_package.group_public_key.hex() == inputs["verifying_key"]
    for j in DKG_IDENTIFIERS:
        expected = inputs[str(j)]["verifying_share"]
        assert public_key_package.verifying_shares[j].hex() == expected, j


def test_dkg_group_key_sums_constant_commitments() -> None:
    inputs = _dkg_vector()
    total = IDENTITY_ELEMENT
    for i in DKG_IDENTIFIERS:
        total = element_add(total, bytes.fromhex(inputs[str(i)]["vss_commitments"][0]))
    assert total.hex() == inputs["verifying_key"]
