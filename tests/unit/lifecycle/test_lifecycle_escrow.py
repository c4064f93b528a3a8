"""Unit tests of actors.lifecycle.escrow with software guardian keys."""

from __future__ import annotations

import dataclasses
import itertools
import pickle

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lifecycle_support import generate_keys, seeded_random

from actors.frost.ciphersuite import ONE_SCALAR, scalar_add
from actors.lifecycle.errors import (
    EscrowBundleInvalid,
    EscrowPieceInvalid,
    RecoveredShareMismatch,
    TooFewGuardians,
)
from actors.lifecycle.escrow import (
    EscrowBundle,
    EscrowPiece,
    create_escrow,
    decrypt_piece,
    recover_share,
)
from actors.lifecycle.guardian_keys import PivGuardianKey, SoftwareGuardianKey
from authz.jose import b64url_encode

ESCROW_ID = "escrow-0001"


@pytest.fixture(scope="module")
def guardians() -> list[SoftwareGuardianKey]:
    return [SoftwareGuardianKey.generate() for _ in range(5)]


@pytest.fixture(scope="module")
def escrowed(guardians: list[SoftwareGuardianKey]) -> tuple[object, EscrowBundle]:
    keys, _ = generate_keys()
    bundle = create_escrow(
        ESCROW_ID, keys[2], [g.public_key() for g in guardians], 3, seeded_random(21)
    )
    return keys[2], bundle


def test_recover_share_returns_exact_share_from_any_three(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    key_package, bundle = escrowed
    for subset in itertools.combinations(range(1, 6), 3):
        pieces = {i: decrypt_piece(bundle, i, guardians[i - 1]) for i in subset}
        assert recover_share(bundle, pieces).signing_share == key_package.signing_share


def test_recover_share_rejects_two_of_three(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    pieces = {i: decrypt_piece(bundle, i, guardians[i - 1]) for i in (1, 4)}
    with pytest.raises(TooFewGuardians, match=r"needs pieces from 3 guardians, got 2 \(\[1, 4\]\)"):
        recover_share(bundle, pieces)


def test_decrypt_piece_rejects_wrong_guardian(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    with pytest.raises(EscrowPieceInvalid, match="use that guardian's YubiKey") as caught:
        decrypt_piece(bundle, 1, guardians[1])
    assert caught.value.guardian_index == 1


def test_decrypt_piece_rejects_tampered_ciphertext(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    piece = bundle.piece(2)
    flipped = bytes([piece.ciphertext[0] ^ 1]) + piece.ciphertext[1:]
    pieces = tuple(
        dataclasses.replace(p, ciphertext=flipped) if p.guardian_index == 2 else p
        for p in bundle.pieces
    )
    tampered = dataclasses.replace(bundle, pieces=pieces)
    with pytest.raises(EscrowPieceInvalid, match="failed decryption"):
        decrypt_piece(tampered, 2, guardians[1])


def test_decrypt_piece_rejects_piece_moved_to_other_escrow(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    renamed = dataclasses.replace(bundle, escrow_id="escrow-0002")
    with pytest.raises(EscrowPieceInvalid, match="moved from another escrow"):
        decrypt_piece(renamed, 3, guardians[2])


def test_decrypt_piece_rejects_missing_index(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    with pytest.raises(EscrowPieceInvalid, match="has no piece for guardian 9"):
        decrypt_piece(bundle, 9, guardians[0])


def test_recover_share_rejects_altered_piece_and_names_guardian(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    pieces = {i: decrypt_piece(bundle, i, guardians[i - 1]) for i in (1, 2, 3)}
    pieces[2] = EscrowPiece(2, scalar_add(pieces[2].value, ONE_SCALAR))
    with pytest.raises(EscrowPieceInvalid, match="does not match the escrow commitment") as caught:
        recover_share(bundle, pieces)
    assert caught.value.guardian_index == 2


def test_recover_share_rejects_bundle_of_other_signer(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    keys, _ = generate_keys()
    pieces = {i: decrypt_piece(bundle, i, guardians[i - 1]) for i in (1, 2, 3)}
    swapped = dataclasses.replace(bundle, verifying_share=keys[1].verifying_share)
    with pytest.raises(RecoveredShareMismatch, match="does not match signer 2's verifying share"):
        recover_share(swapped, pieces)


def test_escrow_bundle_json_round_trip(escrowed: tuple[object, EscrowBundle]) -> None:
    _, bundle = escrowed
    assert EscrowBundle.from_json(bundle.to_json()) == bundle


def test_escrow_bundle_json_contains_no_share(escrowed: tuple[object, EscrowBundle]) -> None:
    key_package, bundle = escrowed
    assert b64url_encode(key_package.signing_share).encode() not in bundle.to_json()


def test_escrow_bundle_from_json_rejects_other_version(
    escrowed: tuple[object, EscrowBundle],
) -> None:
    _, bundle = escrowed
    altered = bundle.to_json().replace(b'"v":1', b'"v":2', 1)
    with pytest.raises(EscrowBundleInvalid, match="does not parse: version 2"):
        EscrowBundle.from_json(altered)


def test_escrow_bundle_check_rejects_commitment_of_other_share(
    escrowed: tuple[object, EscrowBundle],
) -> None:
    _, bundle = escrowed
    keys, _ = generate_keys()
    altered = dataclasses.replace(bundle, verifying_share=keys[1].verifying_share)
    with pytest.raises(EscrowBundleInvalid, match="does not start with the signer's verifying"):
        altered.check()


def test_create_escrow_rejects_threshold_above_guardians(
    guardians: list[SoftwareGuardianKey],
) -> None:
    keys, _ = generate_keys()
    with pytest.raises(EscrowBundleInvalid, match="cannot create escrow"):
        create_escrow(ESCROW_ID, keys[1], [g.public_key() for g in guardians[:2]], 3)


def test_create_escrow_rejects_non_p256_key() -> None:
    keys, _ = generate_keys()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(EscrowBundleInvalid, match="guardian 2's key is not a P-256"):
        create_escrow(ESCROW_ID, keys[1], [p256, p384], 2)


def test_escrow_piece_repr_hides_value(
    guardians: list[SoftwareGuardianKey], escrowed: tuple[object, EscrowBundle]
) -> None:
    _, bundle = escrowed
    piece = decrypt_piece(bundle, 1, guardians[0])
    assert piece.value.hex() not in repr(piece)


def test_software_guardian_key_repr_hides_private_key(
    guardians: list[SoftwareGuardianKey],
) -> None:
    assert "private_key=<redacted>" in repr(guardians[0])


class _FakePivSession:
    """Stands in for yubikit's PivSession, which needs a YubiKey that is not present here."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.calls: list[object] = []

    def calculate_secret(self, slot: object, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self.calls.append(slot)
        return self._key.exchange(ec.ECDH(), peer_public_key)


def test_piv_guardian_key_forwards_ecdh_to_slot() -> None:
    keys, _ = generate_keys()
    private_key = ec.generate_private_key(ec.SECP256R1())
    session = _FakePivSession(private_key)
    guardian = PivGuardianKey(session, "KEY_MANAGEMENT", private_key.public_key())
    other = SoftwareGuardianKey.generate()
    bundle = create_escrow(ESCROW_ID, keys[1], [private_key.public_key(), other.public_key()], 2)
    pieces = {1: decrypt_piece(bundle, 1, guardian), 2: decrypt_piece(bundle, 2, other)}
    assert recover_share(bundle, pieces).signing_share == keys[1].signing_share
    assert session.calls == ["KEY_MANAGEMENT"]


def test_escrow_piece_invalid_survives_pickling() -> None:
    error = EscrowPieceInvalid("piece 2 is wrong", guardian_index=2, signer=3)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 -- bytes made by this test
    assert str(copy) == "piece 2 is wrong"
    assert copy.guardian_index == 2
    assert copy.signer == 3
