"""Signed checkpoints: round trip, the exact text format, and each rejection."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.jose import b64url_decode
from mint.kms import LocalKms
from mint.transparency.checkpoint import (
    ECDSA_P256_NOTE_TYPE,
    MAX_CHECKPOINT_LENGTH,
    MAX_SIGNATURES,
    Checkpoint,
    EcdsaP256NoteSigner,
    EcdsaP256NoteVerifier,
    KmsNoteSigner,
    ecdsa_p256_key_id,
    parse_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
    verify_checkpoint_extends,
)
from mint.transparency.errors import (
    CheckpointMalformed,
    CheckpointOriginMismatch,
    CheckpointSignatureInvalid,
    InconsistentTrees,
    TransparencyError,
)
from mint.transparency.merkle import EMPTY_ROOT, MerkleTree, leaf_hash

VECTORS = Path(__file__).parents[2] / "vectors" / "transparency"
ORIGIN = "audit.ztmint.example/log"
EM_DASH = "\N{EM DASH}"


def private_key(scalar: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(scalar, ec.SECP256R1())


def log_signer() -> EcdsaP256NoteSigner:
    return EcdsaP256NoteSigner(private_key(0x5EED), ORIGIN)


def log_verifier() -> EcdsaP256NoteVerifier:
    return EcdsaP256NoteVerifier(private_key(0x5EED).public_key(), ORIGIN)


def sample_tree(size: int) -> MerkleTree:
    return MerkleTree(leaf_hash(f"event {number}".encode()) for number in range(size))


def sample_checkpoint(size: int = 7) -> Checkpoint:
    return Checkpoint(origin=ORIGIN, size=size, root=sample_tree(size).root())


def signed_text(size: int = 7) -> str:
    return sign_checkpoint(sample_checkpoint(size), log_signer())


def replace_line(text: str, number: int, line: str) -> str:
    lines = text.split("\n")
    lines[number] = line
    return "\n".join(lines)


# Round trip and format.


def test_sign_checkpoint_round_trips_through_verify() -> None:
    checkpoint = sample_checkpoint()
    text = sign_checkpoint(checkpoint, log_signer())
    assert verify_checkpoint(text, log_verifier(), origin=ORIGIN) == checkpoint


def test_sign_checkpoint_writes_exact_layout() -> None:
    checkpoint = sample_checkpoint(7)
    lines = signed_text(7).split("\n")
    encoded_root = base64.b64encode(checkpoint.root).decode()
    assert lines[:4] == [ORIGIN, "7", encoded_root, ""]
    assert lines[4].startswith(f"{EM_DASH} {ORIGIN} ")
    assert lines[5:] == [""]


def test_sign_checkpoint_signature_layout() -> None:
    signature_line = signed_text().split("\n")[4]
    decoded = base64.b64decode(signature_line.rsplit(" ", 1)[1], validate=True)
    assert decoded[:4] == log_signer().key_id
    assert len(decoded) == 4 + 64


def test_ecdsa_p256_key_id_follows_signed_note_construction() -> None:
    public_key = private_key(0x5EED).public_key()
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = hashlib.sha256(f"{ORIGIN}\n".encode() + ECDSA_P256_NOTE_TYPE + spki).digest()[:4]
    assert ecdsa_p256_key_id(ORIGIN, public_key) == expected


def test_verify_checkpoint_accepts_bytes() -> None:
    assert verify_checkpoint(signed_text().encode(), log_verifier()) == sample_checkpoint()


def test_verify_checkpoint_accepts_empty_tree() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT)
    text = sign_checkpoint(checkpoint, log_signer())
    assert text.split("\n")[1] == "0"
    assert verify_checkpoint(text, log_verifier()) == checkpoint


def test_verify_checkpoint_accepts_largest_tree_size() -> None:
    checkpoint = Checkpoint(origin=ORIGIN, size=2**64 - 1, root=EMPTY_ROOT)
    text = sign_checkpoint(checkpoint, log_signer())
    assert verify_checkpoint(text, log_verifier()).size == 2**64 - 1


def test_verify_checkpoint_skips_signatures_by_other_keys() -> None:
    witness = EcdsaP256NoteSigner(private_key(0xC0516), "witness.example/w1")
    text = signed_text()
    note_text = text.split("\n\n")[0] + "\n"
    cosignature = base64.b64encode(witness.key_id + witness.sign(note_text.encode())).decode()
    cosigned = f"{text}{EM_DASH} witness.example/w1 {cosignature}\n"
    witness_verifier = EcdsaP256NoteVerifier(
        private_key(0xC0516).public_key(), "witness.example/w1"
    )
    assert verify_checkpoint(cosigned, log_verifier()) == sample_checkpoint()
    assert verify_checkpoint(cosigned, witness_verifier) == sample_checkpoint()


def test_kms_note_signer_signs_with_local_kms(tmp_path: Path) -> None:
    kms = LocalKms(tmp_path / "kms.pem")
    jwk = kms.public_jwk()
    public_key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(b64url_decode(jwk["x"]), "big"),
        int.from_bytes(b64url_decode(jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    text = sign_checkpoint(sample_checkpoint(), KmsNoteSigner(kms, public_key, ORIGIN))
    verifier = EcdsaP256NoteVerifier(public_key, ORIGIN)
    assert verify_checkpoint(text, verifier) == sample_checkpoint()


def test_parse_checkpoint_reads_c2sp_example() -> None:
    text = (VECTORS / "c2sp-tlog-checkpoint-example.txt").read_bytes()
    signed = parse_checkpoint(text)
    assert signed.checkpoint.origin == "example.com/behind-the-sofa"
    assert signed.checkpoint.size == 20852163
    assert signed.checkpoint.root == base64.b64decode(
        "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    )
    assert [entry.key_name for entry in signed.signatures] == ["example.com/behind-the-sofa"]
    assert len(signed.signatures[0].key_id) == 4


def test_verify_checkpoint_rejects_c2sp_example_for_our_key() -> None:
    text = (VECTORS / "c2sp-tlog-checkpoint-example.txt").read_text()
    verifier = EcdsaP256NoteVerifier(
        private_key(0x5EED).public_key(), "example.com/behind-the-sofa"
    )
    with pytest.raises(CheckpointSignatureInvalid, match="has no signature by key"):
        verify_checkpoint(text, verifier)


# Signature and origin rejections.


@pytest.mark.parametrize(
    ("line_number", "replacement"),
    [
        (0, "audit.ztmint.example/other"),
        (1, "8"),
        (2, base64.b64encode(EMPTY_ROOT).decode()),
    ],
    ids=["origin", "size", "root"],
)
def test_verify_checkpoint_rejects_edited_body(line_number: int, replacement: str) -> None:
    tampered = replace_line(signed_text(), line_number, replacement)
    with pytest.raises(CheckpointSignatureInvalid, match="is invalid: the checkpoint was altered"):
        verify_checkpoint(tampered, log_verifier())


def test_verify_checkpoint_rejects_altered_signature() -> None:
    text = signed_text()
    line = text.split("\n")[4]
    prefix, encoded = line.rsplit(" ", 1)
    decoded = bytearray(base64.b64decode(encoded))
    decoded[-1] ^= 0x01
    tampered = replace_line(text, 4, f"{prefix} {base64.b64encode(bytes(decoded)).decode()}")
    with pytest.raises(CheckpointSignatureInvalid, match="is invalid"):
        verify_checkpoint(tampered, log_verifier())


def test_verify_checkpoint_rejects_other_key_with_same_name() -> None:
    other = EcdsaP256NoteVerifier(private_key(0xBAD).public_key(), ORIGIN)
    with pytest.raises(CheckpointSignatureInvalid) as caught:
        verify_checkpoint(signed_text(), other)
    assert f"has no signature by key {ORIGIN!r} with ID {other.key_id.hex()}" in str(caught.value)
    assert caught.value.reason == "checkpoint_signature_invalid"


def test_verify_checkpoint_rejects_unexpected_origin() -> None:
    with pytest.raises(CheckpointOriginMismatch) as caught:
        verify_checkpoint(signed_text(), log_verifier(), origin="audit.ztmint.example/staging")
    assert "expected 'audit.ztmint.example/staging'" in str(caught.value)
    assert caught.value.reason == "checkpoint_origin_mismatch"


def test_ecdsa_verifier_rejects_signature_of_wrong_length() -> None:
    message = sample_checkpoint().note_text().encode()
    assert log_verifier().verify(message, log_signer().sign(message)[:63]) is False


def test_ecdsa_verifier_rejects_zero_signature() -> None:
    message = sample_checkpoint().note_text().encode()
    assert log_verifier().verify(message, bytes(64)) is False


# Format rejections.


def test_parse_checkpoint_rejects_invalid_utf8() -> None:
    with pytest.raises(CheckpointMalformed, match="is not valid UTF-8 at byte 3"):
        parse_checkpoint(b"log\xff\n1\n")


def test_parse_checkpoint_rejects_oversized_text() -> None:
    with pytest.raises(CheckpointMalformed, match="more than the limit"):
        parse_checkpoint("a" * (MAX_CHECKPOINT_LENGTH + 1))


@pytest.mark.parametrize("character", ["\r", "\t", "\x00", "\x7f"], ids=repr)
def test_parse_checkpoint_rejects_control_character(character: str) -> None:
    text = signed_text().replace("\n", character + "\n", 1)
    with pytest.raises(CheckpointMalformed, match="control character"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_missing_blank_line() -> None:
    text = signed_text().replace("\n\n", "\n")
    with pytest.raises(CheckpointMalformed, match="no blank line"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_extension_line() -> None:
    text = signed_text().replace("\n\n", "\nextension\n\n")
    with pytest.raises(CheckpointMalformed, match="has 4 lines, expected 3"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_missing_root_line() -> None:
    lines = signed_text().split("\n")
    text = "\n".join([lines[0], lines[1], *lines[3:]])
    with pytest.raises(CheckpointMalformed, match="has 2 lines, expected 3"):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    ("origin", "problem"),
    [("", "is empty"), ("audit log", "contains whitespace"), ("audit\u00a0log", "whitespace")],
    ids=["empty", "space", "no-break-space"],
)
def test_parse_checkpoint_rejects_bad_origin(origin: str, problem: str) -> None:
    text = replace_line(signed_text(), 0, origin)
    with pytest.raises(CheckpointMalformed, match=problem):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "size_line",
    ["07", "00", "+7", "-7", " 7", "7 ", "", "0x7", "\N{FULLWIDTH DIGIT SEVEN}", "7.0"],
)
def test_parse_checkpoint_rejects_non_canonical_size(size_line: str) -> None:
    text = replace_line(signed_text(), 1, size_line)
    with pytest.raises(CheckpointMalformed, match="is not ASCII decimal without leading zeros"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_size_above_uint64() -> None:
    text = replace_line(signed_text(), 1, str(2**64))
    with pytest.raises(CheckpointMalformed, match="is larger than 2\\*\\*64 - 1"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_short_root() -> None:
    text = replace_line(signed_text(), 2, base64.b64encode(bytes(31)).decode())
    with pytest.raises(CheckpointMalformed, match="decodes to 31 bytes, expected 32"):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "root_line",
    [
        base64.b64encode(EMPTY_ROOT).decode().rstrip("="),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
        "!" + base64.b64encode(EMPTY_ROOT).decode()[1:],
    ],
    ids=["unpadded", "url-safe", "bad-character"],
)
def test_parse_checkpoint_rejects_non_standard_base64_root(root_line: str) -> None:
    text = replace_line(signed_text(), 2, root_line)
    with pytest.raises(CheckpointMalformed, match="root hash is not standard padded base64"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_non_canonical_base64_root() -> None:
    canonical = base64.b64encode(EMPTY_ROOT).decode()
    # 32 bytes leave two unused bits in the last character before "=", so set one of them.
    last = canonical[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    altered = canonical[:-2] + alphabet[alphabet.index(last) | 1] + "="
    text = replace_line(signed_text(), 2, altered)
    with pytest.raises(CheckpointMalformed, match="root hash is not canonical base64"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_missing_signature() -> None:
    text = signed_text().split("\n\n")[0] + "\n\n"
    with pytest.raises(CheckpointMalformed, match="no signature line"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_missing_final_newline() -> None:
    with pytest.raises(CheckpointMalformed, match="does not end with a newline"):
        parse_checkpoint(signed_text().rstrip("\n"))


def test_parse_checkpoint_rejects_hyphen_for_em_dash() -> None:
    text = signed_text().replace(EM_DASH, "-")
    with pytest.raises(CheckpointMalformed, match="does not start with an em dash"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_extra_field_in_signature_line() -> None:
    text = signed_text().replace(f"{EM_DASH} {ORIGIN} ", f"{EM_DASH} {ORIGIN}  ")
    with pytest.raises(CheckpointMalformed, match="has 3 space-separated fields"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_plus_in_key_name() -> None:
    text = signed_text().replace(f"{EM_DASH} {ORIGIN} ", f"{EM_DASH} log+1 ")
    with pytest.raises(CheckpointMalformed, match="contains '\\+'"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_signature_without_body() -> None:
    text = replace_line(
        signed_text(), 4, f"{EM_DASH} {ORIGIN} {base64.b64encode(bytes(4)).decode()}"
    )
    with pytest.raises(CheckpointMalformed, match="decodes to 4 bytes"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_invalid_signature_base64() -> None:
    text = replace_line(signed_text(), 4, f"{EM_DASH} {ORIGIN} not*base64")
    with pytest.raises(CheckpointMalformed, match="signature on line 1 is not standard"):
        parse_checkpoint(text)


def test_parse_checkpoint_rejects_too_many_signatures() -> None:
    text = signed_text()
    signature_line = text.split("\n")[4] + "\n"
    with pytest.raises(CheckpointMalformed, match=f"more than the limit of {MAX_SIGNATURES}"):
        parse_checkpoint(text + signature_line * MAX_SIGNATURES)


def test_parse_checkpoint_accepts_the_maximum_number_of_signatures() -> None:
    text = signed_text()
    signature_line = text.split("\n")[4] + "\n"
    signed = parse_checkpoint(text + signature_line * (MAX_SIGNATURES - 1))
    assert len(signed.signatures) == MAX_SIGNATURES


def test_checkpoint_malformed_reason_is_stable() -> None:
    with pytest.raises(CheckpointMalformed) as caught:
        parse_checkpoint("")
    assert caught.value.reason == "checkpoint_malformed"
    assert isinstance(caught.value, TransparencyError)


# Construction misuse.


def test_checkpoint_rejects_short_root() -> None:
    with pytest.raises(ValueError, match="has 31 bytes, expected 32"):
        Checkpoint(origin=ORIGIN, size=1, root=bytes(31))


def test_checkpoint_rejects_negative_size() -> None:
    with pytest.raises(ValueError, match="tree size -1 is outside"):
        Checkpoint(origin=ORIGIN, size=-1, root=EMPTY_ROOT)


def test_checkpoint_rejects_origin_with_newline() -> None:
    with pytest.raises(ValueError, match="contains whitespace"):
        Checkpoint(origin="log\nextra", size=1, root=EMPTY_ROOT)


def test_note_signer_rejects_other_curve() -> None:
    with pytest.raises(ValueError, match="must be on P-256"):
        EcdsaP256NoteSigner(ec.generate_private_key(ec.SECP384R1()), ORIGIN)


def test_note_signer_rejects_key_name_with_space() -> None:
    with pytest.raises(ValueError, match="contains whitespace"):
        EcdsaP256NoteSigner(private_key(1), "audit log")


def test_note_signer_repr_redacts_key() -> None:
    text = repr(log_signer())
    assert "redacted" in text
    assert hex(0x5EED)[2:] not in text.lower()


def test_sign_checkpoint_rejects_bad_key_id() -> None:
    class ShortIdSigner:
        key_name = ORIGIN
        key_id = b"\x01\x02"

        def sign(self, message: bytes) -> bytes:
            return b"signature"

    with pytest.raises(ValueError, match="key ID has 2 bytes, expected 4"):
        sign_checkpoint(sample_checkpoint(), ShortIdSigner())


def test_kms_note_signer_rejects_der_signature() -> None:
    class DerKms:
        def sign(self, signing_input: bytes) -> bytes:
            return private_key(7).sign(signing_input, ec.ECDSA(hashes.SHA256()))

    signer = KmsNoteSigner(DerKms(), private_key(7).public_key(), ORIGIN)
    with pytest.raises(ValueError, match="expected the 64-byte raw r \\|\\| s"):
        sign_checkpoint(sample_checkpoint(), signer)


# Linking two checkpoints.


def test_verify_checkpoint_extends_accepts_grown_log() -> None:
    tree = sample_tree(9)
    old = Checkpoint(origin=ORIGIN, size=5, root=tree.root(5))
    new = Checkpoint(origin=ORIGIN, size=9, root=tree.root())
    verify_checkpoint_extends(old, new, tree.consistency_proof(5))


def test_verify_checkpoint_extends_accepts_empty_old_tree() -> None:
    old = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT)
    verify_checkpoint_extends(old, sample_checkpoint(4), [])


def test_checkpoint_extends_rejects_bad_empty_root() -> None:
    old = Checkpoint(origin=ORIGIN, size=0, root=sample_checkpoint(1).root)
    with pytest.raises(InconsistentTrees, match="size 0 has a root other than"):
        verify_checkpoint_extends(old, sample_checkpoint(4), [])


def test_verify_checkpoint_extends_rejects_proof_from_empty_tree() -> None:
    old = Checkpoint(origin=ORIGIN, size=0, root=EMPTY_ROOT)
    with pytest.raises(InconsistentTrees, match="from the empty tree has 1 nodes"):
        verify_checkpoint_extends(old, sample_checkpoint(4), [EMPTY_ROOT])


def test_verify_checkpoint_extends_rejects_other_origin() -> None:
    other = Checkpoint(origin="other.example/log", size=7, root=sample_checkpoint().root)
    with pytest.raises(InconsistentTrees, match="come from different logs"):
        verify_checkpoint_extends(sample_checkpoint(), other, [])


def test_verify_checkpoint_extends_rejects_rewritten_log() -> None:
    tree = sample_tree(6)
    rewritten = MerkleTree([*(tree.leaf_hash(i) for i in range(3)), leaf_hash(b"forged")])
    for number in range(4, 8):
        rewritten.append(leaf_hash(f"event {number}".encode()))
    old = Checkpoint(origin=ORIGIN, size=6, root=tree.root())
    new = Checkpoint(origin=ORIGIN, size=8, root=rewritten.root())
    with pytest.raises(
        InconsistentTrees,
        match="does not reproduce the root of the tree of size 6: the log changed",
    ):
        verify_checkpoint_extends(old, new, rewritten.consistency_proof(6))
