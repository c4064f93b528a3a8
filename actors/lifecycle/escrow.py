"""Guardian escrow of a signing share: Shamir pieces, each encrypted to a guardian's P-256 key.

A signer's signing share s is the constant term of a random polynomial of degree t_g - 1 over
the Ed25519 scalar field. Guardian g receives the piece f(g), so any t_g guardians interpolate
s and fewer learn nothing about it (Shamir, as RFC 9591 Appendix C.1 splits a secret). All
scalar arithmetic runs in libsodium through ``actors.frost``. The Feldman commitment to the
polynomial (RFC 9591 Appendix C.2) is public, so each decrypted piece is checked on its own and
a bad one is named.

Each piece is encrypted to its guardian with ECIES on P-256: an ephemeral P-256 key, ECDH with
the guardian's public key, HKDF-SHA256 (RFC 5869), then AES-256-GCM. P-256 is the key type a
YubiKey PIV slot stores, so the guardian's private key can stay inside the YubiKey. The
associated data binds the escrow id, the signer identifier, the guardian index, the guardian
key's RFC 7638 thumbprint, the group key and the ephemeral key, so a piece cannot be moved to
another slot.

Security:
    Pieces must never be stored beside each other in clear: t_g decrypted pieces are the
    signing share. Decrypt each piece on its guardian's machine and bring only t_g of them to
    the recovering signer, then destroy them. The ``EscrowBundle`` itself holds only
    ciphertexts and public values, so it can be stored anywhere, also next to the signer.

    A recovered share rebuilds one signer, never the group secret, because t_g pieces of one
    signer yield only that signer's share.

Limitations:
    A bundle escrows one signing share, so a share refresh makes every bundle of the group
    obsolete: create new bundles after each refresh and destroy the old ones.
    ``actors.lifecycle.guardian_keys.PivGuardianKey`` needs the ``yubikey-manager`` package
    and a YubiKey, so its tests use a stand-in for the PIV session.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from actors.frost.ciphersuite import (
    ZERO_SCALAR,
    base_mul,
    decode_element,
    decode_scalar,
    scalar_add,
    scalar_mul,
    scalar_random,
)
from actors.frost.errors import FrostError
from actors.frost.keys import (
    KeyPackage,
    check_threshold,
    commit_polynomial,
    derive_interpolating_value,
    evaluate_commitment,
    evaluate_polynomial,
)
from actors.lifecycle.channel import RandomSource, check_session_id
from actors.lifecycle.errors import (
    EscrowBundleInvalid,
    EscrowPieceInvalid,
    LifecycleError,
    RecoveredShareMismatch,
    TooFewGuardians,
)
from actors.lifecycle.guardian_keys import GuardianKey, guardian_key_id
from authz.errors import AuthzError
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact

ESCROW_FORMAT_VERSION = 1
HKDF_INFO = b"ztmint escrow piece v1"
AES_KEY_SIZE = 32
GCM_NONCE_SIZE = 12


@dataclass(frozen=True)
class EncryptedPiece:
    """One guardian's piece, encrypted to that guardian.

    Attributes:
        guardian_index: x-coordinate of the piece (1..n_g).
        guardian_key_id: RFC 7638 thumbprint of the guardian's P-256 public key.
        ephemeral_public_key: the sender's ephemeral P-256 key, X9.62 uncompressed (65 bytes).
        nonce: the 12-byte AES-GCM nonce.
        ciphertext: AES-256-GCM ciphertext and tag of the 32-byte piece.
    """

    guardian_index: int
    guardian_key_id: str
    ephemeral_public_key: bytes
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class EscrowBundle:
    """The escrow of one signer's signing share: public values and ciphertexts only.

    Attributes:
        escrow_id: id of this escrow, 8 to 64 of [A-Za-z0-9_-].
        signer: FROST identifier of the escrowed signer.
        group_public_key: the group key.
        verifying_share: the signer's verifying share, which a recovered share must match.
        min_signers: the group's threshold t, needed to rebuild the key package.
        guardian_threshold: t_g, the number of guardians needed to recover.
        commitment: Feldman commitment to the escrow polynomial, constant term first (the
            constant term's commitment is ``verifying_share``).
        pieces: one encrypted piece per guardian.
    """

    escrow_id: str
    signer: int
    group_public_key: bytes
    verifying_share: bytes
    min_signers: int
    guardian_threshold: int
    commitment: tuple[bytes, ...]
    pieces: tuple[EncryptedPiece, ...]

    def to_json(self) -> bytes:
        """Serialise the bundle as UTF-8 JSON; binary values are base64url."""
        document = {
            "v": ESCROW_FORMAT_VERSION,
            "escrow_id": self.escrow_id,
            "signer": self.signer,
            "group_public_key": b64url_encode(self.group_public_key),
            "verifying_share": b64url_encode(self.verifying_share),
            "min_signers": self.min_signers,
            "guardian_threshold": self.guardian_threshold,
            "commitment": [b64url_encode(element) for element in self.commitment],
            "pieces": [
                {
                    "guardian_index": piece.guardian_index,
                    "guardian_key_id": piece.guardian_key_id,
                    "ephemeral_public_key": b64url_encode(piece.ephemeral_public_key),
                    "nonce": b64url_encode(piece.nonce),
                    "ciphertext": b64url_encode(piece.ciphertext),
                }
                for piece in self.pieces
            ],
        }
        return json_dumps_compact(document)

    @classmethod
    def from_json(cls, data: bytes) -> EscrowBundle:
        """Parse and check a bundle made by ``to_json``.

        Raises:
            EscrowBundleInvalid: the JSON does not parse, has another version, or is
                inconsistent (see ``check``).
        """
        try:
            document = json.loads(data.decode("utf-8"))
            if document["v"] != ESCROW_FORMAT_VERSION:
                raise ValueError(f"version {document['v']!r}, expected {ESCROW_FORMAT_VERSION}")
            bundle = cls(
                escrow_id=document["escrow_id"],
                signer=int(document["signer"]),
                group_public_key=b64url_decode(document["group_public_key"]),
                verifying_share=b64url_decode(document["verifying_share"]),
                min_signers=int(document["min_signers"]),
                guardian_threshold=int(document["guardian_threshold"]),
                commitment=tuple(b64url_decode(c) for c in document["commitment"]),
                pieces=tuple(
                    EncryptedPiece(
                        guardian_index=int(piece["guardian_index"]),
                        guardian_key_id=str(piece["guardian_key_id"]),
                        ephemeral_public_key=b64url_decode(piece["ephemeral_public_key"]),
                        nonce=b64url_decode(piece["nonce"]),
                        ciphertext=b64url_decode(piece["ciphertext"]),
                    )
                    for piece in document["pieces"]
                ),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AuthzError) as exc:
            raise EscrowBundleInvalid(f"escrow bundle does not parse: {exc}") from exc
        bundle.check()
        return bundle

    def check(self) -> None:
        """Check that the bundle is consistent with itself.

        Raises:
            EscrowBundleInvalid: the id, threshold, commitment or piece indices are invalid.
        """
        try:
            check_session_id(self.escrow_id)
            check_threshold(self.guardian_threshold, len(self.pieces))
            for element in (self.group_public_key, self.verifying_share, *self.commitment):
                decode_element(element)
        except (LifecycleError, FrostError) as exc:
            raise EscrowBundleInvalid(
                f"escrow bundle is invalid: {exc}", signer=self.signer
            ) from exc
        if len(self.commitment) != self.guardian_threshold:
            raise EscrowBundleInvalid(
                f"escrow commitment has {len(self.commitment)} elements, expected the "
                f"guardian threshold {self.guardian_threshold}",
                signer=self.signer,
            )
        if self.commitment[0] != self.verifying_share:
            raise EscrowBundleInvalid(
                "escrow commitment does not start with the signer's verifying share, so the "
                "pieces would not recover this signer's share",
                signer=self.signer,
            )
        indices = [piece.guardian_index for piece in self.pieces]
        if sorted(indices) != list(range(1, len(indices) + 1)):
            raise EscrowBundleInvalid(
                f"escrow guardian indices are {indices}, expected 1..{len(indices)}",
                signer=self.signer,
            )

    def piece(self, guardian_index: int) -> EncryptedPiece:
        """Return the encrypted piece of ``guardian_index``.

        Raises:
            EscrowPieceInvalid: the bundle has no piece with that index.
        """
        for piece in self.pieces:
            if piece.guardian_index == guardian_index:
                return piece
        raise EscrowPieceInvalid(
            f"escrow {self.escrow_id} has no piece for guardian {guardian_index}, it has "
            f"guardians 1..{len(self.pieces)}",
            guardian_index=guardian_index,
            signer=self.signer,
        )


@dataclass(frozen=True, repr=False)
class EscrowPiece:
    """A decrypted piece: one guardian's point f(guardian_index) of the escrow polynomial.

    Attributes:
        guardian_index: the piece's x-coordinate.
        value: f(guardian_index), a 32-byte scalar.

    Security:
        Secret: t_g of these are the signing share. ``repr`` redacts ``value``.
    """

    guardian_index: int
    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"EscrowPiece(guardian_index={self.guardian_index}, value=<redacted>)"


def create_escrow(
    escrow_id: str,
    key_package: KeyPackage,
    guardian_public_keys: Sequence[ec.EllipticCurvePublicKey],
    guardian_threshold: int,
    rng: RandomSource = os.urandom,
) -> EscrowBundle:
    """Split a signer's signing share among guardians and encrypt each piece to its guardian.

    Args:
        escrow_id: id of this escrow, 8 to 64 of [A-Za-z0-9_-].
        key_package: the signer's key package.
        guardian_public_keys: the guardians' P-256 keys; guardian i + 1 gets index i + 1.
        guardian_threshold: t_g, with 2 <= t_g <= number of guardians.
        rng: source of the polynomial coefficients and AES-GCM nonces. The ephemeral P-256
            keys come from ``cryptography``'s own generator.

    Raises:
        EscrowBundleInvalid: the id or the threshold is invalid, or a key is not P-256.
    """
    try:
        check_session_id(escrow_id)
        check_threshold(guardian_threshold, len(guardian_public_keys))
    except (LifecycleError, FrostError) as exc:
        raise EscrowBundleInvalid(f"cannot create escrow: {exc}") from exc
    for index, key in enumerate(guardian_public_keys, start=1):
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise EscrowBundleInvalid(f"guardian {index}'s key is not a P-256 public key")

    coefficients = (
        key_package.signing_share,
        *(scalar_random(rng) for _ in range(guardian_threshold - 1)),
    )
    commitment = commit_polynomial(coefficients)
    pieces = []
    for index, guardian_key in enumerate(guardian_public_keys, start=1):
        value = evaluate_polynomial(coefficients, index)
        pieces.append(_encrypt_piece(escrow_id, key_package, index, guardian_key, value, rng))
    bundle = EscrowBundle(
        escrow_id=escrow_id,
        signer=key_package.identifier,
        group_public_key=key_package.group_public_key,
        verifying_share=key_package.verifying_share,
        min_signers=key_package.min_signers,
        guardian_threshold=guardian_threshold,
        commitment=commitment,
        pieces=tuple(pieces),
    )
    bundle.check()
    return bundle


def decrypt_piece(
    bundle: EscrowBundle, guardian_index: int, guardian_key: GuardianKey
) -> EscrowPiece:
    """Decrypt a guardian's piece and check it against the escrow commitment.

    Raises:
        EscrowPieceInvalid: the bundle has no such piece, the key is not the guardian's,
            the ciphertext or its associated data was altered, or the piece does not match
            the commitment.
    """
    piece = bundle.piece(guardian_index)
    key_id = guardian_key_id(guardian_key.public_key())
    if key_id != piece.guardian_key_id:
        raise EscrowPieceInvalid(
            f"guardian key {key_id} is not the key piece {guardian_index} of escrow "
            f"{bundle.escrow_id} was encrypted to ({piece.guardian_key_id}); use that "
            "guardian's YubiKey",
            guardian_index=guardian_index,
            signer=bundle.signer,
        )
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), piece.ephemeral_public_key
        )
        key = _derive_key(guardian_key.ecdh(ephemeral), piece.ephemeral_public_key, key_id)
        aad = _associated_data(
            bundle.escrow_id,
            bundle.signer,
            guardian_index,
            key_id,
            bundle.group_public_key,
            piece.ephemeral_public_key,
        )
        value = decode_scalar(AESGCM(key).decrypt(piece.nonce, piece.ciphertext, aad))
    except (InvalidTag, ValueError, FrostError) as exc:
        raise EscrowPieceInvalid(
            f"piece {guardian_index} of escrow {bundle.escrow_id} failed decryption: it was "
            "altered or moved from another escrow",
            guardian_index=guardian_index,
            signer=bundle.signer,
        ) from exc
    decrypted = EscrowPiece(guardian_index, value)
    _check_piece(bundle, decrypted)
    return decrypted


def recover_share(
    bundle: EscrowBundle, guardian_decryptions: Mapping[int, EscrowPiece]
) -> KeyPackage:
    """Interpolate the signing share from t_g guardians' pieces and check it.

    Args:
        bundle: the signer's escrow bundle.
        guardian_decryptions: decrypted pieces by guardian index; at least t_g of them.

    Returns:
        The signer's key package, whose verifying share matches the bundle.

    Raises:
        TooFewGuardians: fewer than t_g pieces were given.
        EscrowPieceInvalid: a piece is filed under another index or fails the commitment.
        RecoveredShareMismatch: the interpolated share does not match the verifying share.
    """
    if len(guardian_decryptions) < bundle.guardian_threshold:
        raise TooFewGuardians(
            f"escrow {bundle.escrow_id} of signer {bundle.signer} needs pieces from "
            f"{bundle.guardian_threshold} guardians, got {len(guardian_decryptions)} "
            f"({sorted(guardian_decryptions)}): ask more guardians to decrypt their pieces",
            signer=bundle.signer,
        )
    for index, piece in guardian_decryptions.items():
        if piece.guardian_index != index:
            raise EscrowPieceInvalid(
                f"piece filed under guardian {index} is guardian {piece.guardian_index}'s",
                guardian_index=index,
                signer=bundle.signer,
            )
        _check_piece(bundle, piece)

    # Lagrange interpolation at zero over exactly t_g pieces.
    chosen = sorted(guardian_decryptions)[: bundle.guardian_threshold]
    signing_share = ZERO_SCALAR
    for index in chosen:
        weight = derive_interpolating_value(chosen, index)
        signing_share = scalar_add(
            signing_share, scalar_mul(weight, guardian_decryptions[index].value)
        )
    if base_mul(signing_share) != bundle.verifying_share:
        raise RecoveredShareMismatch(
            f"share recovered from guardians {chosen} does not match signer {bundle.signer}'s "
            "verifying share; the bundle belongs to another key",
            signer=bundle.signer,
        )
    return KeyPackage(
        bundle.signer,
        signing_share,
        bundle.verifying_share,
        bundle.group_public_key,
        bundle.min_signers,
    )


def _check_piece(bundle: EscrowBundle, piece: EscrowPiece) -> None:
    if base_mul(piece.value) != evaluate_commitment(bundle.commitment, piece.guardian_index):
        raise EscrowPieceInvalid(
            f"piece {piece.guardian_index} of escrow {bundle.escrow_id} does not match the "
            "escrow commitment; this guardian's piece is wrong",
            guardian_index=piece.guardian_index,
            signer=bundle.signer,
        )


def _encrypt_piece(
    escrow_id: str,
    key_package: KeyPackage,
    guardian_index: int,
    guardian_key: ec.EllipticCurvePublicKey,
    value: bytes,
    rng: RandomSource,
) -> EncryptedPiece:
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    ephemeral_public = ephemeral.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint
    )
    key_id = guardian_key_id(guardian_key)
    key = _derive_key(ephemeral.exchange(ec.ECDH(), guardian_key), ephemeral_public, key_id)
    nonce = rng(GCM_NONCE_SIZE)
    aad = _associated_data(
        escrow_id,
        key_package.identifier,
        guardian_index,
        key_id,
        key_package.group_public_key,
        ephemeral_public,
    )
    ciphertext = AESGCM(key).encrypt(nonce, value, aad)
    return EncryptedPiece(guardian_index, key_id, ephemeral_public, nonce, ciphertext)


def _derive_key(shared_secret: bytes, ephemeral_public: bytes, guardian_key_id: str) -> bytes:
    # Both public keys go into the info so that the AES key is bound to this exchange.
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=AES_KEY_SIZE,
        salt=None,
        info=HKDF_INFO + b"|" + ephemeral_public + b"|" + guardian_key_id.encode("ascii"),
    )
    return hkdf.derive(shared_secret)


def _associated_data(
    escrow_id: str,
    signer: int,
    guardian_index: int,
    guardian_key_id: str,
    group_public_key: bytes,
    ephemeral_public: bytes,
) -> bytes:
    return json_dumps_compact(
        {
            "v": ESCROW_FORMAT_VERSION,
            "escrow_id": escrow_id,
            "signer": signer,
            "guardian_index": guardian_index,
            "guardian_key_id": guardian_key_id,
            "group_public_key": b64url_encode(group_public_key),
            "ephemeral_public_key": b64url_encode(ephemeral_public),
        }
    )
