"""Signed checkpoints of the audit log: a tree size and root hash that anyone can check offline.

A checkpoint is a signed note in the layout of C2SP tlog-checkpoint v1 and signed-note v1::

    <origin>
    <tree size>
    <base64 root hash>

    — <key name> <base64(key ID || signature)>

The note text is the three body lines, each ending in a newline. The signature covers the
note text as UTF-8 bytes, without the blank separator line. The tree size is ASCII decimal
with no leading zeros, and the root hash is the standard base64 (RFC 4648 section 4) of the
32-byte RFC 9162 root. The signature line starts with an em dash (U+2014) and a space. Its
key ID is 4 bytes, in C2SP's recommended form ``SHA-256(key name || 0x0A || type || public
key)[:4]``.

ztmint signs checkpoints with ECDSA P-256 over SHA-256 and encodes the signature as the
64-byte raw ``r || s`` that the receipts use (RFC 7518 section 3.4), so a KMS key that signs
receipts can sign checkpoints too. Any signer that implements ``NoteSigner`` works.

Limitations:
    The ECDSA signature type is ztmint's own. Signed-note type 0x02 also uses ECDSA, but it
    encodes signatures in ASN.1 DER and takes its key ID over the public key alone, so
    those verifiers skip our signature line as one from an unknown key. The type byte in
    our key ID is therefore 0xff followed by a name, as signed-note reserves for
    unregistered types. The parser also rejects the optional extension lines of
    tlog-checkpoint, because ztmint never writes them and monitors cannot audit them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from mint.transparency.errors import (
    CheckpointMalformed,
    CheckpointOriginMismatch,
    CheckpointSignatureInvalid,
    InconsistentTrees,
)
from mint.transparency.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency

KEY_ID_SIZE = 4
"""Size in bytes of the key ID that starts every decoded signature (signed-note v1)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size a checkpoint may carry, because RFC 9162 encodes tree sizes as uint64."""

MAX_SIGNATURES = 16
"""Maximum number of signature lines in one checkpoint, the lowest limit signed-note v1 allows."""

MAX_CHECKPOINT_LENGTH = 128 * 1024
"""Maximum checkpoint length in characters, enough for 16 base64 signatures of 5 kB each."""

ECDSA_P256_NOTE_TYPE = b"\xff" + b"ztmint/ecdsa-p256-sha256-raw"
"""Signature type bytes hashed into the key ID of ztmint's ECDSA P-256 checkpoint keys."""

_SIGNATURE_PREFIX = "\N{EM DASH} "
_P256_SCALAR_SIZE = 32
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: the log's origin, its tree size and the RFC 9162 root hash at that size.

    Raises:
        ValueError: the origin is empty or contains whitespace or a control character,
            the size is outside ``[0, MAX_TREE_SIZE]``, or the root is not 32 bytes.
    """

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        problem = _origin_problem(self.origin)
        if problem:
            raise ValueError(f"checkpoint origin {self.origin!r} {problem}")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValueError(f"checkpoint tree size {self.size} is outside [0, 2**64 - 1]")
        if len(self.root) != HASH_SIZE:
            raise ValueError(
                f"checkpoint root hash has {len(self.root)} bytes, expected {HASH_SIZE}"
            )

    def note_text(self) -> str:
        """Return the three body lines that a checkpoint signature covers."""
        encoded_root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{encoded_root}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a checkpoint, decoded but not verified."""

    key_name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedCheckpoint:
    """A parsed checkpoint whose signatures have not been verified yet.

    Security:
        Nothing here is trustworthy until ``verify_checkpoint`` has checked a signature by a
        key the caller pinned.
    """

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]


class NoteSigner(Protocol):
    """A key that signs checkpoint note text, such as a KMS or HSM key."""

    @property
    def key_name(self) -> str:
        """Return the key name written in the signature line, usually the log's origin."""
        ...

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID written before each signature."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Sign the UTF-8 note text and return the signature bytes."""
        ...


class NoteVerifier(Protocol):
    """A pinned public key that checks checkpoint signatures."""

    @property
    def key_name(self) -> str:
        """Return the key name expected in the signature line."""
        ...

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID expected before the signature."""
        ...

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is valid over ``message`` under this key."""
        ...


def ecdsa_p256_key_id(key_name: str, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """Compute the key ID of a ztmint ECDSA P-256 checkpoint key (C2SP signed-note v1).

    The ID is ``SHA-256(key name || 0x0A || ECDSA_P256_NOTE_TYPE || SPKI DER)[:4]``, the
    construction signed-note recommends, with the public key as DER SubjectPublicKeyInfo.
    """
    _require_key_name(key_name)
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashlib.sha256(key_name.encode() + b"\n" + ECDSA_P256_NOTE_TYPE + spki).digest()
    return digest[:KEY_ID_SIZE]


class EcdsaP256NoteSigner:
    """Signs checkpoints with an ECDSA P-256 private key, returning the raw ``r || s``.

    Args:
        private_key: a P-256 private key from ``cryptography``.
        key_name: the name written in the signature line, usually the log's origin.

    Raises:
        ValueError: the key is not on P-256 or the key name is invalid.
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, key_name: str) -> None:
        _require_p256(private_key.curve)
        self._private_key = private_key
        self._key_name = key_name
        self._key_id = ecdsa_p256_key_id(key_name, private_key.public_key())

    def __repr__(self) -> str:
        return f"EcdsaP256NoteSigner(key_name={self._key_name!r}, <redacted>)"

    @property
    def key_name(self) -> str:
        """Return the key name written in the signature line."""
        return self._key_name

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID from ``ecdsa_p256_key_id``."""
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        """Sign with ECDSA P-256 SHA-256 and return the 64-byte ``r || s``."""
        der = self._private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(_P256_SCALAR_SIZE, "big") + s.to_bytes(_P256_SCALAR_SIZE, "big")


class RawEcdsaP256Signer(Protocol):
    """A KMS key that returns ECDSA P-256 SHA-256 signatures as raw ``r || s``.

    ``mint.kms.ReceiptSigner`` has this shape, so a receipt key can sign checkpoints.
    """

    def sign(self, signing_input: bytes) -> bytes:
        """Sign with ECDSA P-256 SHA-256 and return the 64-byte ``r || s``."""
        ...


class KmsNoteSigner:
    """Signs checkpoints through a KMS or HSM key, such as a ``mint.kms.ReceiptSigner``.

    Args:
        kms: the key, which signs and returns the raw ``r || s``.
        public_key: its P-256 public key, from which the key ID is derived.
        key_name: the name written in the signature line, usually the log's origin.

    Raises:
        ValueError: the public key is not on P-256 or the key name is invalid.
    """

    def __init__(
        self, kms: RawEcdsaP256Signer, public_key: ec.EllipticCurvePublicKey, key_name: str
    ) -> None:
        _require_p256(public_key.curve)
        self._kms = kms
        self._key_name = key_name
        self._key_id = ecdsa_p256_key_id(key_name, public_key)

    def __repr__(self) -> str:
        return f"KmsNoteSigner(key_name={self._key_name!r}, key_id={self._key_id.hex()})"

    @property
    def key_name(self) -> str:
        """Return the key name written in the signature line."""
        return self._key_name

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID from ``ecdsa_p256_key_id``."""
        return self._key_id

    def sign(self, message: bytes) -> bytes:
        """Have the KMS sign ``message`` and return its 64-byte ``r || s``.

        Raises:
            ValueError: the KMS returned a signature that is not 64 bytes.
        """
        signature = self._kms.sign(message)
        if len(signature) != 2 * _P256_SCALAR_SIZE:
            raise ValueError(
                f"KMS returned a {len(signature)}-byte signature, expected the 64-byte raw "
                "r || s of ECDSA P-256. Check that the key is P-256 and not DER-encoding"
            )
        return signature


class EcdsaP256NoteVerifier:
    """Checks checkpoint signatures made by ``EcdsaP256NoteSigner`` or a KMS with the same key.

    Args:
        public_key: the pinned P-256 public key of the log.
        key_name: the key name expected in the signature line.

    Raises:
        ValueError: the key is not on P-256 or the key name is invalid.
    """

    def __init__(self, public_key: ec.EllipticCurvePublicKey, key_name: str) -> None:
        _require_p256(public_key.curve)
        self._public_key = public_key
        self._key_name = key_name
        self._key_id = ecdsa_p256_key_id(key_name, public_key)

    def __repr__(self) -> str:
        return f"EcdsaP256NoteVerifier(key_name={self._key_name!r}, key_id={self._key_id.hex()})"

    @property
    def key_name(self) -> str:
        """Return the key name expected in the signature line."""
        return self._key_name

    @property
    def key_id(self) -> bytes:
        """Return the 4-byte key ID from ``ecdsa_p256_key_id``."""
        return self._key_id

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is a valid 64-byte ``r || s`` over ``message``."""
        if len(signature) != 2 * _P256_SCALAR_SIZE:
            return False
        r = int.from_bytes(signature[:_P256_SCALAR_SIZE], "big")
        s = int.from_bytes(signature[_P256_SCALAR_SIZE:], "big")
        try:
            self._public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return True


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """Sign a checkpoint and return its text, ready to publish or store.

    Args:
        checkpoint: the tree head to sign.
        signer: the log's checkpoint key.

    Returns:
        The note text, a blank line, and one signature line, all ending in newlines.

    Raises:
        ValueError: the signer's key name is invalid, its key ID is not 4 bytes, or it
            returned an empty signature.

    Security:
        A log must never sign two checkpoints that no consistency proof can link, such as
        two different roots for the same size. Sign only roots taken from the one
        append-only tree.
    """
    _require_key_name(signer.key_name)
    if len(signer.key_id) != KEY_ID_SIZE:
        raise ValueError(f"signer key ID has {len(signer.key_id)} bytes, expected {KEY_ID_SIZE}")
    note_text = checkpoint.note_text()
    signature = signer.sign(note_text.encode())
    if not signature:
        raise ValueError(f"signer {signer.key_name!r} returned an empty signature")
    encoded = base64.b64encode(signer.key_id + signature).decode("ascii")
    return f"{note_text}\n{_SIGNATURE_PREFIX}{signer.key_name} {encoded}\n"


def parse_checkpoint(text: str | bytes) -> SignedCheckpoint:
    """Parse a checkpoint strictly, without verifying its signatures.

    Args:
        text: the checkpoint as published, as text or as UTF-8 bytes.

    Returns:
        The tree head and every signature line, in order.

    Raises:
        CheckpointMalformed: the text is not UTF-8, is longer than
            ``MAX_CHECKPOINT_LENGTH``, contains a control character other than newline, has
            other than three body lines, a size that is not canonical decimal within
            uint64, a root that is not canonical base64 of 32 bytes, no signature line or
            more than ``MAX_SIGNATURES``, or a signature line that breaks the format.
    """
    text = _decode_text(text)
    separator = text.rfind("\n\n")
    if separator < 0:
        raise CheckpointMalformed(
            "checkpoint has no blank line between its note text and its signatures"
        )
    note_text = text[: separator + 1]
    signature_block = text[separator + 2 :]
    checkpoint = _parse_note_text(note_text)
    signatures = _parse_signature_block(signature_block)
    return SignedCheckpoint(checkpoint=checkpoint, signatures=signatures)


def verify_checkpoint(
    text: str | bytes, verifier: NoteVerifier, *, origin: str | None = None
) -> Checkpoint:
    """Parse a checkpoint and verify its signature by the pinned key.

    Signatures by other keys, such as witness cosignatures, are skipped as C2SP signed-note
    v1 requires. Every signature that carries the verifier's key name and key ID must verify.

    Args:
        text: the checkpoint as published.
        verifier: the log's pinned checkpoint key.
        origin: the expected origin line, or ``None`` to skip that check.

    Returns:
        The verified tree head.

    Raises:
        CheckpointMalformed: the text breaks the format (see ``parse_checkpoint``).
        CheckpointSignatureInvalid: no signature line matches the key's name and ID, or a
            matching signature is invalid.
        CheckpointOriginMismatch: ``origin`` is given and differs from the origin line.
    """
    signed = parse_checkpoint(text)
    message = signed.checkpoint.note_text().encode()
    matching = [
        entry
        for entry in signed.signatures
        if entry.key_name == verifier.key_name
        and hmac.compare_digest(entry.key_id, verifier.key_id)
    ]
    if not matching:
        raise CheckpointSignatureInvalid(
            f"checkpoint has no signature by key {verifier.key_name!r} with ID "
            f"{verifier.key_id.hex()}. Check that the verifier pins this log's checkpoint key"
        )
    for entry in matching:
        if not verifier.verify(message, entry.signature):
            raise CheckpointSignatureInvalid(
                f"checkpoint signature by key {verifier.key_name!r} is invalid: the "
                "checkpoint was altered or signed by another key with the same name and ID"
            )
    if origin is not None and signed.checkpoint.origin != origin:
        raise CheckpointOriginMismatch(
            f"checkpoint origin is {signed.checkpoint.origin!r}, expected {origin!r}, so "
            "it belongs to another log signed with the same key"
        )
    return signed.checkpoint


def verify_checkpoint_extends(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that the tree of a newer verified checkpoint extends an older one.

    An empty older tree is a prefix of every tree, so it needs an empty proof and the
    root ``EMPTY_ROOT``. Otherwise this is ``verify_consistency`` (RFC 9162 section 2.1.4.2).

    Raises:
        InconsistentTrees: the checkpoints name different origins, the older one is
            larger, or the proof does not link the two roots.
    """
    if old.origin != new.origin:
        raise InconsistentTrees(
            f"checkpoints come from different logs, {old.origin!r} and {new.origin!r}"
        )
    if old.size == 0:
        if proof:
            raise InconsistentTrees(
                f"consistency proof from the empty tree has {len(proof)} nodes, expected none"
            )
        if not hmac.compare_digest(old.root, EMPTY_ROOT):
            raise InconsistentTrees(
                "checkpoint of size 0 has a root other than SHA-256 of the empty string"
            )
        return
    verify_consistency(old.size, new.size, old.root, new.root, proof)


def _decode_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointMalformed(
                f"checkpoint is not valid UTF-8 at byte {error.start}"
            ) from None
    if len(text) > MAX_CHECKPOINT_LENGTH:
        raise CheckpointMalformed(
            f"checkpoint has {len(text)} characters, more than the limit of {MAX_CHECKPOINT_LENGTH}"
        )
    for position, character in enumerate(text):
        if (character < " " and character != "\n") or character == "\x7f":
            raise CheckpointMalformed(
                f"checkpoint has control character {character!r} at position {position}, but "
                "only newline (U+000A) may separate lines"
            )
    return text


def _parse_note_text(note_text: str) -> Checkpoint:
    lines = note_text.split("\n")
    # The note text ends in a newline, so splitting leaves an empty last item.
    body = lines[:-1]
    if len(body) != 3:
        raise CheckpointMalformed(
            f"checkpoint note text has {len(body)} lines, expected 3: origin, tree size and "
            "root hash (extension lines are not accepted)"
        )
    origin, size_line, root_line = body

    problem = _origin_problem(origin)
    if problem:
        raise CheckpointMalformed(f"checkpoint origin line {origin!r} {problem}")

    if not _DECIMAL.fullmatch(size_line):
        raise CheckpointMalformed(
            f"checkpoint tree size {size_line!r} is not ASCII decimal without leading zeros"
        )
    size = int(size_line)
    if size > MAX_TREE_SIZE:
        raise CheckpointMalformed(f"checkpoint tree size {size_line} is larger than 2**64 - 1")

    root = _decode_base64(root_line, "root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointMalformed(
            f"checkpoint root hash decodes to {len(root)} bytes, expected {HASH_SIZE}"
        )
    return Checkpoint(origin=origin, size=size, root=root)


def _parse_signature_block(block: str) -> tuple[NoteSignature, ...]:
    if not block:
        raise CheckpointMalformed("checkpoint has no signature line after the blank line")
    if not block.endswith("\n"):
        raise CheckpointMalformed("checkpoint does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointMalformed(
            f"checkpoint has {len(lines)} signature lines, more than the limit of {MAX_SIGNATURES}"
        )
    return tuple(_parse_signature_line(line, number) for number, line in enumerate(lines, 1))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise CheckpointMalformed(
            f"signature line {number} does not start with an em dash (U+2014) and a space"
        )
    fields = line[len(_SIGNATURE_PREFIX) :].split(" ")
    if len(fields) != 2:
        raise CheckpointMalformed(
            f"signature line {number} has {len(fields)} space-separated fields after the "
            "em dash, expected 2: key name and base64 signature"
        )
    key_name, encoded = fields
    problem = _key_name_problem(key_name)
    if problem:
        raise CheckpointMalformed(f"signature line {number} key name {key_name!r} {problem}")
    decoded = _decode_base64(encoded, f"signature on line {number}")
    if len(decoded) <= KEY_ID_SIZE:
        raise CheckpointMalformed(
            f"signature on line {number} decodes to {len(decoded)} bytes, expected a "
            f"{KEY_ID_SIZE}-byte key ID followed by a signature"
        )
    return NoteSignature(
        key_name=key_name, key_id=decoded[:KEY_ID_SIZE], signature=decoded[KEY_ID_SIZE:]
    )


def _decode_base64(encoded: str, role: str) -> bytes:
    """Decode standard padded base64 and reject any other spelling of the same bytes."""
    try:
        decoded = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise CheckpointMalformed(f"checkpoint {role} is not standard padded base64") from None
    # b64decode accepts non-zero padding bits, and re-encoding exposes them.
    if base64.b64encode(decoded).decode("ascii") != encoded:
        raise CheckpointMalformed(f"checkpoint {role} is not canonical base64")
    return decoded


def _origin_problem(origin: str) -> str | None:
    if not origin:
        return "is empty"
    if any(character.isspace() for character in origin):
        return "contains whitespace"
    if any(character < " " or character == "\x7f" for character in origin):
        return "contains a control character"
    return None


def _key_name_problem(key_name: str) -> str | None:
    problem = _origin_problem(key_name)
    if problem:
        return problem
    if "+" in key_name:
        return "contains '+', which signed-note key names must not"
    return None


def _require_key_name(key_name: str) -> None:
    problem = _key_name_problem(key_name)
    if problem:
        raise ValueError(f"note key name {key_name!r} {problem}")


def _require_p256(curve: ec.EllipticCurve) -> None:
    if not isinstance(curve, ec.SECP256R1):
        raise ValueError(f"checkpoint keys must be on P-256 (secp256r1), not {curve.name}")
