"""Encrypted transport of secret scalars between signers, relayed by the coordinator.

Refresh and repair send secret scalars (refresh shares, repair deltas and sigmas) from one
signer to another through the coordinator. Each scalar is encrypted with ``nacl.public.Box``
(X25519 key agreement, then XSalsa20-Poly1305), as the signers' DKG round two does. Every
session draws fresh X25519 keys and announces the public halves in its first round.

The plaintext names the purpose, the session id, the sender and the recipient, and the
receiver checks all four. A package therefore cannot be replayed into another session, to
another recipient, or as another kind of message.

Security:
    The box authenticates the sender only as the holder of the announced X25519 key. The
    coordinator relays those announcements, so a coordinator that swaps them can put itself in
    the middle. The signers' DKG has the same gap; binding the keys to each signer's
    attestation report would close both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from actors.frost.ciphersuite import decode_scalar
from actors.frost.errors import InvalidScalar
from actors.lifecycle.errors import SealedPackageInvalid, SessionMismatch
from authz.errors import AuthzError
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact

RandomSource = Callable[[int], bytes]

BOX_KEY_SIZE = PrivateKey.SIZE
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")


def check_session_id(session_id: str) -> str:
    """Check that a refresh or repair session id is 8 to 64 characters of [A-Za-z0-9_-].

    Raises:
        SessionMismatch: when it is not.
    """
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        raise SessionMismatch(
            f"session id {session_id!r} is invalid: expected 8 to 64 characters of "
            "A-Z, a-z, 0-9, '_' or '-', for example a random hex string"
        )
    return session_id


def new_box_key(rng: RandomSource) -> PrivateKey:
    """Draw a fresh X25519 private key for one session."""
    return PrivateKey(rng(BOX_KEY_SIZE))


@dataclass(frozen=True)
class SealedScalar:
    """A secret scalar encrypted from ``sender`` to ``recipient``.

    Attributes:
        purpose: what the scalar is (``refresh``, ``repair-delta``, ``repair-sigma``).
        session_id: the refresh or repair session.
        sender: FROST identifier of the signer that encrypted it.
        recipient: FROST identifier of the only signer that can decrypt it.
        ciphertext: ``nacl.public.Box`` output (24-byte nonce, then ciphertext and tag).
    """

    purpose: str
    session_id: str
    sender: int
    recipient: int
    ciphertext: bytes


def seal_scalar(
    box_key: PrivateKey,
    recipient_box_public_key: bytes,
    *,
    purpose: str,
    session_id: str,
    sender: int,
    recipient: int,
    scalar: bytes,
    rng: RandomSource,
) -> SealedScalar:
    """Encrypt ``scalar`` to the recipient's announced X25519 key."""
    box = Box(box_key, PublicKey(recipient_box_public_key))
    plaintext = json_dumps_compact(
        {
            "purpose": purpose,
            "session_id": session_id,
            "sender": sender,
            "recipient": recipient,
            "scalar": b64url_encode(scalar),
        }
    )
    ciphertext = bytes(box.encrypt(plaintext, rng(Box.NONCE_SIZE)))
    return SealedScalar(purpose, session_id, sender, recipient, ciphertext)


def open_scalar(
    box_key: PrivateKey,
    sender_box_public_key: bytes,
    sealed: SealedScalar,
    *,
    purpose: str,
    session_id: str,
    sender: int,
    recipient: int,
) -> bytes:
    """Decrypt a sealed scalar and check that it is the expected message.

    Args:
        box_key: the recipient's X25519 key of this session.
        sender_box_public_key: the X25519 key the sender announced in this session.
        sealed: the relayed package.
        purpose: the expected purpose.
        session_id: the expected session id.
        sender: the expected sender.
        recipient: this signer's identifier.

    Returns:
        The canonical 32-byte scalar.

    Raises:
        SealedPackageInvalid: the package fails authentication, does not parse, or names
            another purpose, session, sender or recipient; ``signer`` names the sender.
    """
    box = Box(box_key, PublicKey(sender_box_public_key))
    try:
        fields = json.loads(box.decrypt(sealed.ciphertext))
        scalar = decode_scalar(b64url_decode(fields["scalar"]))
    except (CryptoError, ValueError, KeyError, TypeError, AuthzError, InvalidScalar) as exc:
        raise SealedPackageInvalid(
            f"{purpose} package relayed as {sender} -> {recipient} failed authentication or "
            "does not parse: the relay altered it or the sender used another key",
            signer=sender,
        ) from exc
    expected = {
        "purpose": purpose,
        "session_id": session_id,
        "sender": sender,
        "recipient": recipient,
    }
    found = {name: fields.get(name) for name in expected}
    if found != expected:
        raise SealedPackageInvalid(
            f"{purpose} package relayed as {sender} -> {recipient} in session {session_id} "
            f"names purpose {found['purpose']!r}, session {found['session_id']!r}, "
            f"{found['sender']} -> {found['recipient']}: rejecting a replayed or misrouted package",
            signer=sender,
        )
    return scalar
