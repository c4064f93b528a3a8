"""Enrollment invitations: one-time, expiring codes that let one user enroll an authenticator.

An operator (or the identity system) creates an invitation for a user with ``ztmint users
invite``. The user passes the printed code to ``ztmint enroll --invitation CODE``, which sends
it in ``POST /register``. The mint stores only the SHA-256 of the code, so a copy of the
database cannot be used to enroll.

The invitation is checked at ``POST /register`` (no challenge is issued without a valid one)
and consumed at ``POST /register/complete`` in the same database transaction that stores the
credential. A registration that fails (a bad WebAuthn attestation, an expired challenge) does
not use the invitation up, so the user can retry until it expires. Once a credential is stored
the invitation can never be used again.

Security:
    A code is 32 random bytes (256 bits) in base64url. Every failure, whether the code is
    unknown, used, expired or issued for another user, is the one reason
    ``invitation_invalid``, so a caller learns nothing about which users exist or are enrolled.
    The lookup is by SHA-256 of the code in the database index, and the found digest is
    compared again with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from authz.jose import b64url_encode

INVITATION_CODE_SIZE = 32
DEFAULT_INVITATION_TTL_SECONDS = 24 * 3600
MAX_INVITATION_TTL_SECONDS = 30 * 24 * 3600


class EnrollmentMode(StrEnum):
    """Enrollment policy: invited users only, or anyone (development only)."""

    INVITATION = "invitation"
    OPEN = "open"


@dataclass(frozen=True)
class Invitation:
    """A stored invitation: the SHA-256 of its code, its user and its lifetime.

    Attributes:
        code_sha256: SHA-256 of the code's ASCII text; the code itself is never stored.
        user_id: the one user who may enroll with it.
        created_at: seconds since the epoch.
        expires_at: seconds since the epoch at and after which it is invalid.
        used_at: when a credential was enrolled with it, or None.
    """

    code_sha256: bytes
    user_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None

    def is_usable(self, user_id: str, now: int) -> bool:
        """Return whether the invitation is unused, unexpired and issued for ``user_id``."""
        return self.used_at is None and now < self.expires_at and self.user_id == user_id


@dataclass(frozen=True)
class UserSummary:
    """One line of ``ztmint users list``: a user and the state of their credentials."""

    user_id: str
    created_at: int
    credentials: int
    flagged_cloned: int


class InvitationStore(Protocol):
    """The part of the mint ``Store`` that stores invitations."""

    def add_invitation(self, invitation: Invitation) -> None:
        """Store a new invitation."""
        ...

    def get_invitation(self, code_sha256: bytes) -> Invitation | None:
        """Return the invitation with this code digest, or None."""
        ...


def invitation_digest(code: str) -> bytes:
    """Return the SHA-256 of an invitation code, the only form in which it is stored."""
    return hashlib.sha256(code.encode("utf-8")).digest()


def create_invitation(
    store: InvitationStore,
    user_id: str,
    ttl_seconds: int,
    now: int,
    random_bytes: Callable[[int], bytes],
) -> str:
    """Create an invitation for ``user_id`` and return its code.

    ``ztmint users invite``, ``MintService.invite`` and the demo all create invitations
    here. The caller shows the code once; it cannot be recovered from the store.

    Raises:
        ValueError: when ``ttl_seconds`` is not in 1..``MAX_INVITATION_TTL_SECONDS``.
    """
    if not 0 < ttl_seconds <= MAX_INVITATION_TTL_SECONDS:
        raise ValueError(
            f"invitation lifetime is {ttl_seconds} s; expected 1 to "
            f"{MAX_INVITATION_TTL_SECONDS} s (30 days)"
        )
    code = b64url_encode(random_bytes(INVITATION_CODE_SIZE))
    store.add_invitation(
        Invitation(
            code_sha256=invitation_digest(code),
            user_id=user_id,
            created_at=now,
            expires_at=now + ttl_seconds,
        )
    )
    return code


def find_usable_invitation(
    store: InvitationStore, code: str, user_id: str, now: int
) -> Invitation | None:
    """Return the invitation for ``code`` if ``user_id`` may enroll with it now, else None."""
    digest = invitation_digest(code)
    invitation = store.get_invitation(digest)
    if invitation is None or not hmac.compare_digest(invitation.code_sha256, digest):
        return None
    return invitation if invitation.is_usable(user_id, now) else None
