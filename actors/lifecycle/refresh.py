"""Proactive refresh of every signing share over the mesh, with the same group key.

A refresh runs the three parts of ``actors.frost.refresh`` on every signer, relayed by the
coordinator, then a commit step:

1. ``RefreshSession(...)``: each signer draws a polynomial with a zero constant term and
   announces its commitment together with a fresh X25519 key (``RefreshAnnouncement``).
2. ``RefreshSession.seal_packages``: each signer evaluates its polynomial for every other
   signer and encrypts each value to that signer's X25519 key (``actors.lifecycle.channel``).
3. ``RefreshSession.finish``: each signer checks every value against its sender's commitment
   and adds them to its signing share. The group key stays the same. The signer stages the new
   share beside the old one (``pending_share_store``) and returns the new public key package.
4. Commit: once every signer has returned the same new public key package, the coordinator
   calls ``commit_refresh`` on each signer, which replaces the sealed share with the staged
   one. Only then is the old share gone.

Security:
    Old and new shares do not combine: a signature share made with an old signing share fails
    verification against the new verifying share, and an aggregate that mixes one old share
    with new ones does not verify under the group key. A refresh must complete on every
    signer before any old share is deleted, because a signer that deletes its old share while
    another signer failed to finish would leave fewer than t compatible shares.

    Recovering a partial refresh:

    - Failure before every signer finished step 3: the coordinator calls ``abort_refresh`` on
      every signer. The staged shares are deleted, the old shares are untouched and still
      valid, and a new refresh can start with a new session id.
    - Failure during step 4 (some signers committed, some did not): the staged share stays on
      disk until its commit succeeds, and ``commit_refresh`` is idempotent, so the coordinator
      repeats the commit on the remaining signers.
    - A signer lost its staged share before committing while others committed: its old share
      no longer matches the group's verifying shares. Rebuild it with ``actors.lifecycle.repair``
      from t signers that committed, using the new public key package.

Limitations:
    Every signer of the public key package must take part (a frost refresh cannot remove a
    signer or change the threshold). The X25519 keys are not bound to attestation reports, see
    ``actors.lifecycle.channel``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey

from actors.frost.dkg import Round2Package
from actors.frost.errors import FrostError
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.frost.refresh import (
    RefreshRound1Package,
    RefreshSecretPackage,
    refresh_dkg_part1,
    refresh_dkg_part2,
    refresh_dkg_shares,
)
from actors.lifecycle.channel import (
    RandomSource,
    SealedScalar,
    check_session_id,
    new_box_key,
    open_scalar,
    seal_scalar,
)
from actors.lifecycle.errors import (
    RefreshFailed,
    RefreshNotPending,
    SessionMismatch,
    SessionOutOfOrder,
)
from actors.lifecycle.records import (
    public_key_package_digest,
    record_public_key_package,
    share_record,
)
from actors.sealing import ShareRecord, ShareStore

REFRESH_PURPOSE = "refresh"
PENDING_FOLDER = "refresh-pending"


@dataclass(frozen=True)
class RefreshAnnouncement:
    """Round-one broadcast of one signer in a refresh.

    Attributes:
        session_id: the refresh session.
        package: commitment to the non-constant coefficients of the refresh polynomial.
        box_public_key: the signer's X25519 key of this session.
    """

    session_id: str
    package: RefreshRound1Package
    box_public_key: bytes


@dataclass(frozen=True, repr=False)
class RefreshResult:
    """The outcome of a refresh on one signer, before it is committed.

    Attributes:
        key_package: the new key package (new signing share, same group key).
        public_key_package: every new verifying share and the unchanged group key.
    """

    key_package: KeyPackage
    public_key_package: PublicKeyPackage

    def share_record(self) -> ShareRecord:
        """Return the sealed-share record to stage."""
        return share_record(self.key_package, self.public_key_package)

    def __repr__(self) -> str:
        return (
            f"RefreshResult(identifier={self.key_package.identifier}, "
            f"public_key_package={public_key_package_digest(self.public_key_package)[:16]})"
        )


@dataclass(repr=False)
class _RefreshSecrets:
    secret: RefreshSecretPackage
    box_key: PrivateKey
    announcements: dict[int, RefreshAnnouncement] = field(default_factory=dict)


class RefreshSession:
    """One signer's side of one refresh; see the module docstring for the steps.

    Args:
        session_id: id of the refresh, the same on every signer, 8 to 64 of [A-Za-z0-9_-].
        key_package: the signer's current key package.
        public_key_package: the group's current public key package.
        rng: source of the polynomial coefficients, the X25519 key and box nonces.

    Raises:
        SessionMismatch: the session id is invalid or the key package is not in the public one.
    """

    def __init__(
        self,
        session_id: str,
        key_package: KeyPackage,
        public_key_package: PublicKeyPackage,
        rng: RandomSource = os.urandom,
    ) -> None:
        self.session_id = check_session_id(session_id)
        identifier = key_package.identifier
        if public_key_package.verifying_shares.get(identifier) != key_package.verifying_share:
            raise SessionMismatch(
                f"signer {identifier}'s verifying share is not the one in the public key "
                "package: the signer and the coordinator hold different keys",
                signer=identifier,
            )
        self.identifier = identifier
        self._key_package = key_package
        self._public_key_package = public_key_package
        self._rng = rng
        secret, package = refresh_dkg_part1(
            identifier,
            len(public_key_package.verifying_shares),
            public_key_package.min_signers,
            rng,
        )
        box_key = new_box_key(rng)
        self._secrets: _RefreshSecrets | None = _RefreshSecrets(secret, box_key)
        self._sealed = False
        self.announcement = RefreshAnnouncement(session_id, package, bytes(box_key.public_key))

    def __repr__(self) -> str:
        return f"RefreshSession(session_id={self.session_id}, identifier={self.identifier})"

    def seal_packages(
        self, announcements: Mapping[int, RefreshAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Evaluate the refresh polynomial for every other signer and encrypt each value.

        Args:
            announcements: every other signer's announcement, by identifier.

        Returns:
            One sealed package per other signer, by recipient.

        Raises:
            SessionOutOfOrder: called twice, or after ``finish``.
            SessionMismatch: an announcement is of another session or the set of senders is
                not exactly the other signers of the public key package.
        """
        secrets = self._require_secrets("seal_packages")
        if self._sealed:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: seal_packages already ran in refresh "
                f"{self.session_id}; start a new refresh to retry",
                signer=self.identifier,
            )
        others = self._check_announcements(announcements)
        try:
            values = refresh_dkg_part2(secrets.secret, {i: a.package for i, a in others.items()})
        except FrostError as exc:
            raise RefreshFailed(
                f"signer {self.identifier}: refresh round two failed: {exc}",
                signer=getattr(exc, "culprit", None),
            ) from exc
        secrets.announcements = others
        self._sealed = True
        return {
            recipient: seal_scalar(
                secrets.box_key,
                others[recipient].box_public_key,
                purpose=REFRESH_PURPOSE,
                session_id=self.session_id,
                sender=self.identifier,
                recipient=recipient,
                scalar=package.signing_share,
                rng=self._rng,
            )
            for recipient, package in values.items()
        }

    def finish(self, packages: Mapping[int, SealedScalar]) -> RefreshResult:
        """Decrypt the packages addressed here and derive the new key package.

        The session's secrets are dropped afterwards, whether or not this succeeds, so a
        failed refresh is restarted from the beginning with a new session id.

        Args:
            packages: one sealed package from every other signer, by sender.

        Raises:
            SessionOutOfOrder: ``seal_packages`` has not run, or ``finish`` already ran.
            SessionMismatch: the senders are not exactly the other signers.
            SealedPackageInvalid: a package fails authentication or names other parties.
            RefreshFailed: a value does not match its sender's commitment (``signer`` names
                the sender), or the group key changed.
        """
        secrets = self._require_secrets("finish")
        self._secrets = None
        if not self._sealed:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: finish called before seal_packages in refresh "
                f"{self.session_id}",
                signer=self.identifier,
            )
        if set(packages) != set(secrets.announcements):
            raise SessionMismatch(
                f"signer {self.identifier} got refresh packages from {sorted(packages)}, "
                f"expected one from each of {sorted(secrets.announcements)}",
                signer=self.identifier,
            )
        received = {
            sender: Round2Package(
                sender,
                self.identifier,
                open_scalar(
                    secrets.box_key,
                    secrets.announcements[sender].box_public_key,
                    sealed,
                    purpose=REFRESH_PURPOSE,
                    session_id=self.session_id,
                    sender=sender,
                    recipient=self.identifier,
                ),
            )
            for sender, sealed in packages.items()
        }
        try:
            key_package, public_key_package = refresh_dkg_shares(
                secrets.secret,
                {i: a.package for i, a in secrets.announcements.items()},
                received,
                self._key_package,
                self._public_key_package,
            )
        except FrostError as exc:
            raise RefreshFailed(
                f"signer {self.identifier}: refresh failed, keep the old shares and abort: {exc}",
                signer=getattr(exc, "culprit", None),
            ) from exc
        if public_key_package.group_public_key != self._public_key_package.group_public_key:
            raise RefreshFailed(
                f"signer {self.identifier}: the refreshed group key differs from the old one; "
                "abort the refresh and keep the old shares",
                signer=self.identifier,
            )
        return RefreshResult(key_package, public_key_package)

    def _require_secrets(self, step: str) -> _RefreshSecrets:
        if self._secrets is None:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: {step} called after refresh {self.session_id} "
                "finished or failed; start a new refresh",
                signer=self.identifier,
            )
        return self._secrets

    def _check_announcements(
        self, announcements: Mapping[int, RefreshAnnouncement]
    ) -> dict[int, RefreshAnnouncement]:
        expected = set(self._public_key_package.verifying_shares) - {self.identifier}
        if set(announcements) != expected:
            raise SessionMismatch(
                f"signer {self.identifier} got refresh announcements from "
                f"{sorted(announcements)}, expected one from each of {sorted(expected)}",
                signer=self.identifier,
            )
        for sender, announcement in announcements.items():
            if announcement.session_id != self.session_id:
                raise SessionMismatch(
                    f"refresh announcement of signer {sender} is for session "
                    f"{announcement.session_id!r}, expected {self.session_id!r}",
                    signer=sender,
                )
            if announcement.package.identifier != sender:
                raise SessionMismatch(
                    f"refresh announcement filed under signer {sender} carries the package "
                    f"of signer {announcement.package.identifier}",
                    signer=sender,
                )
        return dict(announcements)


def pending_share_store(store: ShareStore) -> ShareStore:
    """Return the store of staged (refreshed but not committed) shares beside ``store``.

    Staged shares go to ``<state_dir>/refresh-pending/shares/`` and are sealed under the same
    sealing keys as the live shares.
    """
    return ShareStore(Path(store.state_dir) / PENDING_FOLDER, store.key_provider)


def stage_refresh(store: ShareStore, result: RefreshResult) -> None:
    """Seal the refreshed share as pending, leaving the live share untouched."""
    pending_share_store(store).save(result.share_record())


def commit_refresh(store: ShareStore, identifier: int, expected_digest: str) -> ShareRecord:
    """Replace the live sealed share with the staged one, then delete the staged file.

    Call this only after every signer returned a public key package with ``expected_digest``
    from ``RefreshSession.finish``. Repeating the call after it succeeded returns the live
    record again, so the coordinator can retry a commit that failed part-way.

    Args:
        store: the signer's live share store.
        identifier: the signer's identifier.
        expected_digest: ``public_key_package_digest`` of the new public key package.

    Returns:
        The record now live.

    Raises:
        RefreshNotPending: nothing is staged and the live share is not the expected one.
        RefreshFailed: the staged share belongs to another public key package.
    """
    pending = pending_share_store(store)
    staged = pending.load(identifier)
    if staged is None:
        live = store.load(identifier)
        if live is not None and _record_digest(live) == expected_digest:
            return live
        raise RefreshNotPending(
            f"signer {identifier} has no staged refreshed share and its live share is not the "
            "expected one: repair this signer from t signers that committed",
            signer=identifier,
        )
    if _record_digest(staged) != expected_digest:
        raise RefreshFailed(
            f"signer {identifier}'s staged share belongs to public key package "
            f"{_record_digest(staged)[:16]}, expected {expected_digest[:16]}: abort the refresh",
            signer=identifier,
        )
    store.save(staged)
    pending.path(identifier).unlink()
    return staged


def abort_refresh(store: ShareStore, identifier: int) -> bool:
    """Delete the staged refreshed share of ``identifier``, if any; the live share stays.

    Returns:
        Whether a staged share was deleted.
    """
    path = pending_share_store(store).path(identifier)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _record_digest(record: ShareRecord) -> str:
    return public_key_package_digest(record_public_key_package(record))
