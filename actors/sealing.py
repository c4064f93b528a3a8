"""Signing shares sealed at rest, and the sealing keys that protect them.

A sealed share file is a JSON document with a public part (format version, identifier, group
key, threshold, verifying shares) and the signing share encrypted with XChaCha20-Poly1305
(RFC 8439 AEAD with the 192-bit nonce of draft-irtf-cfrg-xchacha, via libsodium in PyNaCl).
The public part is the AEAD's associated data, so changing any value in the file, including
the group key or the identifier, fails authentication when the file is read back.

Security:
    The sealing key must be as well protected as the signing share, because anyone who can
    read both the key and the sealed file recovers the share. The development provider here
    keeps each signer's key in a 0600 file beside the sealed share. That protects against a
    stray copy of the shares folder, not against anyone who can read the whole state folder.

Limitations:
    Only the development provider exists. A production provider would derive the key inside
    the confidential VM (an SEV-SNP derived key) or fetch it from a KMS after the attestation
    report is verified.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nacl import bindings
from nacl.exceptions import CryptoError

from actors.errors import SealedShareInvalid, SealingKeyMissing
from authz.errors import AuthzError
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact

SEALED_FORMAT_VERSION = 1
SEALING_KEY_SIZE = bindings.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
_NONCE_SIZE = bindings.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES


class SealingKeyProvider(Protocol):
    """Source of the 32-byte key that seals one signer's signing share."""

    def get_or_create_key(self, identifier: int) -> bytes:
        """Return the sealing key of signer ``identifier``, creating it if it has none."""
        ...

    def get_key(self, identifier: int) -> bytes:
        """Return the existing sealing key of signer ``identifier``.

        Raises:
            SealingKeyMissing: the signer has no sealing key.
        """
        ...


@dataclass(frozen=True)
class FileSealingKeyProvider:
    """Development provider: one random 32-byte key file (mode 0600) per signer.

    Attributes:
        state_dir: folder of the mesh state; keys go to ``<state_dir>/sealing-keys/``.
    """

    state_dir: Path

    def _path(self, identifier: int) -> Path:
        return self._named_path(f"signer-{identifier}")

    def _named_path(self, name: str) -> Path:
        return Path(self.state_dir) / "sealing-keys" / f"{name}.key"

    def get_or_create_key(self, identifier: int) -> bytes:
        """Return the sealing key of signer ``identifier``, creating it if it has none."""
        return self.get_or_create_named_key(f"signer-{identifier}")

    def get_or_create_named_key(self, name: str) -> bytes:
        """Return the sealing key ``<state_dir>/sealing-keys/<name>.key``, creating it if needed.

        The coordinator seals its caller-authentication key under the name ``coordinator``.
        """
        path = self._named_path(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = os.urandom(SEALING_KEY_SIZE)
        try:
            # O_EXCL so that two processes never both create and use different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self._read_existing(path, None)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
        return key

    def _read_existing(self, path: Path, identifier: int | None) -> bytes:
        try:
            key = path.read_bytes()
        except FileNotFoundError as exc:
            raise SealingKeyMissing(
                f"sealing key file {path} not found: restore it from backup or run key "
                "generation again for the whole group",
                signer=identifier,
            ) from exc
        if len(key) != SEALING_KEY_SIZE:
            raise SealingKeyMissing(
                f"sealing key file {path} has {len(key)} bytes, expected {SEALING_KEY_SIZE}",
                signer=identifier,
            )
        return key

    def get_key(self, identifier: int) -> bytes:
        """Return the existing sealing key of signer ``identifier``.

        Raises:
            SealingKeyMissing: the key file does not exist or is not 32 bytes.
        """
        return self._read_existing(self._path(identifier), identifier)


def seal_secret(secret: bytes, public: dict[str, object], key: bytes, nonce: bytes) -> bytes:
    """Encrypt ``secret`` with XChaCha20-Poly1305, authenticating ``public`` as associated data.

    Returns:
        UTF-8 JSON ``{"public": ..., "nonce": ..., "ciphertext": ...}``, the same layout as a
        sealed share file.
    """
    ciphertext = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        secret, json_dumps_compact(public), nonce, key
    )
    document = {
        "public": public,
        "nonce": b64url_encode(nonce),
        "ciphertext": b64url_encode(ciphertext),
    }
    return json_dumps_compact(document)


def unseal_secret(sealed: bytes, key: bytes) -> tuple[dict[str, object], bytes]:
    """Decrypt a document made by ``seal_secret`` and return its public part and secret.

    Raises:
        SealedShareInvalid: the document does not parse or fails authentication.
    """
    try:
        document = json.loads(sealed.decode("utf-8"))
        public = document["public"]
        nonce = b64url_decode(document["nonce"])
        ciphertext = b64url_decode(document["ciphertext"])
        associated_data = json_dumps_compact(public)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AuthzError) as exc:
        raise SealedShareInvalid(f"sealed secret does not parse: {exc}") from exc
    try:
        secret = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, associated_data, nonce, key
        )
    except CryptoError as exc:
        raise SealedShareInvalid(
            "sealed secret failed authentication: the file was altered or sealed under "
            "another key; restore it from backup"
        ) from exc
    return public, secret


@dataclass(frozen=True)
class ShareRecord:
    """Everything a signer stores about its part of the group key.

    Attributes:
        identifier: the signer's FROST identifier.
        signing_share: the signer's secret scalar (32 bytes, RFC 9591 section 4.1 encoding).
        group_public_key: the 32-byte Ed25519 group key.
        min_signers: threshold t.
        max_signers: number of signers n.
        verifying_shares: every signer's verifying share, by identifier.
    """

    identifier: int
    signing_share: bytes = field(repr=False)
    group_public_key: bytes
    min_signers: int
    max_signers: int
    verifying_shares: dict[int, bytes]

    def __repr__(self) -> str:
        return (
            f"ShareRecord(identifier={self.identifier}, signing_share=<redacted>, "
            f"group_public_key={self.group_public_key.hex()}, "
            f"min_signers={self.min_signers}, max_signers={self.max_signers})"
        )


def _public_part(record: ShareRecord) -> dict[str, object]:
    return {
        "v": SEALED_FORMAT_VERSION,
        "identifier": record.identifier,
        "group_public_key": b64url_encode(record.group_public_key),
        "min_signers": record.min_signers,
        "max_signers": record.max_signers,
        "verifying_shares": {
            str(identifier): b64url_encode(share)
            for identifier, share in sorted(record.verifying_shares.items())
        },
    }


def seal_share(record: ShareRecord, key: bytes, nonce: bytes) -> bytes:
    """Encrypt ``record.signing_share`` and bind it to the record's public part.

    Args:
        record: the share to seal.
        key: the signer's 32-byte sealing key.
        nonce: 24 fresh random bytes; XChaCha20's nonce is large enough to pick at random.

    Returns:
        The sealed file's bytes (UTF-8 JSON).
    """
    public = _public_part(record)
    associated_data = json_dumps_compact(public)
    ciphertext = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        record.signing_share, associated_data, nonce, key
    )
    document = {
        "public": public,
        "nonce": b64url_encode(nonce),
        "ciphertext": b64url_encode(ciphertext),
    }
    return json_dumps_compact(document)


def unseal_share(sealed: bytes, key: bytes) -> ShareRecord:
    """Decrypt a sealed share file and check it has not been altered.

    Raises:
        SealedShareInvalid: the file does not parse, has another format version, or fails
            authentication (wrong key, or any byte changed).
    """
    try:
        document = json.loads(sealed.decode("utf-8"))
        public = document["public"]
        nonce = b64url_decode(document["nonce"])
        ciphertext = b64url_decode(document["ciphertext"])
        associated_data = json_dumps_compact(public)
        version = public["v"]
        identifier = int(public["identifier"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise SealedShareInvalid(f"sealed share does not parse: {exc}") from exc
    except AuthzError as exc:
        raise SealedShareInvalid(f"sealed share has invalid base64url: {exc}") from exc
    if version != SEALED_FORMAT_VERSION:
        raise SealedShareInvalid(
            f"sealed share format version {version!r}, expected {SEALED_FORMAT_VERSION}",
            signer=identifier,
        )

    try:
        signing_share = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            ciphertext, associated_data, nonce, key
        )
    except CryptoError as exc:
        raise SealedShareInvalid(
            f"sealed share of signer {identifier} failed authentication: the file was "
            "altered or sealed under another key; restore it from backup",
            signer=identifier,
        ) from exc

    return ShareRecord(
        identifier=identifier,
        signing_share=signing_share,
        group_public_key=b64url_decode(public["group_public_key"]),
        min_signers=int(public["min_signers"]),
        max_signers=int(public["max_signers"]),
        verifying_shares={
            int(name): b64url_decode(value) for name, value in public["verifying_shares"].items()
        },
    )


@dataclass(frozen=True)
class ShareStore:
    """Sealed share files of the signers in one state folder.

    Attributes:
        state_dir: folder of the mesh state; shares go to ``<state_dir>/shares/``.
        key_provider: source of each signer's sealing key.
    """

    state_dir: Path
    key_provider: SealingKeyProvider

    def path(self, identifier: int) -> Path:
        """Return the path of signer ``identifier``'s sealed share file."""
        return Path(self.state_dir) / "shares" / f"signer-{identifier}.sealed.json"

    def save(self, record: ShareRecord) -> None:
        """Seal ``record`` and write it atomically (temporary file, then rename), mode 0600."""
        key = self.key_provider.get_or_create_key(record.identifier)
        sealed = seal_share(record, key, os.urandom(_NONCE_SIZE))
        path = self.path(record.identifier)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(sealed)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def load(self, identifier: int) -> ShareRecord | None:
        """Read and unseal signer ``identifier``'s share, or return None if it has none.

        Raises:
            SealingKeyMissing: the share file exists but its sealing key does not.
            SealedShareInvalid: the file was altered or does not belong to this signer.
        """
        path = self.path(identifier)
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            return None
        record = unseal_share(sealed, self.key_provider.get_key(identifier))
        if record.identifier != identifier:
            raise SealedShareInvalid(
                f"sealed share file {path} belongs to signer {record.identifier}, "
                f"expected signer {identifier}",
                signer=identifier,
            )
        return record
