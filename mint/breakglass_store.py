"""Break-glass tables of the mint store: requests, guardian approvals and grants.

``SqliteStore`` and ``PostgresStore`` create these tables next to their own and hand out a
``BreakGlassRecords`` bound to their transactions (``breakglass_records()``). Two
decisions must hold across concurrent requests and mint replicas, and each is one
``INSERT ... ON CONFLICT DO NOTHING`` on a primary key. An approval is keyed on (request
id, guardian), and a grant on the request id. So a
guardian counts once per request and a request id is granted at most once, also after a
restart, because the grants table is the persisted set of granted request ids.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from actors.lifecycle.breakglass import Approval, BreakGlassRequest, Grant

BREAKGLASS_SCHEMA_SQLITE = """
CREATE TABLE IF NOT EXISTS breakglass_requests (
    request_id        TEXT PRIMARY KEY,
    requester         TEXT NOT NULL,
    reason            TEXT NOT NULL,
    scopes            TEXT NOT NULL,
    audience          TEXT NOT NULL,
    duration_seconds  INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    nonce             BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS breakglass_approvals (
    request_id          TEXT NOT NULL REFERENCES breakglass_requests(request_id),
    guardian_id         TEXT NOT NULL,
    credential_id       BLOB NOT NULL,
    authenticator_data  BLOB NOT NULL,
    client_data_json    BLOB NOT NULL,
    signature           BLOB NOT NULL,
    received_at         INTEGER NOT NULL,
    PRIMARY KEY (request_id, guardian_id)
);
CREATE TABLE IF NOT EXISTS breakglass_grants (
    request_id  TEXT PRIMARY KEY REFERENCES breakglass_requests(request_id),
    guardians   TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
"""

BREAKGLASS_SCHEMA_POSTGRES = BREAKGLASS_SCHEMA_SQLITE.replace("BLOB", "BYTEA").replace(
    "INTEGER", "BIGINT"
)

_REQUEST_COLUMNS = (
    "request_id, requester, reason, scopes, audience, duration_seconds, created_at, nonce"
)
_APPROVAL_COLUMNS = (
    "guardian_id, credential_id, authenticator_data, client_data_json, signature, received_at"
)

Transaction = Callable[[], AbstractContextManager[Any]]
"""Opens one database transaction and yields a DB-API connection (sqlite3 or psycopg)."""


@dataclass(frozen=True)
class StoredGrant:
    """A persisted grant: the request id, the counted guardians and its time window."""

    request_id: str
    guardians: tuple[str, ...]
    granted_at: int
    expires_at: int


class BreakGlassRecords:
    """The break-glass tables, reached through the owning store's transactions.

    Args:
        transaction: the store's transaction context manager factory.
        placeholder: the driver's parameter marker, ``?`` for sqlite3 or ``%s`` for psycopg.
    """

    def __init__(self, transaction: Transaction, placeholder: str) -> None:
        self._transaction = transaction
        self._placeholder = placeholder

    def add_request(self, request: BreakGlassRequest) -> None:
        """Store a new request; its id is random, so a collision raises the driver's error."""
        self._execute(
            f"INSERT INTO breakglass_requests ({_REQUEST_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.request_id,
                request.requester,
                request.reason,
                json.dumps(list(request.scopes)),
                request.audience,
                request.duration_seconds,
                request.created_at,
                request.nonce,
            ),
        )

    def get_request(self, request_id: str) -> BreakGlassRequest | None:
        """Return the request, or None when the id is unknown."""
        rows = self._query(
            f"SELECT {_REQUEST_COLUMNS} FROM breakglass_requests WHERE request_id = ?",  # noqa: S608
            (request_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return BreakGlassRequest(
            request_id=row[0],
            requester=row[1],
            reason=row[2],
            scopes=tuple(json.loads(row[3])),
            audience=row[4],
            duration_seconds=row[5],
            created_at=row[6],
            nonce=bytes(row[7]),
        )

    def add_approval(self, request_id: str, approval: Approval) -> bool:
        """Store a guardian's approval; return False when that guardian already approved."""
        inserted = self._execute(
            f"INSERT INTO breakglass_approvals (request_id, {_APPROVAL_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, guardian_id) DO NOTHING",
            (
                request_id,
                approval.guardian_id,
                approval.credential_id,
                approval.authenticator_data,
                approval.client_data_json,
                approval.signature,
                approval.received_at,
            ),
        )
        return inserted == 1

    def approvals(self, request_id: str) -> list[Approval]:
        """Return the request's approvals in the order they were received."""
        rows = self._query(
            f"SELECT {_APPROVAL_COLUMNS} FROM breakglass_approvals WHERE request_id = ?"  # noqa: S608
            " ORDER BY received_at, guardian_id",
            (request_id,),
        )
        return [
            Approval(
                guardian_id=row[0],
                credential_id=bytes(row[1]),
                authenticator_data=bytes(row[2]),
                client_data_json=bytes(row[3]),
                signature=bytes(row[4]),
                received_at=row[5],
            )
            for row in rows
        ]

    def add_grant(self, grant: Grant) -> bool:
        """Persist a grant; return False when the request id was granted before."""
        inserted = self._execute(
            "INSERT INTO breakglass_grants (request_id, guardians, granted_at, expires_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING",
            (
                grant.request.request_id,
                json.dumps(list(grant.guardians)),
                grant.granted_at,
                grant.expires_at,
            ),
        )
        return inserted == 1

    def get_grant(self, request_id: str) -> StoredGrant | None:
        """Return the persisted grant of the request, or None when it was not granted."""
        rows = self._query(
            "SELECT request_id, guardians, granted_at, expires_at FROM breakglass_grants"
            " WHERE request_id = ?",
            (request_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return StoredGrant(row[0], tuple(json.loads(row[1])), row[2], row[3])

    def _execute(self, sql: str, parameters: tuple[Any, ...]) -> int:
        with self._transaction() as conn:
            return int(conn.execute(self._dialect(sql), parameters).rowcount)

    def _query(self, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        with self._transaction() as conn:
            return list(conn.execute(self._dialect(sql), parameters).fetchall())

    def _dialect(self, sql: str) -> str:
        # No statement of this module contains a literal question mark.
        return sql.replace("?", self._placeholder)
