"""The signer's side of the key lifecycle: share refresh, share repair and guardian escrow.

``SignerLifecycle`` is part of ``actors.signer.SignerCore``. Each method checks the
coordinator's per-call token first, exactly like ``SignerCore.sign``, and then runs one step of
the pure protocol code in ``actors.lifecycle`` on this signer's key package. Secret values
(refresh polynomials, repair deltas and sigmas, escrow pieces) leave the signer only encrypted
to their recipient, so the coordinator that relays them receives only ciphertext and public values.

Security:
    A refresh stages the new signing share beside the old one and installs it only on
    ``refresh_commit``, which also draws a new epoch and empties the nonce pool. Nonces of the
    old share are dropped with the pool, so no commitment published before the commit can be
    used afterwards.

    ``repair_start`` and ``escrow_restore`` run only on a signer without a signing share, so a
    coordinator cannot overwrite a working share through them.

Limitations:
    A signer whose share is rebuilt (repair or escrow restore) trusts the public key package
    that the coordinator sends, because it has none of its own. In a repair, each helper
    rejects a request whose package differs from its own. An escrow restore checks only the
    group key, the threshold and this signer's verifying share against the bundle, so the
    other signers' verifying shares come from the coordinator unchecked. The X25519 keys of
    refresh, repair and restore sessions are not bound to attestation reports (see
    ``actors.lifecycle.channel``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec
from nacl.public import PrivateKey

from actors.caller_auth import CallTokenVerifier
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.lifecycle.channel import SealedScalar, check_session_id, new_box_key, open_scalar
from actors.lifecycle.errors import (
    EscrowBundleInvalid,
    LifecycleError,
    RefreshFailed,
    RepairFailed,
    SessionOutOfOrder,
)
from actors.lifecycle.escrow import EscrowBundle, EscrowPiece, create_escrow, recover_share
from actors.lifecycle.records import share_record
from actors.lifecycle.refresh import (
    RefreshAnnouncement,
    RefreshSession,
    abort_refresh,
    commit_refresh,
    pending_share_store,
    stage_refresh,
)
from actors.lifecycle.repair import (
    HelperAnnouncement,
    RepairHelper,
    RepairRequest,
    RepairTarget,
    SealedSigma,
)
from actors.sealing import ShareRecord, ShareStore

if TYPE_CHECKING:
    from actors.signer import SignerCore

RandomSource = Callable[[int], bytes]

RESTORE_PURPOSE = "escrow-restore"


@dataclass(frozen=True)
class RestoreRequest:
    """A signer's X25519 key for one escrow restore; the operator seals pieces to it.

    Attributes:
        session_id: the restore session.
        signer: identifier of the signer being restored.
        box_public_key: the signer's X25519 key of this session.
    """

    session_id: str
    signer: int
    box_public_key: bytes


@dataclass(repr=False)
class _RestoreSession:
    session_id: str
    box_key: PrivateKey


class SignerLifecycle:
    """Refresh, repair and escrow steps of ``SignerCore``; it provides these attributes."""

    identifier: int
    epoch: str
    _store: ShareStore
    _caller: CallTokenVerifier
    _rng: RandomSource
    _key_package: KeyPackage | None
    _public_key_package: PublicKeyPackage | None

    _refresh: RefreshSession | None = None
    _repair_target: RepairTarget | None = None
    _repair_target_package: PublicKeyPackage | None = None
    _repair_helper: RepairHelper | None = None
    _restore: _RestoreSession | None = None

    def _install(self, record: ShareRecord) -> None:
        raise NotImplementedError

    def _require_key_package(self) -> KeyPackage:
        raise NotImplementedError

    def _start_new_epoch(self) -> None:
        raise NotImplementedError

    # Proactive refresh (actors.lifecycle.refresh steps 1 to 4).

    def refresh_part1(self, auth: str, session_id: str) -> RefreshAnnouncement:
        """Start a refresh: draw the zero-constant polynomial and an X25519 key (step 1).

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SignerNotReady: the signer has no signing share.
            RefreshFailed: a refreshed share is staged already; commit or abort it first.
            SessionMismatch: the session id is invalid.
        """
        self._caller.verify(auth, "refresh_part1", (session_id,))
        key_package = self._require_key_package()
        assert self._public_key_package is not None
        if pending_share_store(self._store).path(self.identifier).exists():
            raise RefreshFailed(
                f"signer {self.identifier} has a staged refreshed share from an earlier "
                "refresh: commit it or abort that refresh before starting another",
                signer=self.identifier,
            )
        self._refresh = RefreshSession(session_id, key_package, self._public_key_package, self._rng)
        return self._refresh.announcement

    def refresh_part2(
        self, auth: str, announcements: Mapping[int, RefreshAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Encrypt this signer's refresh value for every other signer (step 2).

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: no refresh is running, or this step ran already.
            SessionMismatch: an announcement is of another session or signer set.
        """
        self._caller.verify(auth, "refresh_part2", (announcements,))
        return self._require_refresh("refresh_part2").seal_packages(announcements)

    def refresh_part3(self, auth: str, packages: Mapping[int, SealedScalar]) -> PublicKeyPackage:
        """Check the received values, derive the new share and stage it sealed (step 3).

        Returns:
            The new public key package: the same group key and new verifying shares.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: no refresh is running, or step 2 has not run.
            SessionMismatch: the senders are not exactly the other signers.
            SealedPackageInvalid: a package fails authentication (``signer`` names the sender).
            RefreshFailed: a value does not match its sender's commitment.
        """
        self._caller.verify(auth, "refresh_part3", (packages,))
        session = self._require_refresh("refresh_part3")
        self._refresh = None
        result = session.finish(packages)
        stage_refresh(self._store, result)
        return result.public_key_package

    def refresh_commit(self, auth: str, public_key_package_digest: str) -> PublicKeyPackage:
        """Install the staged share of a refresh that every signer finished (step 4).

        Installing starts a new epoch and empties the nonce pool, because nonces of the old
        share would make signature shares that no longer verify. Repeating the call after it
        succeeded returns the same package and keeps the epoch.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            RefreshNotPending: nothing is staged and the live share is not the expected one.
            RefreshFailed: the staged share belongs to another public key package.
        """
        self._caller.verify(auth, "refresh_commit", (public_key_package_digest,))
        record = commit_refresh(self._store, self.identifier, public_key_package_digest)
        if self._key_package is None or self._key_package.signing_share != record.signing_share:
            self._install(record)
            self._start_new_epoch()
        assert self._public_key_package is not None
        return self._public_key_package

    def refresh_abort(self, auth: str) -> bool:
        """Drop the running refresh and delete a staged share; the live share stays.

        Returns:
            Whether a staged share was deleted.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
        """
        self._caller.verify(auth, "refresh_abort", ())
        self._refresh = None
        return abort_refresh(self._store, self.identifier)

    def _require_refresh(self, step: str) -> RefreshSession:
        if self._refresh is None:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: {step} called with no refresh running; start "
                "with refresh_part1",
                signer=self.identifier,
            )
        return self._refresh

    # Repair of a lost signing share (actors.lifecycle.repair).

    def repair_start(
        self,
        auth: str,
        session_id: str,
        helpers: Sequence[int],
        public_key_package: PublicKeyPackage,
    ) -> RepairRequest:
        """Open a repair of this signer's lost share with ``helpers`` (target side).

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            RepairFailed: the signer still has a signing share.
            SessionMismatch: the session id or the helper list is invalid, or the public key
                package does not contain this signer.
        """
        self._caller.verify(auth, "repair_start", (session_id, helpers, public_key_package))
        self._require_no_share("repair_start", RepairFailed)
        target = RepairTarget(
            session_id, self.identifier, tuple(helpers), public_key_package, self._rng
        )
        self._repair_target = target
        self._repair_target_package = public_key_package
        return target.request

    def repair_help(self, auth: str, request: RepairRequest) -> HelperAnnouncement:
        """Join a repair as a helper and announce this helper's X25519 key.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SignerNotReady: the signer has no signing share.
            SessionMismatch: the request does not list this signer or names another public
                key package.
        """
        self._caller.verify(auth, "repair_help", (request,))
        key_package = self._require_key_package()
        assert self._public_key_package is not None
        self._repair_helper = RepairHelper(
            request, key_package, self._public_key_package, self._rng
        )
        return self._repair_helper.announcement

    def repair_deltas(
        self, auth: str, announcements: Mapping[int, HelperAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Split this helper's weighted share into deltas, each sealed to another helper.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: ``repair_help`` has not run, or this step ran already.
            SessionMismatch: the announcements are of another session or helper set.
        """
        self._caller.verify(auth, "repair_deltas", (announcements,))
        return self._require_helper("repair_deltas").seal_deltas(announcements)

    def repair_sigma(self, auth: str, deltas: Mapping[int, SealedScalar]) -> SealedSigma:
        """Sum the deltas into this helper's sigma, sealed to the target.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: ``repair_deltas`` has not run, or this step ran already.
            SessionMismatch: the deltas are not from exactly the other helpers.
            SealedPackageInvalid: a delta fails authentication (``signer`` names the sender).
        """
        self._caller.verify(auth, "repair_sigma", (deltas,))
        helper = self._require_helper("repair_sigma")
        self._repair_helper = None
        return helper.seal_sigma(deltas)

    def repair_finish(
        self,
        auth: str,
        sigmas: Mapping[int, SealedSigma],
        announcements: Mapping[int, HelperAnnouncement],
    ) -> PublicKeyPackage:
        """Rebuild this signer's share from the helpers' sigmas, check it and seal it.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: ``repair_start`` has not run, or this step ran already.
            SessionMismatch: the sigmas or announcements are not from exactly the helpers.
            SealedPackageInvalid: a sigma fails authentication (``signer`` names the helper).
            RepairFailed: the signer got a share meanwhile, or the rebuilt share does not
                match its verifying share.
        """
        self._caller.verify(auth, "repair_finish", (sigmas, announcements))
        target, package = self._repair_target, self._repair_target_package
        self._repair_target = None
        self._repair_target_package = None
        if target is None or package is None:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: repair_finish called with no repair running; "
                "start with repair_start",
                signer=self.identifier,
            )
        self._require_no_share("repair_finish", RepairFailed)
        key_package = target.finish(sigmas, announcements)
        self._store.save(share_record(key_package, package))
        self._install_rebuilt(key_package, package)
        return package

    def _require_helper(self, step: str) -> RepairHelper:
        if self._repair_helper is None:
            raise SessionOutOfOrder(
                f"helper {self.identifier}: {step} called with no repair running; start "
                "with repair_help",
                signer=self.identifier,
            )
        return self._repair_helper

    # Guardian escrow (actors.lifecycle.escrow).

    def escrow_create(
        self,
        auth: str,
        escrow_id: str,
        guardian_public_keys: Sequence[bytes],
        guardian_threshold: int,
    ) -> EscrowBundle:
        """Split this signer's share among guardians, each piece encrypted to its P-256 key.

        Args:
            auth: the coordinator's token for this call.
            escrow_id: id of the escrow, 8 to 64 of [A-Za-z0-9_-].
            guardian_public_keys: each guardian's P-256 key, X9.62 uncompressed (65 bytes).
            guardian_threshold: guardians needed to restore the share.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SignerNotReady: the signer has no signing share.
            EscrowBundleInvalid: a key is not a P-256 point, or the id or threshold is invalid.
        """
        self._caller.verify(
            auth, "escrow_create", (escrow_id, guardian_public_keys, guardian_threshold)
        )
        key_package = self._require_key_package()
        keys = []
        for index, encoded in enumerate(guardian_public_keys, start=1):
            try:
                keys.append(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), encoded))
            except (ValueError, TypeError) as exc:
                raise EscrowBundleInvalid(
                    f"guardian {index}'s key is not an X9.62 encoded P-256 point: {exc}",
                    signer=self.identifier,
                ) from exc
        return create_escrow(escrow_id, key_package, keys, guardian_threshold, self._rng)

    def escrow_restore_start(self, auth: str, session_id: str) -> RestoreRequest:
        """Open an escrow restore: draw the X25519 key the guardians' pieces are sealed to.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            EscrowBundleInvalid: the signer still has a signing share.
            SessionMismatch: the session id is invalid.
        """
        self._caller.verify(auth, "escrow_restore_start", (session_id,))
        self._require_no_share("escrow_restore_start", EscrowBundleInvalid)
        box_key = new_box_key(self._rng)
        self._restore = _RestoreSession(check_session_id(session_id), box_key)
        return RestoreRequest(session_id, self.identifier, bytes(box_key.public_key))

    def escrow_restore(
        self,
        auth: str,
        bundle: EscrowBundle,
        public_key_package: PublicKeyPackage,
        sender_box_public_key: bytes,
        pieces: Mapping[int, SealedScalar],
    ) -> PublicKeyPackage:
        """Rebuild this signer's share from sealed guardian pieces and seal it.

        Args:
            auth: the coordinator's token for this call.
            bundle: this signer's escrow bundle.
            public_key_package: the group's public key package; it must contain the bundle's
                group key and this signer's verifying share.
            sender_box_public_key: the X25519 key the operator sealed the pieces with.
            pieces: decrypted guardian pieces sealed to this signer, by guardian index.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SessionOutOfOrder: ``escrow_restore_start`` has not run.
            EscrowBundleInvalid: the signer has a share, or the bundle is of another signer or
                does not match the public key package.
            SealedPackageInvalid: a piece fails authentication (``signer`` is the index).
            EscrowPieceInvalid, TooFewGuardians, RecoveredShareMismatch: from
                ``recover_share``.
        """
        self._caller.verify(
            auth,
            "escrow_restore",
            (bundle, public_key_package, sender_box_public_key, pieces),
        )
        session, self._restore = self._restore, None
        if session is None:
            raise SessionOutOfOrder(
                f"signer {self.identifier}: escrow_restore called before escrow_restore_start",
                signer=self.identifier,
            )
        self._require_no_share("escrow_restore", EscrowBundleInvalid)
        self._check_bundle(bundle, public_key_package)
        decrypted = {
            index: EscrowPiece(
                index,
                open_scalar(
                    session.box_key,
                    sender_box_public_key,
                    sealed,
                    purpose=RESTORE_PURPOSE,
                    session_id=session.session_id,
                    sender=index,
                    recipient=self.identifier,
                ),
            )
            for index, sealed in pieces.items()
        }
        key_package = recover_share(bundle, decrypted)
        self._store.save(share_record(key_package, public_key_package))
        self._install_rebuilt(key_package, public_key_package)
        return public_key_package

    def _check_bundle(self, bundle: EscrowBundle, package: PublicKeyPackage) -> None:
        bundle.check()
        if bundle.signer != self.identifier:
            raise EscrowBundleInvalid(
                f"escrow bundle {bundle.escrow_id} is of signer {bundle.signer}, this is "
                f"signer {self.identifier}: use signer {self.identifier}'s bundle",
                signer=self.identifier,
            )
        if (
            bundle.group_public_key != package.group_public_key
            or package.verifying_shares.get(self.identifier) != bundle.verifying_share
            or bundle.min_signers != package.min_signers
        ):
            raise EscrowBundleInvalid(
                f"escrow bundle {bundle.escrow_id} does not match the group's public key "
                "package (group key, threshold or verifying share): it was made before a "
                "refresh or for another group; use a bundle made after the last refresh",
                signer=self.identifier,
            )

    # Shared helpers.

    def _require_no_share(self, step: str, error: type[LifecycleError]) -> None:
        if self._key_package is not None:
            raise error(
                f"signer {self.identifier} has a signing share: rejecting {step}, which "
                "would replace it; only a signer without a share is rebuilt",
                signer=self.identifier,
            )

    def _install_rebuilt(self, key_package: KeyPackage, package: PublicKeyPackage) -> None:
        self._install(share_record(key_package, package))
        self._start_new_epoch()


class SignerActorLifecycle:
    """Ray actor methods that run the ``SignerLifecycle`` steps of the wrapped ``SignerCore``.

    Ray never retries these calls (``max_task_retries=0``). Every step either is idempotent
    (``refresh_commit``, ``refresh_abort``) or fails with ``SessionOutOfOrder`` when sent twice.
    """

    _core: SignerCore

    def _record_pool_depth(self) -> None:
        raise NotImplementedError

    def refresh_part1(self, auth: str, session_id: str) -> RefreshAnnouncement:
        """Run ``SignerCore.refresh_part1``."""
        return self._core.refresh_part1(auth, session_id)

    def refresh_part2(
        self, auth: str, announcements: Mapping[int, RefreshAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Run ``SignerCore.refresh_part2``."""
        return self._core.refresh_part2(auth, announcements)

    def refresh_part3(self, auth: str, packages: Mapping[int, SealedScalar]) -> PublicKeyPackage:
        """Run ``SignerCore.refresh_part3``."""
        return self._core.refresh_part3(auth, packages)

    def refresh_commit(self, auth: str, public_key_package_digest: str) -> PublicKeyPackage:
        """Run ``SignerCore.refresh_commit`` and record the emptied pool."""
        try:
            return self._core.refresh_commit(auth, public_key_package_digest)
        finally:
            self._record_pool_depth()

    def refresh_abort(self, auth: str) -> bool:
        """Run ``SignerCore.refresh_abort``."""
        return self._core.refresh_abort(auth)

    def repair_start(
        self,
        auth: str,
        session_id: str,
        helpers: Sequence[int],
        public_key_package: PublicKeyPackage,
    ) -> RepairRequest:
        """Run ``SignerCore.repair_start``."""
        return self._core.repair_start(auth, session_id, helpers, public_key_package)

    def repair_help(self, auth: str, request: RepairRequest) -> HelperAnnouncement:
        """Run ``SignerCore.repair_help``."""
        return self._core.repair_help(auth, request)

    def repair_deltas(
        self, auth: str, announcements: Mapping[int, HelperAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Run ``SignerCore.repair_deltas``."""
        return self._core.repair_deltas(auth, announcements)

    def repair_sigma(self, auth: str, deltas: Mapping[int, SealedScalar]) -> SealedSigma:
        """Run ``SignerCore.repair_sigma``."""
        return self._core.repair_sigma(auth, deltas)

    def repair_finish(
        self,
        auth: str,
        sigmas: Mapping[int, SealedSigma],
        announcements: Mapping[int, HelperAnnouncement],
    ) -> PublicKeyPackage:
        """Run ``SignerCore.repair_finish``."""
        return self._core.repair_finish(auth, sigmas, announcements)

    def escrow_create(
        self,
        auth: str,
        escrow_id: str,
        guardian_public_keys: Sequence[bytes],
        guardian_threshold: int,
    ) -> EscrowBundle:
        """Run ``SignerCore.escrow_create``."""
        return self._core.escrow_create(auth, escrow_id, guardian_public_keys, guardian_threshold)

    def escrow_restore_start(self, auth: str, session_id: str) -> RestoreRequest:
        """Run ``SignerCore.escrow_restore_start``."""
        return self._core.escrow_restore_start(auth, session_id)

    def escrow_restore(
        self,
        auth: str,
        bundle: EscrowBundle,
        public_key_package: PublicKeyPackage,
        sender_box_public_key: bytes,
        pieces: Mapping[int, SealedScalar],
    ) -> PublicKeyPackage:
        """Run ``SignerCore.escrow_restore``."""
        return self._core.escrow_restore(
            auth, bundle, public_key_package, sender_box_public_key, pieces
        )
