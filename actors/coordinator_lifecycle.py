"""Key lifecycle runs relayed by the coordinator: share refresh, share repair, guardian escrow.

``KeyLifecycleRelay`` is the part of ``actors.coordinator.CoordinatorCore`` that drives the
signer steps of ``actors.signer_lifecycle`` and relays their messages. Like key generation
(``actors.coordinator_dkg``), it receives only public values and ciphertext. Refresh values,
repair deltas and sigmas are sealed from signer to signer, and escrow bundles contain
encrypted pieces. An escrow restore carries pieces that the operator sealed to the restored
signer.

Security:
    Old and new signing shares do not combine. From the first ``refresh_commit`` until every
    signer has committed, ``sign_token`` raises ``SigningPaused``; a commit that fails part-way
    keeps signing stopped until ``resume_refresh`` commits the remaining signers. Once all have
    committed, the coordinator installs the new public key package directly, empties every
    commitment pool and asks each signer for a new start-up attestation report.

Limitations:
    A refresh needs every signer of the public key package to be up, because a FROST refresh
    cannot drop a signer. A signer that lost its staged share before its commit can never
    commit, so signing stays stopped until the operator deletes that signer's sealed share,
    restarts it, and runs ``resume_refresh`` with it in ``skip`` (at least t signers must have
    committed). The skipped signer then needs ``run_repair`` from signers that committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.errors import LifecycleStepFailed
from actors.frost.keys import PublicKeyPackage
from actors.lifecycle.channel import SealedScalar
from actors.lifecycle.escrow import EscrowBundle
from actors.lifecycle.records import public_key_package_digest
from actors.lifecycle.refresh import RefreshAnnouncement
from actors.lifecycle.repair import HelperAnnouncement, RepairRequest, SealedSigma
from actors.messages import SignerInfo
from actors.signer_lifecycle import RestoreRequest
from actors.transport import SignerTransport

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]
STATE_NEEDS_REPAIR = "needs_repair"


@dataclass
class _PendingCommit:
    """A refresh whose new shares are staged on every signer and committed on some."""

    session_id: str
    digest: str
    package: PublicKeyPackage
    remaining: set[int] = field(default_factory=set)


class KeyLifecycleRelay:
    """Refresh, repair and escrow runs of the coordinator; ``CoordinatorCore`` provides the
    attributes and ``_call``, ``refresh``, ``refill`` and ``_require_public_key_package``."""

    _slots: dict[int, Any]
    _transport: SignerTransport
    _reports: Any
    _settings: Any
    _public_key_package: PublicKeyPackage | None
    _pending_commit: _PendingCommit | None = None

    def _call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float
    ) -> dict[int, object]:
        raise NotImplementedError

    def refresh(self) -> list[dict[str, object]]:
        """Refresh the signer table; implemented by ``CoordinatorCore``."""
        raise NotImplementedError

    def refill(self) -> None:
        """Refill the commitment pools; implemented by ``CoordinatorCore``."""
        raise NotImplementedError

    def _require_public_key_package(self) -> PublicKeyPackage:
        raise NotImplementedError

    def signing_paused(self) -> str | None:
        """Return why signing is stopped, or None when it is not."""
        pending = self._pending_commit
        if pending is None:
            return None
        return (
            f"refresh {pending.session_id} is committed on some signers but not on "
            f"{sorted(pending.remaining)}: old and new shares do not combine; run "
            "`ztmint signers refresh --resume`"
        )

    # Proactive refresh.

    def run_refresh(
        self, session_id: str, progress: ProgressCallback | None = None
    ) -> PublicKeyPackage:
        """Refresh every signer's signing share, keeping the group key.

        Steps 1 to 3 run on every signer; a failure there aborts the refresh on every signer
        and the old shares stay in use. Step 4 commits the staged shares; see the module
        docstring for what happens when it fails part-way.

        Args:
            session_id: id of this refresh, 8 to 64 of [A-Za-z0-9_-], fresh for each run.
            progress: called with a one-line message after each step.

        Returns:
            The new public key package: the same group key and new verifying shares.

        Raises:
            NotEnoughSigners: no group key is known yet.
            LifecycleStepFailed: a signer is not up, failed a step, or the signers derived
                different packages (``signer`` names the first failing signer).
        """
        report = progress or _ignore
        if self._pending_commit is not None:
            raise LifecycleStepFailed(
                f"{self.signing_paused()}; a new refresh cannot start before that"
            )
        old = self._require_public_key_package()
        everyone = self._require_up(sorted(old.verifying_shares), "a refresh")

        announcements: dict[int, RefreshAnnouncement] = self._step(
            "refresh_part1", {i: (session_id,) for i in everyone}, on_failure=self._abort_all
        )
        report(f"refresh step 1 of 4: {len(announcements)} signers announced commitments")
        sealed: dict[int, dict[int, SealedScalar]] = self._step(
            "refresh_part2",
            {i: (_others(announcements, i),) for i in everyone},
            on_failure=self._abort_all,
        )
        relayed = self._relay_sealed(sealed, everyone, on_failure=self._abort_all)
        report(f"refresh step 2 of 4: relayed {sum(map(len, sealed.values()))} sealed values")
        packages: dict[int, PublicKeyPackage] = self._step(
            "refresh_part3", {i: (relayed[i],) for i in everyone}, on_failure=self._abort_all
        )
        digest = self._agreed_digest(packages, old, "refresh")
        report(f"refresh step 3 of 4: every signer staged a new share ({digest[:16]})")

        self._pending_commit = _PendingCommit(
            session_id, digest, next(iter(packages.values())), set(everyone)
        )
        return self._commit_remaining(report)

    def resume_refresh(
        self, progress: ProgressCallback | None = None, skip: Sequence[int] = ()
    ) -> PublicKeyPackage:
        """Repeat the commit of a refresh on the signers that have not committed yet.

        Args:
            progress: called with a one-line message when the commit completes.
            skip: signers that lost their share and will be repaired afterwards. Each must
                report no share (its sealed share deleted and the signer restarted), and at
                least t signers must have committed already.

        Raises:
            LifecycleStepFailed: no commit is pending, a skipped signer still has a share or
                fewer than t signers committed, or a signer failed again.
        """
        pending = self._pending_commit
        if pending is None:
            raise LifecycleStepFailed("no refresh commit is pending: nothing to resume")
        if skip:
            self._skip_lost_signers(pending, sorted(set(skip)))
        return self._commit_remaining(progress or _ignore)

    def _skip_lost_signers(self, pending: _PendingCommit, skip: list[int]) -> None:
        committed = len(pending.package.verifying_shares) - len(pending.remaining)
        if committed < pending.package.min_signers:
            raise LifecycleStepFailed(
                f"only {committed} signers committed refresh {pending.session_id}, "
                f"{pending.package.min_signers} are needed before others can be skipped"
            )
        infos = self._transport.call("describe", {i: () for i in skip}, self._settings.call_timeout)
        for identifier in skip:
            info = infos.get(identifier)
            holds_share = not isinstance(info, SignerInfo) or info.public_key_package is not None
            if identifier not in pending.remaining or holds_share:
                raise LifecycleStepFailed(
                    f"signer {identifier} cannot be skipped: it committed already or still "
                    "holds a share (or did not answer); delete its sealed share and restart it "
                    "first",
                    signer=identifier,
                )
        pending.remaining -= set(skip)

    def abort_refresh(self) -> dict[int, str]:
        """Drop the running refresh on every signer and delete the staged shares.

        Returns:
            By signer: ``deleted``, ``nothing staged``, or the error of the call.

        Raises:
            LifecycleStepFailed: some signers committed already, so aborting would leave old
                and new shares side by side; resume the commit instead.
        """
        if self._pending_commit is not None:
            raise LifecycleStepFailed(
                f"{self.signing_paused()}; aborting now would mix old and new shares"
            )
        return self._abort_all()

    def _abort_all(self) -> dict[int, str]:
        results = self._call(
            "refresh_abort", {i: () for i in self._slots}, self._settings.call_timeout
        )
        outcome = {}
        for identifier, result in sorted(results.items()):
            if isinstance(result, bool):
                outcome[identifier] = "deleted" if result else "nothing staged"
            else:
                outcome[identifier] = f"refresh_abort failed: {result!r}"
                logger.warning(
                    "refresh abort failed on a signer",
                    extra={"signer": identifier, "error": repr(result)},
                )
        return outcome

    def _commit_remaining(self, report: ProgressCallback) -> PublicKeyPackage:
        pending = self._pending_commit
        assert pending is not None
        results = self._call(
            "refresh_commit",
            {i: (pending.digest,) for i in sorted(pending.remaining)},
            self._settings.call_timeout,
        )
        failures: dict[int, str] = {}
        for identifier, result in sorted(results.items()):
            if (
                isinstance(result, PublicKeyPackage)
                and public_key_package_digest(result) == pending.digest
            ):
                pending.remaining.discard(identifier)
            else:
                failures[identifier] = f"refresh_commit failed: {result!r}"
        if failures:
            logger.error(
                "refresh commit incomplete; signing stays stopped",
                extra={"session": pending.session_id, "signers": sorted(failures)},
            )
            raise LifecycleStepFailed(
                f"refresh commit failed on signers {sorted(failures)}: "
                + "; ".join(f"{i}: {error}" for i, error in failures.items())
                + ". Signing stays stopped: fix those signers, then run "
                "`ztmint signers refresh --resume`",
                signer=min(failures),
                failures=failures,
            )

        # Every signer runs the new share now: install the package and start over.
        self._pending_commit = None
        self._public_key_package = pending.package
        for slot in self._slots.values():
            slot.commitments.clear()
            slot.epoch = None
            if self._reports is not None:
                self._reports.forget(slot.identifier)
        self.refresh()
        self.refill()
        report(f"refresh step 4 of 4: committed on every signer ({pending.digest[:16]})")
        logger.info("refresh committed", extra={"session": pending.session_id})
        return pending.package

    # Repair of one lost signing share.

    def run_repair(
        self,
        session_id: str,
        participant: int,
        helpers: Sequence[int] | None = None,
        progress: ProgressCallback | None = None,
    ) -> PublicKeyPackage:
        """Rebuild the lost signing share of ``participant`` from t helpers.

        Args:
            session_id: id of this repair, 8 to 64 of [A-Za-z0-9_-].
            participant: the signer without a share.
            helpers: signers that help; by default the first t signers that are up.
            progress: called with a one-line message after each step.

        Returns:
            The public key package, now also held by ``participant``.

        Raises:
            NotEnoughSigners: no group key is known yet.
            LifecycleStepFailed: a helper is not up, too few helpers are up, or a signer
                failed a step (``signer`` names it).
        """
        report = progress or _ignore
        package = self._require_public_key_package()
        if participant not in package.verifying_shares:
            raise LifecycleStepFailed(
                f"signer {participant} is not in the group's public key package "
                f"(signers {sorted(package.verifying_shares)})",
                signer=participant,
            )
        self.refresh()
        if helpers is None:
            candidates = [i for i in sorted(self._slots) if i != participant]
            up = [i for i in candidates if self._slots[i].state == "up"]
            chosen = up[: package.min_signers]
        else:
            chosen = self._require_up(sorted(helpers), f"the repair of signer {participant}")
        if len(chosen) < package.min_signers:
            raise LifecycleStepFailed(
                f"only signers {chosen} can help repair signer {participant}, "
                f"{package.min_signers} are needed; bring more signers up first",
                signer=participant,
            )

        request: RepairRequest = self._step(
            "repair_start", {participant: (session_id, tuple(chosen), package)}
        )[participant]
        announcements: dict[int, HelperAnnouncement] = self._step(
            "repair_help", {h: (request,) for h in chosen}
        )
        report(f"repair step 1 of 3: helpers {chosen} joined the repair of signer {participant}")
        deltas: dict[int, dict[int, SealedScalar]] = self._step(
            "repair_deltas", {h: (_others(announcements, h),) for h in chosen}
        )
        relayed = self._relay_sealed(deltas, chosen)
        sigmas: dict[int, SealedSigma] = self._step(
            "repair_sigma", {h: (relayed[h],) for h in chosen}
        )
        report(f"repair step 2 of 3: relayed {sum(map(len, deltas.values()))} sealed deltas")
        repaired: PublicKeyPackage = self._step(
            "repair_finish", {participant: (sigmas, announcements)}
        )[participant]
        self._agreed_digest({participant: repaired}, package, "repair")

        self._rejoin(participant)
        report(f"repair step 3 of 3: signer {participant} sealed its rebuilt share")
        logger.info("signer repaired", extra={"signer": participant, "helpers": chosen})
        return repaired

    # Guardian escrow.

    def run_escrow(
        self,
        escrow_id: str,
        guardian_public_keys: Sequence[bytes],
        guardian_threshold: int,
        progress: ProgressCallback | None = None,
    ) -> dict[int, EscrowBundle]:
        """Ask every signer for an escrow bundle of its share for these guardians.

        Args:
            escrow_id: id of this escrow, 8 to 64 of [A-Za-z0-9_-].
            guardian_public_keys: each guardian's P-256 key, X9.62 uncompressed.
            guardian_threshold: guardians needed to restore one share.
            progress: called with a one-line message when the bundles are in.

        Returns:
            One bundle per signer, by identifier; bundles hold ciphertext and public values.

        Raises:
            LifecycleStepFailed: a signer is not up, failed, or returned a bundle that does
                not match the group's public key package.
        """
        package = self._require_public_key_package()
        everyone = self._require_up(sorted(package.verifying_shares), "an escrow")
        keys = tuple(bytes(key) for key in guardian_public_keys)
        bundles: dict[int, EscrowBundle] = self._step(
            "escrow_create", {i: (escrow_id, keys, guardian_threshold) for i in everyone}
        )
        for identifier, bundle in bundles.items():
            if (
                bundle.signer != identifier
                or bundle.group_public_key != package.group_public_key
                or bundle.verifying_share != package.verifying_shares[identifier]
            ):
                raise LifecycleStepFailed(
                    f"signer {identifier} returned an escrow bundle of signer {bundle.signer} "
                    "that does not match the group's public key package",
                    signer=identifier,
                )
        (progress or _ignore)(
            f"escrow {escrow_id}: {len(bundles)} bundles for {len(keys)} guardians, "
            f"{guardian_threshold} needed to restore"
        )
        return bundles

    def begin_restore(self, participant: int, session_id: str) -> RestoreRequest:
        """Ask signer ``participant``, which has no share, for its restore X25519 key.

        Raises:
            LifecycleStepFailed: the signer failed, for example because it has a share.
        """
        self.refresh()
        request: RestoreRequest = self._step("escrow_restore_start", {participant: (session_id,)})[
            participant
        ]
        return request

    def finish_restore(
        self,
        participant: int,
        bundle: EscrowBundle,
        sender_box_public_key: bytes,
        pieces: Mapping[int, SealedScalar],
    ) -> PublicKeyPackage:
        """Hand signer ``participant`` its bundle and the sealed guardian pieces.

        Raises:
            NotEnoughSigners: no group key is known yet.
            LifecycleStepFailed: the signer rejected the bundle or a piece.
        """
        package = self._require_public_key_package()
        restored: PublicKeyPackage = self._step(
            "escrow_restore",
            {participant: (bundle, package, bytes(sender_box_public_key), dict(pieces))},
        )[participant]
        self._agreed_digest({participant: restored}, package, "restore")
        self._rejoin(participant)
        logger.info("signer restored from escrow", extra={"signer": participant})
        return restored

    # Shared steps.

    def _rejoin(self, identifier: int) -> None:
        slot = self._slots[identifier]
        slot.commitments.clear()
        slot.epoch = None
        if self._reports is not None:
            self._reports.forget(identifier)
        self.refresh()
        self.refill()

    def _require_up(self, identifiers: Sequence[int], purpose: str) -> list[int]:
        self.refresh()
        unknown = [i for i in identifiers if i not in self._slots]
        not_up = [i for i in identifiers if i in self._slots and self._slots[i].state != "up"]
        if unknown or not_up:
            states = ", ".join(f"{i}={self._slots[i].state}" for i in not_up)
            raise LifecycleStepFailed(
                f"{purpose} needs signers {list(identifiers)} up; unknown: {unknown}, not up: "
                f"{states or 'none'}. Repair or restart them first (`ztmint signers status`)",
                signer=(unknown or not_up)[0],
            )
        return list(identifiers)

    def _step(
        self,
        method: str,
        arguments: Mapping[int, tuple[Any, ...]],
        on_failure: Callable[[], object] | None = None,
    ) -> dict[int, Any]:
        results = self._call(method, arguments, self._settings.call_timeout)
        failures = {
            i: f"{type(r).__name__}: {r}"
            for i, r in sorted(results.items())
            if isinstance(r, BaseException)
        }
        if failures:
            if on_failure is not None:
                on_failure()
            logger.error(
                "key lifecycle step failed", extra={"step": method, "signers": sorted(failures)}
            )
            raise LifecycleStepFailed(
                f"{method} failed on signers {sorted(failures)}: "
                + "; ".join(f"signer {i}: {error}" for i, error in failures.items()),
                signer=min(failures),
                failures=failures,
            )
        return results

    def _relay_sealed(
        self,
        sealed: Mapping[int, Mapping[int, SealedScalar]],
        participants: Sequence[int],
        on_failure: Callable[[], object] | None = None,
    ) -> dict[int, dict[int, SealedScalar]]:
        relayed: dict[int, dict[int, SealedScalar]] = {i: {} for i in participants}
        for sender, by_recipient in sealed.items():
            for recipient, package in by_recipient.items():
                if package.sender != sender or recipient not in relayed or recipient == sender:
                    if on_failure is not None:
                        on_failure()
                    raise LifecycleStepFailed(
                        f"signer {sender} addressed a sealed value from {package.sender} to "
                        f"{recipient}: expected values from itself to other participants",
                        signer=sender,
                    )
                relayed[recipient][sender] = package
        return relayed

    def _agreed_digest(
        self, packages: Mapping[int, PublicKeyPackage], expected: PublicKeyPackage, run: str
    ) -> str:
        digests = {i: public_key_package_digest(p) for i, p in packages.items()}
        wrong_key = [
            i for i, p in packages.items() if p.group_public_key != expected.group_public_key
        ]
        if len(set(digests.values())) != 1 or wrong_key:
            if run == "refresh":
                self._abort_all()
            raise LifecycleStepFailed(
                f"{run} ended with different public key packages or group keys: "
                + ", ".join(f"signer {i}: {d[:16]}" for i, d in sorted(digests.items()))
                + f"; group key changed on {wrong_key}. The {run} was stopped",
                signer=(wrong_key or sorted(digests))[0],
            )
        digest = next(iter(digests.values()))
        if run != "refresh" and digest != public_key_package_digest(expected):
            raise LifecycleStepFailed(
                f"signer {next(iter(packages))} finished the {run} with public key package "
                f"{digest[:16]}, expected {public_key_package_digest(expected)[:16]}",
                signer=next(iter(packages)),
            )
        return digest


def _others(announcements: Mapping[int, Any], identifier: int) -> dict[int, Any]:
    return {i: a for i, a in announcements.items() if i != identifier}


def _ignore(_message: str) -> None:
    return None
