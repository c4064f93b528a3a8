"""Shared helpers of the mint tests: an in-process signer, a fake clock, a service factory.

``InProcessTokenSigner`` is a test fixture, not a signer mesh: one libsodium Ed25519 key in
this process replaces the FROST threshold so that the mint can be tested without Ray.
The end-to-end tests use the real mesh.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from actors.assertion_check import AssertionEvidence, check_assertion
from actors.errors import AssertionRejected
from authz.formats import TokenClaims, token_signing_input
from mint.audit import AuditLog
from mint.invitations import InvitationStore, create_invitation
from mint.kms import LocalKms
from mint.service import MintService
from mint.signing import SignedToken, SigningError
from mint.store import SqliteStore
from mint.webauthn import RelyingParty

RP_ID = "localhost"
ORIGIN = "http://localhost:8080"
ISSUER = "http://localhost:8080"
START_TIME = 1_767_225_600


class InProcessTokenSigner:
    """Test fixture: signs with one local Ed25519 key and reports signers ``(1, 2)``.

    Like the signers of the mesh, it checks that the assertion approves the claims
    (``actors.assertion_check.check_assertion``) before it signs.
    """

    def __init__(self, seed: bytes | None = None) -> None:
        self._key = SigningKey(seed or os.urandom(32))
        self.fail_next = False
        self.calls = 0

    def __repr__(self) -> str:
        return "InProcessTokenSigner(<redacted>)"

    def group_public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise SigningError("test fixture told to fail")
        completed = dataclasses.replace(claims, signers=(1, 2))
        try:
            check_assertion(assertion, completed.to_json())
        except AssertionRejected as exc:
            raise SigningError(f"assertion rejected: {exc}") from exc
        signing_input = token_signing_input(completed, kid)
        return SignedToken(signing_input, self.sign_raw(signing_input), completed.signers, None)

    def sign_raw(self, message: bytes) -> bytes:
        """Sign any message with the fixture key, for tests of a misbehaving mesh."""
        return self._key.sign(message).signature


@dataclass
class FakeClock:
    """A clock that moves only when a test advances it."""

    now: float = START_TIME

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ServiceParts:
    """A service and the parts a test inspects."""

    service: MintService
    store: SqliteStore
    signer: InProcessTokenSigner
    kms: LocalKms
    audit: AuditLog
    clock: FakeClock
    relying_party: RelyingParty
    state_dir: Path
    extra: dict[str, object] = field(default_factory=dict)


def build_service(
    state_dir: Path,
    *,
    origin: str = ORIGIN,
    user_verification: str = "preferred",
    allow_self_attestation: bool = True,
    clock: FakeClock | None = None,
) -> ServiceParts:
    """Build a ``MintService`` over real SQLite, KMS key and audit files in ``state_dir``."""
    clock = clock or FakeClock()
    store = SqliteStore(state_dir / "mint.sqlite3")
    signer = InProcessTokenSigner()
    kms = LocalKms(state_dir / "kms-p256.pem")
    audit = AuditLog(state_dir / "audit.jsonl", clock)
    relying_party = RelyingParty(
        rp_id=RP_ID,
        origin=origin,
        user_verification=user_verification,
        allow_self_attestation=allow_self_attestation,
    )
    service = MintService(
        store=store,
        signer=signer,
        receipt_signer=kms,
        audit=audit,
        relying_party=relying_party,
        issuer=ISSUER,
        clock=clock,
        random_bytes=os.urandom,
    )
    return ServiceParts(service, store, signer, kms, audit, clock, relying_party, state_dir)


def invite(database: Path | str, user: str, ttl_seconds: int = 3600) -> str:
    """Create an invitation in a mint's database, as `ztmint users invite` does.

    ``database`` is the SQLite file's path or a PostgreSQL URL.
    """
    if isinstance(database, str):
        from mint.store_postgres import PostgresStore

        store: InvitationStore = PostgresStore(database, pool_size=1)
    else:
        store = SqliteStore(database)
    return create_invitation(store, user, ttl_seconds, int(time.time()), os.urandom)
