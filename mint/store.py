"""Persistent state of the mint: users, WebAuthn credentials and one-time challenges.

``Store`` is the interface; ``SqliteStore`` is the embedded backend (one SQLite file in WAL
mode). Every operation is one transaction, and every check-then-write is a single
conditional ``UPDATE`` so that two concurrent requests can never both win. A PostgreSQL
backend can implement the same protocol with the same statements (``RETURNING`` and
conditional updates behave the same there).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Protocol

from mint.breakglass_store import BREAKGLASS_SCHEMA_SQLITE, BreakGlassRecords
from mint.invitations import Invitation, UserSummary
from mint.limits import RateDecision, RateLimit, take_token_sqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id      TEXT PRIMARY KEY,
    user_handle  BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    credential_id    BLOB PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(user_id),
    public_key_cose  BLOB NOT NULL,
    sign_count       INTEGER NOT NULL,
    aaguid           BLOB NOT NULL,
    backup_eligible  INTEGER NOT NULL,
    backup_state     INTEGER NOT NULL,
    flagged_cloned   INTEGER NOT NULL DEFAULT 0,
    attestation_type TEXT NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS credentials_by_user ON credentials(user_id);
CREATE TABLE IF NOT EXISTS challenges (
    challenge_id    TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    challenge       BLOB NOT NULL,
    request_digest  BLOB NOT NULL,
    expires_at      INTEGER NOT NULL,
    consumed        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS challenges_by_expiry ON challenges(expires_at);
CREATE TABLE IF NOT EXISTS invitations (
    code_sha256  BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER
);
"""


class StoreError(Exception):
    """Base class of storage errors."""


class CredentialExists(StoreError):
    """A credential with this id is already registered."""


class EnrollStatus(Enum):
    """Outcome of ``Store.enroll_credential``."""

    ENROLLED = "enrolled"
    INVITATION_INVALID = "invitation_invalid"


class _InvitationNotUsable(Exception):
    """Rolls back an enrollment whose invitation was used, expired or unknown meanwhile."""


class ChallengeKind(StrEnum):
    """The ceremony a challenge belongs to."""

    REGISTRATION = "registration"
    ASSERTION = "assertion"


class ConsumeStatus(Enum):
    """Outcome of an attempt to consume a challenge."""

    CONSUMED = "consumed"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"


class SignCountStatus(Enum):
    """Outcome of recording the signature counter of a verified assertion."""

    UPDATED = "updated"
    REGRESSED = "regressed"
    FLAGGED = "flagged"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class User:
    """A registered engineer and the random WebAuthn user handle assigned to them."""

    user_id: str
    user_handle: bytes


@dataclass(frozen=True)
class Credential:
    """A registered WebAuthn credential (WebAuthn Level 3 section 6.1 "credential record").

    Attributes:
        credential_id: the raw credential id.
        user_id: the owner.
        public_key_cose: the credential public key as a COSE_Key (RFC 9052 section 7).
        sign_count: the last signature counter seen.
        aaguid: the authenticator model's AAGUID, 16 bytes.
        backup_eligible: the BE flag at registration; it never changes for a credential.
        backup_state: the BS flag last seen.
        flagged_cloned: set once a counter regression suggested a cloned authenticator.
        attestation_type: how the WebAuthn attestation was trusted: ``self``, ``basic`` or
            ``att_ca``.
        created_at: registration time, seconds since the epoch.
    """

    credential_id: bytes
    user_id: str
    public_key_cose: bytes
    sign_count: int
    aaguid: bytes
    backup_eligible: bool
    backup_state: bool
    flagged_cloned: bool
    attestation_type: str
    created_at: int


@dataclass(frozen=True)
class Challenge:
    """A one-time WebAuthn challenge and the exact request it is bound to.

    Attributes:
        challenge_id: public handle the client sends back.
        kind: registration or assertion.
        user_id: the user the challenge was issued to.
        challenge: 32 random bytes. A registration uses them as the WebAuthn challenge; an
            assertion uses them as the salt of its challenge, SHA-256(salt || request
            digest), which the signers recompute (``actors.assertion_check``).
        request_digest: SHA-256 of the canonical request (scopes, audience, TTL) it binds.
        expires_at: seconds since the epoch after which it cannot be consumed.
        consumed: whether it has been used.
    """

    challenge_id: str
    kind: ChallengeKind
    user_id: str
    challenge: bytes
    request_digest: bytes
    expires_at: int
    consumed: bool = False

    def __repr__(self) -> str:
        return f"Challenge(challenge_id={self.challenge_id!r}, kind={self.kind.value}, <redacted>)"


@dataclass(frozen=True)
class ConsumeResult:
    """The outcome of ``consume_challenge`` and, when consumed, the challenge."""

    status: ConsumeStatus
    challenge: Challenge | None = None


class Store(Protocol):
    """Storage of users, credentials and challenges used by ``MintService``."""

    def ensure_user(self, user_id: str, user_handle: bytes, now: int) -> User:
        """Create the user unless it exists, and return the stored user."""
        ...

    def get_user(self, user_id: str) -> User | None:
        """Return the user, or None when unknown."""
        ...

    def add_credential(self, credential: Credential) -> None:
        """Store a new credential; raise ``CredentialExists`` when its id is taken."""
        ...

    def get_credential(self, credential_id: bytes) -> Credential | None:
        """Return the credential, or None when unknown."""
        ...

    def credentials_for_user(self, user_id: str) -> list[Credential]:
        """Return every credential of the user, oldest first."""
        ...

    def add_challenge(self, challenge: Challenge) -> None:
        """Store a new, unconsumed challenge."""
        ...

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        """Return the challenge without consuming it, or None when unknown."""
        ...

    def consume_challenge(self, challenge_id: str, kind: ChallengeKind, now: int) -> ConsumeResult:
        """Mark the challenge used, atomically and at most once, unless it expired."""
        ...

    def record_sign_count(
        self, credential_id: bytes, sign_count: int, backup_state: bool
    ) -> SignCountStatus:
        """Store a verified assertion's counter and BS flag; flag the credential on regression."""
        ...

    def take_rate_token(self, key: str, now: float, limit: RateLimit) -> RateDecision:
        """Take one token from rate bucket ``key`` atomically (see ``mint.limits``)."""
        ...

    def enroll_credential(
        self, credential: Credential, user_handle: bytes, invitation_sha256: bytes | None, now: int
    ) -> EnrollStatus:
        """Use up the invitation, create the user if new and store the credential, atomically.

        With ``invitation_sha256`` None no invitation is needed (open enrollment). When the
        invitation is not usable, or the credential id is taken (``CredentialExists``),
        nothing is written.
        """
        ...

    def add_invitation(self, invitation: Invitation) -> None:
        """Store a new invitation."""
        ...

    def get_invitation(self, code_sha256: bytes) -> Invitation | None:
        """Return the invitation with this code digest, or None."""
        ...

    def list_users(self) -> list[UserSummary]:
        """Return every user with credential counts, ordered by user id."""
        ...

    def revoke_credentials(self, user_id: str) -> int:
        """Delete every credential of the user and return how many there were."""
        ...

    def purge_expired_challenges(self, expired_before: int, limit: int) -> int:
        """Delete at most ``limit`` challenges with ``expires_at <= expired_before``."""
        ...


class SqliteStore:
    """``Store`` on one SQLite file in WAL mode.

    Each call opens its own connection, so the store can be shared by the threads of a web
    server. Writes use ``BEGIN IMMEDIATE`` and wait up to ``busy_timeout_ms`` for the lock.
    """

    def __init__(self, path: Path, busy_timeout_ms: int = 5000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        create_private_file(path)
        with self._reader() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            # executescript commits on its own; each CREATE is idempotent.
            conn.executescript(_SCHEMA + BREAKGLASS_SCHEMA_SQLITE)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=30)
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def ensure_user(self, user_id: str, user_handle: bytes, now: int) -> User:
        """Create the user unless it exists, and return the stored user."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO users (user_id, user_handle, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT(user_id) DO NOTHING",
                (user_id, user_handle, now),
            )
            row = conn.execute(
                "SELECT user_id, user_handle FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return User(row[0], row[1])

    def get_user(self, user_id: str) -> User | None:
        """Return the user, or None when unknown."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT user_id, user_handle FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return None if row is None else User(row[0], row[1])

    def add_credential(self, credential: Credential) -> None:
        """Store a new credential.

        Raises:
            CredentialExists: when a credential with the same id is registered.
        """
        try:
            with self._transaction() as conn:
                _insert_credential_sqlite(conn, credential)
        except sqlite3.IntegrityError as exc:
            raise CredentialExists(
                f"credential {credential.credential_id.hex()[:16]}... is already registered"
            ) from exc

    def get_credential(self, credential_id: bytes) -> Credential | None:
        """Return the credential, or None when unknown."""
        with self._reader() as conn:
            row = conn.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE credential_id = ?",  # noqa: S608
                (credential_id,),
            ).fetchone()
        return None if row is None else _credential_from_row(row)

    def credentials_for_user(self, user_id: str) -> list[Credential]:
        """Return every credential of the user, oldest first."""
        with self._reader() as conn:
            rows = conn.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?"  # noqa: S608
                " ORDER BY created_at, credential_id",
                (user_id,),
            ).fetchall()
        return [_credential_from_row(row) for row in rows]

    def add_challenge(self, challenge: Challenge) -> None:
        """Store a new, unconsumed challenge."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO challenges (challenge_id, kind, user_id, challenge, request_digest,"
                " expires_at, consumed) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (
                    challenge.challenge_id,
                    challenge.kind.value,
                    challenge.user_id,
                    challenge.challenge,
                    challenge.request_digest,
                    challenge.expires_at,
                ),
            )

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        """Return the challenge without consuming it, or None when unknown."""
        with self._reader() as conn:
            row = conn.execute(
                f"SELECT {_CHALLENGE_COLUMNS} FROM challenges WHERE challenge_id = ?",  # noqa: S608
                (challenge_id,),
            ).fetchone()
        return None if row is None else _challenge_from_row(row)

    def consume_challenge(self, challenge_id: str, kind: ChallengeKind, now: int) -> ConsumeResult:
        """Mark the challenge used, atomically and at most once.

        The single conditional ``UPDATE ... RETURNING`` is the whole decision, so of any number
        of concurrent callers exactly one gets ``CONSUMED``. A challenge of another kind is
        reported as ``UNKNOWN``. A challenge is expired at ``now >= expires_at``.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE challenges SET consumed = 1 WHERE challenge_id = ? AND kind = ?"  # noqa: S608
                f" AND consumed = 0 AND expires_at > ? RETURNING {_CHALLENGE_COLUMNS}",
                (challenge_id, kind.value, now),
            ).fetchone()
            if row is not None:
                return ConsumeResult(ConsumeStatus.CONSUMED, _challenge_from_row(row))
            existing = conn.execute(
                "SELECT consumed, expires_at FROM challenges WHERE challenge_id = ? AND kind = ?",
                (challenge_id, kind.value),
            ).fetchone()
        if existing is None:
            return ConsumeResult(ConsumeStatus.UNKNOWN)
        if existing[0]:
            return ConsumeResult(ConsumeStatus.USED)
        return ConsumeResult(ConsumeStatus.EXPIRED)

    def record_sign_count(
        self, credential_id: bytes, sign_count: int, backup_state: bool
    ) -> SignCountStatus:
        """Store a verified assertion's counter and BS flag (WebAuthn Level 3 section 7.2 step 22).

        The counter must grow, except that an authenticator reporting 0 with a stored 0 has
        no counter and passes. Anything else is a regression: the credential is flagged as
        possibly cloned in the same transaction and every later assertion with it fails.
        """
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE credentials SET sign_count = ?, backup_state = ?"
                " WHERE credential_id = ? AND flagged_cloned = 0"
                " AND (sign_count < ? OR (sign_count = 0 AND ? = 0))",
                (sign_count, int(backup_state), credential_id, sign_count, sign_count),
            ).rowcount
            if updated == 1:
                return SignCountStatus.UPDATED
            row = conn.execute(
                "SELECT flagged_cloned FROM credentials WHERE credential_id = ?",
                (credential_id,),
            ).fetchone()
            if row is None:
                return SignCountStatus.UNKNOWN
            if row[0]:
                return SignCountStatus.FLAGGED
            conn.execute(
                "UPDATE credentials SET flagged_cloned = 1 WHERE credential_id = ?",
                (credential_id,),
            )
        return SignCountStatus.REGRESSED

    def take_rate_token(self, key: str, now: float, limit: RateLimit) -> RateDecision:
        """Take one token from rate bucket ``key`` in one write transaction."""
        with self._transaction() as conn:
            return take_token_sqlite(conn, key, now, limit)

    def breakglass_records(self) -> BreakGlassRecords:
        """Return the break-glass tables of this database (``mint.breakglass_store``)."""
        return BreakGlassRecords(self._transaction, "?")

    def enroll_credential(
        self, credential: Credential, user_handle: bytes, invitation_sha256: bytes | None, now: int
    ) -> EnrollStatus:
        """Use up the invitation, create the user if new and store the credential, atomically.

        The conditional ``UPDATE`` of the invitation decides which of two concurrent
        enrollments with one invitation wins; the loser's transaction is rolled back.

        Raises:
            CredentialExists: when a credential with the same id is registered.
        """
        try:
            with self._transaction() as conn:
                if invitation_sha256 is not None:
                    used = conn.execute(
                        "UPDATE invitations SET used_at = ? WHERE code_sha256 = ?"
                        " AND user_id = ? AND used_at IS NULL AND expires_at > ?",
                        (now, invitation_sha256, credential.user_id, now),
                    ).rowcount
                    if used != 1:
                        raise _InvitationNotUsable
                conn.execute(
                    "INSERT INTO users (user_id, user_handle, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(user_id) DO NOTHING",
                    (credential.user_id, user_handle, now),
                )
                _insert_credential_sqlite(conn, credential)
        except _InvitationNotUsable:
            return EnrollStatus.INVITATION_INVALID
        except sqlite3.IntegrityError as exc:
            raise CredentialExists(
                f"credential {credential.credential_id.hex()[:16]}... is already registered"
            ) from exc
        return EnrollStatus.ENROLLED

    def add_invitation(self, invitation: Invitation) -> None:
        """Store a new invitation."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO invitations (code_sha256, user_id, created_at, expires_at, used_at)"
                " VALUES (?, ?, ?, ?, NULL)",
                (
                    invitation.code_sha256,
                    invitation.user_id,
                    invitation.created_at,
                    invitation.expires_at,
                ),
            )

    def get_invitation(self, code_sha256: bytes) -> Invitation | None:
        """Return the invitation with this code digest, or None."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT code_sha256, user_id, created_at, expires_at, used_at FROM invitations"
                " WHERE code_sha256 = ?",
                (code_sha256,),
            ).fetchone()
        return None if row is None else Invitation(row[0], row[1], row[2], row[3], row[4])

    def list_users(self) -> list[UserSummary]:
        """Return every user with credential counts, ordered by user id."""
        with self._reader() as conn:
            rows = conn.execute(_LIST_USERS_SQL).fetchall()
        return [UserSummary(row[0], row[1], row[2], row[3]) for row in rows]

    def revoke_credentials(self, user_id: str) -> int:
        """Delete every credential of the user and return how many there were."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM credentials WHERE user_id = ?", (user_id,)).rowcount

    def purge_expired_challenges(self, expired_before: int, limit: int) -> int:
        """Delete at most ``limit`` challenges with ``expires_at <= expired_before``."""
        with self._transaction() as conn:
            return conn.execute(
                "DELETE FROM challenges WHERE challenge_id IN (SELECT challenge_id FROM challenges"
                " WHERE expires_at <= ? LIMIT ?)",
                (expired_before, limit),
            ).rowcount


_CREDENTIAL_COLUMNS = (
    "credential_id, user_id, public_key_cose, sign_count, aaguid, backup_eligible,"
    " backup_state, flagged_cloned, attestation_type, created_at"
)
_CHALLENGE_COLUMNS = "challenge_id, kind, user_id, challenge, request_digest, expires_at, consumed"
_LIST_USERS_SQL = (
    "SELECT users.user_id, users.created_at, COUNT(credentials.credential_id),"
    " COALESCE(SUM(CASE WHEN credentials.flagged_cloned THEN 1 ELSE 0 END), 0)"
    " FROM users LEFT JOIN credentials ON credentials.user_id = users.user_id"
    " GROUP BY users.user_id, users.created_at ORDER BY users.user_id"
)


def create_private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600), in a folder created 0700.

    A folder or file that exists keeps its mode, so an operator's choice is not undone.
    SQLite gives its ``-wal`` and ``-shm`` files the mode of the database file.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)


def _insert_credential_sqlite(conn: sqlite3.Connection, credential: Credential) -> None:
    conn.execute(
        f"INSERT INTO credentials ({_CREDENTIAL_COLUMNS})"  # noqa: S608
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            credential.credential_id,
            credential.user_id,
            credential.public_key_cose,
            credential.sign_count,
            credential.aaguid,
            int(credential.backup_eligible),
            int(credential.backup_state),
            int(credential.flagged_cloned),
            credential.attestation_type,
            credential.created_at,
        ),
    )


def _credential_from_row(row: tuple) -> Credential:
    return Credential(
        credential_id=row[0],
        user_id=row[1],
        public_key_cose=row[2],
        sign_count=row[3],
        aaguid=row[4],
        backup_eligible=bool(row[5]),
        backup_state=bool(row[6]),
        flagged_cloned=bool(row[7]),
        attestation_type=row[8],
        created_at=row[9],
    )


def _challenge_from_row(row: tuple) -> Challenge:
    return Challenge(
        challenge_id=row[0],
        kind=ChallengeKind(row[1]),
        user_id=row[2],
        challenge=row[3],
        request_digest=row[4],
        expires_at=row[5],
        consumed=bool(row[6]),
    )
