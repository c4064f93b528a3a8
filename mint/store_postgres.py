"""``PostgresStore``: the mint's ``Store`` on PostgreSQL, shared by several mint replicas.

Every method is one transaction at READ COMMITTED, and every check-then-write is a single
conditional ``UPDATE``. When an ``UPDATE`` waits for a concurrent transaction that updated
the same row, PostgreSQL re-evaluates the ``WHERE`` clause on the committed row version
(PostgreSQL documentation, "Read Committed Isolation Level"). So of any number of replicas
racing to consume one challenge, exactly one matches ``consumed = false`` and wins.

The driver is psycopg 3. Connections come from a small pool inside the store and are opened
on demand, so the store can be shared by the threads of a web server.

Limitations:
    The pool has a fixed maximum and no health checks. A connection that the server closed
    is discarded when a statement on it fails, and that one request fails with the error.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors

from mint.breakglass_store import BREAKGLASS_SCHEMA_POSTGRES, BreakGlassRecords
from mint.invitations import Invitation, UserSummary
from mint.limits import (
    RATE_BUCKETS_SCHEMA_POSTGRES,
    RateDecision,
    RateLimit,
    take_token_postgres,
)
from mint.store import (
    Challenge,
    ChallengeKind,
    ConsumeResult,
    ConsumeStatus,
    Credential,
    CredentialExists,
    EnrollStatus,
    SignCountStatus,
    SqliteStore,
    Store,
    StoreError,
    User,
)

DEFAULT_POOL_SIZE = 8
POSTGRES_URL_SCHEMES = ("postgresql://", "postgres://")

# A fixed advisory lock key serialises schema creation, because two replicas running
# CREATE TABLE IF NOT EXISTS at the same moment can both fail on the catalog's unique index.
_SCHEMA_LOCK_KEY = 0x7A746D696E74  # "ztmint" in ASCII

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id      TEXT PRIMARY KEY,
    user_handle  BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    credential_id    BYTEA PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(user_id),
    public_key_cose  BYTEA NOT NULL,
    sign_count       BIGINT NOT NULL,
    aaguid           BYTEA NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    backup_state     BOOLEAN NOT NULL,
    flagged_cloned   BOOLEAN NOT NULL DEFAULT false,
    attestation_type TEXT NOT NULL,
    created_at       BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS credentials_by_user ON credentials(user_id);
CREATE TABLE IF NOT EXISTS challenges (
    challenge_id    TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    challenge       BYTEA NOT NULL,
    request_digest  BYTEA NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed        BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS challenges_by_expiry ON challenges(expires_at);
CREATE TABLE IF NOT EXISTS invitations (
    code_sha256  BYTEA PRIMARY KEY,
    user_id      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
"""

_CREDENTIAL_COLUMNS = (
    "credential_id, user_id, public_key_cose, sign_count, aaguid, backup_eligible,"
    " backup_state, flagged_cloned, attestation_type, created_at"
)
_CHALLENGE_COLUMNS = "challenge_id, kind, user_id, challenge, request_digest, expires_at, consumed"


class PostgresUnavailable(StoreError):
    """The PostgreSQL server cannot be reached or rejected the connection."""


class PostgresStore:
    """``Store`` on a PostgreSQL database.

    Args:
        url: a libpq connection URI, ``postgresql://user@host:port/dbname``.
        pool_size: the maximum number of connections open at once.

    Raises:
        PostgresUnavailable: the first connection or the schema creation failed.

    Security:
        ``url`` may carry a password. The store never logs it, and its ``repr`` shows
        none of it.
    """

    def __init__(self, url: str, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self._url = url
        self._idle: queue.LifoQueue[psycopg.Connection[tuple]] = queue.LifoQueue()
        self._slots = queue.Queue[None](maxsize=pool_size)
        for _ in range(pool_size):
            self._slots.put(None)
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
            conn.execute(_SCHEMA)
            conn.execute(RATE_BUCKETS_SCHEMA_POSTGRES)
            conn.execute(BREAKGLASS_SCHEMA_POSTGRES)

    def __repr__(self) -> str:
        return "PostgresStore(<url redacted>)"

    def close(self) -> None:
        """Close every idle connection."""
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple]]:
        self._slots.get()
        try:
            conn = self._acquire()
            try:
                with conn.transaction():
                    yield conn
            except BaseException:
                # The transaction was rolled back. A lost connection is discarded here.
                self._release(conn)
                raise
            self._release(conn)
        finally:
            self._slots.put(None)

    def _release(self, conn: psycopg.Connection[tuple]) -> None:
        if conn.closed or conn.broken:
            conn.close()
        else:
            self._idle.put(conn)

    def _acquire(self) -> psycopg.Connection[tuple]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            return psycopg.connect(self._url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise PostgresUnavailable(
                f"cannot connect to PostgreSQL: {_first_line(exc)}; check ZTMINT_DATABASE_URL "
                "and that the server is running"
            ) from None

    def ensure_user(self, user_id: str, user_handle: bytes, now: int) -> User:
        """Create the user unless it exists, and return the stored user."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO users (user_id, user_handle, created_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (user_id) DO NOTHING",
                (user_id, user_handle, now),
            )
            row = conn.execute(
                "SELECT user_id, user_handle FROM users WHERE user_id = %s", (user_id,)
            ).fetchone()
        if row is None:
            raise StoreError(f"user {user_id!r} was not found right after its insert")
        return User(row[0], bytes(row[1]))

    def get_user(self, user_id: str) -> User | None:
        """Return the user, or None when unknown."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT user_id, user_handle FROM users WHERE user_id = %s", (user_id,)
            ).fetchone()
        return None if row is None else User(row[0], bytes(row[1]))

    def add_credential(self, credential: Credential) -> None:
        """Store a new credential.

        Raises:
            CredentialExists: when a credential with the same id is registered.
        """
        try:
            with self._transaction() as conn:
                _insert_credential(conn, credential)
        except pg_errors.UniqueViolation as exc:
            raise CredentialExists(
                f"credential {credential.credential_id.hex()[:16]}... is already registered"
            ) from exc

    def get_credential(self, credential_id: bytes) -> Credential | None:
        """Return the credential, or None when unknown."""
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE credential_id = %s",  # noqa: S608
                (credential_id,),
            ).fetchone()
        return None if row is None else _credential_from_row(row)

    def credentials_for_user(self, user_id: str) -> list[Credential]:
        """Return every credential of the user, oldest first."""
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = %s"  # noqa: S608
                " ORDER BY created_at, credential_id",
                (user_id,),
            ).fetchall()
        return [_credential_from_row(row) for row in rows]

    def add_challenge(self, challenge: Challenge) -> None:
        """Store a new, unconsumed challenge."""
        with self._transaction() as conn:
            conn.execute(
                f"INSERT INTO challenges ({_CHALLENGE_COLUMNS})"  # noqa: S608
                " VALUES (%s, %s, %s, %s, %s, %s, false)",
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
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_CHALLENGE_COLUMNS} FROM challenges WHERE challenge_id = %s",  # noqa: S608
                (challenge_id,),
            ).fetchone()
        return None if row is None else _challenge_from_row(row)

    def consume_challenge(self, challenge_id: str, kind: ChallengeKind, now: int) -> ConsumeResult:
        """Mark the challenge used, atomically and at most once.

        The single conditional ``UPDATE ... RETURNING`` is the whole decision, so of any number
        of concurrent callers, in any number of processes, exactly one gets ``CONSUMED``. A
        challenge of another kind is reported as ``UNKNOWN``. A challenge is expired at
        ``now >= expires_at``.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE challenges SET consumed = true WHERE challenge_id = %s AND kind = %s"  # noqa: S608
                f" AND consumed = false AND expires_at > %s RETURNING {_CHALLENGE_COLUMNS}",
                (challenge_id, kind.value, now),
            ).fetchone()
            if row is not None:
                return ConsumeResult(ConsumeStatus.CONSUMED, _challenge_from_row(row))
            existing = conn.execute(
                "SELECT consumed FROM challenges WHERE challenge_id = %s AND kind = %s",
                (challenge_id, kind.value),
            ).fetchone()
        if existing is None:
            return ConsumeResult(ConsumeStatus.UNKNOWN)
        if existing[0]:
            return ConsumeResult(ConsumeStatus.USED)
        return ConsumeResult(ConsumeStatus.EXPIRED)

    def take_rate_token(self, key: str, now: float, limit: RateLimit) -> RateDecision:
        """Take one token from rate bucket ``key`` in one transaction (see ``mint.limits``)."""
        with self._transaction() as conn:
            return take_token_postgres(conn, key, now, limit)

    def breakglass_records(self) -> BreakGlassRecords:
        """Return the break-glass tables of this database (``mint.breakglass_store``)."""
        return BreakGlassRecords(self._transaction, "%s")

    def enroll_credential(
        self, credential: Credential, user_handle: bytes, invitation_sha256: bytes | None, now: int
    ) -> EnrollStatus:
        """Use up the invitation, create the user if new and store the credential, atomically.

        The conditional ``UPDATE`` of the invitation decides which of two concurrent
        enrollments with one invitation wins, also across replicas; the loser's transaction
        is rolled back.

        Raises:
            CredentialExists: when a credential with the same id is registered.
        """
        try:
            with self._transaction() as conn:
                if invitation_sha256 is not None:
                    used = conn.execute(
                        "UPDATE invitations SET used_at = %s WHERE code_sha256 = %s"
                        " AND user_id = %s AND used_at IS NULL AND expires_at > %s",
                        (now, invitation_sha256, credential.user_id, now),
                    ).rowcount
                    if used != 1:
                        raise _InvitationNotUsable
                conn.execute(
                    "INSERT INTO users (user_id, user_handle, created_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (user_id) DO NOTHING",
                    (credential.user_id, user_handle, now),
                )
                _insert_credential(conn, credential)
        except _InvitationNotUsable:
            return EnrollStatus.INVITATION_INVALID
        except pg_errors.UniqueViolation as exc:
            raise CredentialExists(
                f"credential {credential.credential_id.hex()[:16]}... is already registered"
            ) from exc
        return EnrollStatus.ENROLLED

    def add_invitation(self, invitation: Invitation) -> None:
        """Store a new invitation."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO invitations (code_sha256, user_id, created_at, expires_at, used_at)"
                " VALUES (%s, %s, %s, %s, NULL)",
                (
                    invitation.code_sha256,
                    invitation.user_id,
                    invitation.created_at,
                    invitation.expires_at,
                ),
            )

    def get_invitation(self, code_sha256: bytes) -> Invitation | None:
        """Return the invitation with this code digest, or None."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT code_sha256, user_id, created_at, expires_at, used_at FROM invitations"
                " WHERE code_sha256 = %s",
                (code_sha256,),
            ).fetchone()
        return None if row is None else Invitation(bytes(row[0]), row[1], row[2], row[3], row[4])

    def list_users(self) -> list[UserSummary]:
        """Return every user with credential counts, ordered by user id."""
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT users.user_id, users.created_at, COUNT(credentials.credential_id),"
                " COUNT(credentials.credential_id) FILTER (WHERE credentials.flagged_cloned)"
                " FROM users LEFT JOIN credentials ON credentials.user_id = users.user_id"
                " GROUP BY users.user_id, users.created_at ORDER BY users.user_id"
            ).fetchall()
        return [UserSummary(row[0], row[1], row[2], row[3]) for row in rows]

    def revoke_credentials(self, user_id: str) -> int:
        """Delete every credential of the user and return how many there were."""
        with self._transaction() as conn:
            return conn.execute("DELETE FROM credentials WHERE user_id = %s", (user_id,)).rowcount

    def purge_expired_challenges(self, expired_before: int, limit: int) -> int:
        """Delete at most ``limit`` challenges with ``expires_at <= expired_before``."""
        with self._transaction() as conn:
            return conn.execute(
                "DELETE FROM challenges WHERE challenge_id IN (SELECT challenge_id FROM challenges"
                " WHERE expires_at <= %s LIMIT %s)",
                (expired_before, limit),
            ).rowcount

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
                "UPDATE credentials SET sign_count = %s, backup_state = %s"
                " WHERE credential_id = %s AND NOT flagged_cloned"
                " AND (sign_count < %s OR (sign_count = 0 AND %s = 0))",
                (sign_count, backup_state, credential_id, sign_count, sign_count),
            ).rowcount
            if updated == 1:
                return SignCountStatus.UPDATED
            row = conn.execute(
                "SELECT flagged_cloned FROM credentials WHERE credential_id = %s FOR UPDATE",
                (credential_id,),
            ).fetchone()
            if row is None:
                return SignCountStatus.UNKNOWN
            if row[0]:
                return SignCountStatus.FLAGGED
            conn.execute(
                "UPDATE credentials SET flagged_cloned = true WHERE credential_id = %s",
                (credential_id,),
            )
        return SignCountStatus.REGRESSED


class _InvitationNotUsable(Exception):
    """Rolls back an enrollment whose invitation was used, expired or unknown meanwhile."""


def _insert_credential(conn: psycopg.Connection[tuple], credential: Credential) -> None:
    conn.execute(
        f"INSERT INTO credentials ({_CREDENTIAL_COLUMNS})"  # noqa: S608
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            credential.credential_id,
            credential.user_id,
            credential.public_key_cose,
            credential.sign_count,
            credential.aaguid,
            credential.backup_eligible,
            credential.backup_state,
            credential.flagged_cloned,
            credential.attestation_type,
            credential.created_at,
        ),
    )


def open_store(database_url: str | None, sqlite_path: Path) -> Store:
    """Open ``PostgresStore`` for a ``postgresql://`` URL, else ``SqliteStore`` at the path.

    Raises:
        ValueError: ``database_url`` is set but is not a PostgreSQL URL.
        PostgresUnavailable: the PostgreSQL server cannot be reached.
    """
    if not database_url:
        return SqliteStore(sqlite_path)
    if not database_url.startswith(POSTGRES_URL_SCHEMES):
        raise ValueError(
            "ZTMINT_DATABASE_URL must start with postgresql:// (or postgres://); unset it to "
            "use the embedded SQLite database"
        )
    return PostgresStore(database_url)


def _first_line(exc: Exception) -> str:
    # libpq messages span several lines and the first names the failure. libpq leaves the
    # password out of them, which test_postgres_store_reports_unreachable_server checks.
    return str(exc).strip().split("\n", 1)[0]


def _credential_from_row(row: tuple) -> Credential:
    return Credential(
        credential_id=bytes(row[0]),
        user_id=row[1],
        public_key_cose=bytes(row[2]),
        sign_count=row[3],
        aaguid=bytes(row[4]),
        backup_eligible=row[5],
        backup_state=row[6],
        flagged_cloned=row[7],
        attestation_type=row[8],
        created_at=row[9],
    )


def _challenge_from_row(row: tuple) -> Challenge:
    return Challenge(
        challenge_id=row[0],
        kind=ChallengeKind(row[1]),
        user_id=row[2],
        challenge=bytes(row[3]),
        request_digest=bytes(row[4]),
        expires_at=row[5],
        consumed=row[6],
    )
