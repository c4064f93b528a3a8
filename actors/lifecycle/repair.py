"""Repair of one lost signing share by t helpers over the mesh, with the coordinator as relay.

The arithmetic is ``actors.frost.repair`` (Laing and Stinson's repairable threshold scheme in
the three-part form of frost-core). This module adds the sessions, the encryption and the
checks around it:

1. ``RepairTarget(...)``: the signer that lost its share draws a fresh X25519 key and
   publishes a ``RepairRequest`` naming itself, the helpers and the digest of the public key
   package it expects.
2. ``RepairHelper(...)``: each helper draws a fresh X25519 key and announces it.
3. ``RepairHelper.seal_deltas``: each helper splits its weighted share into one delta per
   helper (part 1) and encrypts every delta but its own to the helper it is for.
4. ``RepairHelper.seal_sigma``: each helper sums its own delta and the ones it received into
   sigma (part 2) and encrypts sigma to the target.
5. ``RepairTarget.finish``: the target sums the sigmas (part 3) and checks the result
   against its verifying share in the public key package before anything is sealed.

Security:
    The coordinator relays only ciphertexts, so it learns no delta, no sigma and no share. A
    helper learns one delta from each other helper, which is uniformly random on its own. The
    target checks that every helper signed off on the same public key package digest as its
    own, so a coordinator cannot hand the target a forged package to make a wrong share pass
    the verifying-share check.

Limitations:
    A wrong value from one helper makes the check in step 5 fail without naming the helper
    (the scheme cannot tell). Repeat the repair with another set of helpers. The X25519 keys
    are not bound to attestation reports, see ``actors.lifecycle.channel``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from actors.frost.errors import FrostError, InvalidRepairedShare
from actors.frost.keys import KeyPackage, PublicKeyPackage, check_participants
from actors.frost.repair import repair_share_part1, repair_share_part2, repair_share_part3
from actors.lifecycle.channel import (
    RandomSource,
    SealedScalar,
    check_session_id,
    new_box_key,
    open_scalar,
    seal_scalar,
)
from actors.lifecycle.errors import (
    RepairFailed,
    SessionMismatch,
    SessionOutOfOrder,
)
from actors.lifecycle.records import public_key_package_digest

DELTA_PURPOSE = "repair-delta"
SIGMA_PURPOSE = "repair-sigma"


@dataclass(frozen=True)
class RepairRequest:
    """The target's opening message of a repair.

    Attributes:
        session_id: the repair session.
        participant: identifier of the signer whose share is rebuilt.
        helpers: identifiers of the helpers, sorted.
        box_public_key: the target's X25519 key of this session; sigmas are encrypted to it.
        public_key_package_digest: digest of the public key package the target will check
            the repaired share against.
    """

    session_id: str
    participant: int
    helpers: tuple[int, ...]
    box_public_key: bytes
    public_key_package_digest: str


@dataclass(frozen=True)
class HelperAnnouncement:
    """A helper's X25519 key of this session; other helpers encrypt deltas to it.

    Attributes:
        session_id: the repair session.
        helper: the helper's identifier.
        box_public_key: the helper's X25519 key.
    """

    session_id: str
    helper: int
    box_public_key: bytes


@dataclass(frozen=True)
class SealedSigma:
    """A helper's sigma encrypted to the target, with the helper's view of the key package.

    Attributes:
        sealed: the encrypted sigma.
        public_key_package_digest: digest of the helper's public key package. The encrypted
            plaintext authenticates it too, because the sigma's purpose string contains it.
    """

    sealed: SealedScalar
    public_key_package_digest: str


class RepairTarget:
    """The side of the signer whose share is rebuilt.

    Args:
        session_id: id of the repair, 8 to 64 of [A-Za-z0-9_-].
        participant: this signer's identifier.
        helpers: at least t other signers that still hold their shares.
        public_key_package: the group's public key package, from the coordinator.
        rng: source of the X25519 key.

    Raises:
        SessionMismatch: the session id is invalid, the target is among the helpers, or
            there are fewer than t helpers.
    """

    def __init__(
        self,
        session_id: str,
        participant: int,
        helpers: Sequence[int],
        public_key_package: PublicKeyPackage,
        rng: RandomSource = os.urandom,
    ) -> None:
        check_session_id(session_id)
        ordered = _check_helpers(participant, helpers, public_key_package)
        self._box_key = new_box_key(rng)
        self._public_key_package = public_key_package
        self._finished = False
        self.request = RepairRequest(
            session_id,
            participant,
            ordered,
            bytes(self._box_key.public_key),
            public_key_package_digest(public_key_package),
        )

    def __repr__(self) -> str:
        return (
            f"RepairTarget(session_id={self.request.session_id}, "
            f"participant={self.request.participant})"
        )

    def finish(
        self,
        sigmas: Mapping[int, SealedSigma],
        helper_announcements: Mapping[int, HelperAnnouncement],
    ) -> KeyPackage:
        """Decrypt the helpers' sigmas, sum them and check the result (part 3).

        Args:
            sigmas: one sealed sigma from every helper, by helper.
            helper_announcements: every helper's announcement, to decrypt its sigma.

        Returns:
            The repaired key package, whose verifying share matches the public key package.

        Raises:
            SessionOutOfOrder: ``finish`` already ran.
            SessionMismatch: the sigmas or announcements are not from exactly the helpers, or
                a helper has another public key package (``signer`` names it).
            SealedPackageInvalid: a sigma fails authentication or names other parties.
            RepairFailed: the repaired share does not match the verifying share.
        """
        if self._finished:
            raise SessionOutOfOrder(
                f"repair {self.request.session_id} already finished; start a new repair",
                signer=self.request.participant,
            )
        self._finished = True
        request = self.request
        helpers = set(request.helpers)
        if set(sigmas) != helpers or set(helper_announcements) != helpers:
            raise SessionMismatch(
                f"repair of signer {request.participant} got sigmas from {sorted(sigmas)} and "
                f"announcements from {sorted(helper_announcements)}, expected both from "
                f"{list(request.helpers)}",
                signer=request.participant,
            )
        plain: dict[int, bytes] = {}
        for helper in request.helpers:
            sigma = sigmas[helper]
            if sigma.public_key_package_digest != request.public_key_package_digest:
                raise SessionMismatch(
                    f"helper {helper} has public key package "
                    f"{sigma.public_key_package_digest[:16]}, the target expects "
                    f"{request.public_key_package_digest[:16]}: the helpers and the target "
                    "disagree on the group's keys, so the repair stops",
                    signer=helper,
                )
            plain[helper] = open_scalar(
                self._box_key,
                helper_announcements[helper].box_public_key,
                sigma.sealed,
                purpose=_sigma_purpose(request.public_key_package_digest),
                session_id=request.session_id,
                sender=helper,
                recipient=request.participant,
            )
        try:
            return repair_share_part3(plain, request.participant, self._public_key_package)
        except InvalidRepairedShare as exc:
            raise RepairFailed(
                f"repaired share of signer {request.participant} does not match its verifying "
                f"share: a helper among {list(request.helpers)} sent a wrong value; repeat "
                "the repair with another set of helpers",
                signer=request.participant,
            ) from exc
        except FrostError as exc:
            raise RepairFailed(
                f"repair of signer {request.participant} failed: {exc}",
                signer=request.participant,
            ) from exc


class RepairHelper:
    """The side of one helper that still has its signing share.

    Args:
        request: the target's repair request, relayed by the coordinator.
        key_package: this helper's key package.
        public_key_package: this helper's public key package; its digest must match the
            request's, so the helper and the target agree on the group's keys.
        rng: source of the X25519 key, the random deltas and box nonces.

    Raises:
        SessionMismatch: the request is malformed, does not list this helper, or names
            another public key package.
    """

    def __init__(
        self,
        request: RepairRequest,
        key_package: KeyPackage,
        public_key_package: PublicKeyPackage,
        rng: RandomSource = os.urandom,
    ) -> None:
        check_session_id(request.session_id)
        identifier = key_package.identifier
        _check_helpers(request.participant, request.helpers, public_key_package)
        if identifier not in request.helpers:
            raise SessionMismatch(
                f"signer {identifier} is asked to help repair signer {request.participant} "
                f"but is not among the helpers {list(request.helpers)}",
                signer=identifier,
            )
        digest = public_key_package_digest(public_key_package)
        if digest != request.public_key_package_digest:
            raise SessionMismatch(
                f"repair request names public key package "
                f"{request.public_key_package_digest[:16]}, helper {identifier} holds "
                f"{digest[:16]}: rejecting the request",
                signer=identifier,
            )
        self.identifier = identifier
        self._request = request
        self._key_package = key_package
        self._digest = digest
        self._rng = rng
        self._box_key = new_box_key(rng)
        self._announcements: dict[int, HelperAnnouncement] | None = None
        self._own_delta: bytes | None = None
        self._finished = False
        self.announcement = HelperAnnouncement(
            request.session_id, identifier, bytes(self._box_key.public_key)
        )

    def __repr__(self) -> str:
        return (
            f"RepairHelper(session_id={self._request.session_id}, helper={self.identifier}, "
            f"participant={self._request.participant})"
        )

    def seal_deltas(
        self, announcements: Mapping[int, HelperAnnouncement]
    ) -> dict[int, SealedScalar]:
        """Split the weighted share into deltas and encrypt each to its helper (part 1).

        Args:
            announcements: every other helper's announcement, by helper.

        Returns:
            One sealed delta per other helper, by recipient. This helper keeps its own delta.

        Raises:
            SessionOutOfOrder: called twice.
            SessionMismatch: the announcements are not from exactly the other helpers.
        """
        if self._announcements is not None:
            raise SessionOutOfOrder(
                f"helper {self.identifier}: seal_deltas already ran in repair "
                f"{self._request.session_id}; start a new repair to retry",
                signer=self.identifier,
            )
        others = set(self._request.helpers) - {self.identifier}
        if set(announcements) != others:
            raise SessionMismatch(
                f"helper {self.identifier} got announcements from {sorted(announcements)}, "
                f"expected one from each of {sorted(others)}",
                signer=self.identifier,
            )
        for helper, announcement in announcements.items():
            if (announcement.session_id, announcement.helper) != (
                self._request.session_id,
                helper,
            ):
                raise SessionMismatch(
                    f"announcement filed under helper {helper} is from helper "
                    f"{announcement.helper} in session {announcement.session_id!r}",
                    signer=helper,
                )
        deltas = repair_share_part1(
            self._request.helpers, self._key_package, self._request.participant, self._rng
        )
        self._announcements = dict(announcements)
        self._own_delta = deltas.pop(self.identifier)
        return {
            recipient: seal_scalar(
                self._box_key,
                announcements[recipient].box_public_key,
                purpose=DELTA_PURPOSE,
                session_id=self._request.session_id,
                sender=self.identifier,
                recipient=recipient,
                scalar=delta,
                rng=self._rng,
            )
            for recipient, delta in deltas.items()
        }

    def seal_sigma(self, deltas: Mapping[int, SealedScalar]) -> SealedSigma:
        """Sum this helper's delta and the received ones into sigma, encrypted to the target.

        Args:
            deltas: the sealed delta every other helper sent to this one, by sender.

        Raises:
            SessionOutOfOrder: ``seal_deltas`` has not run, or this already ran.
            SessionMismatch: the deltas are not from exactly the other helpers.
            SealedPackageInvalid: a delta fails authentication or names other parties.
        """
        if self._announcements is None or self._own_delta is None or self._finished:
            raise SessionOutOfOrder(
                f"helper {self.identifier}: seal_sigma needs seal_deltas first and runs once "
                f"per repair ({self._request.session_id})",
                signer=self.identifier,
            )
        self._finished = True
        if set(deltas) != set(self._announcements):
            raise SessionMismatch(
                f"helper {self.identifier} got deltas from {sorted(deltas)}, expected one "
                f"from each of {sorted(self._announcements)}",
                signer=self.identifier,
            )
        received = [
            open_scalar(
                self._box_key,
                self._announcements[sender].box_public_key,
                sealed,
                purpose=DELTA_PURPOSE,
                session_id=self._request.session_id,
                sender=sender,
                recipient=self.identifier,
            )
            for sender, sealed in sorted(deltas.items())
        ]
        sigma = repair_share_part2([self._own_delta, *received])
        self._own_delta = None
        sealed_sigma = seal_scalar(
            self._box_key,
            self._request.box_public_key,
            purpose=_sigma_purpose(self._digest),
            session_id=self._request.session_id,
            sender=self.identifier,
            recipient=self._request.participant,
            scalar=sigma,
            rng=self._rng,
        )
        return SealedSigma(sealed_sigma, self._digest)


def _sigma_purpose(digest: str) -> str:
    # The digest inside the authenticated plaintext stops a relay from changing the clear copy.
    return f"{SIGMA_PURPOSE}:{digest}"


def _check_helpers(
    participant: int, helpers: Sequence[int], public_key_package: PublicKeyPackage
) -> tuple[int, ...]:
    try:
        ordered = check_participants(helpers)
    except FrostError as exc:
        raise SessionMismatch(f"repair helper list {list(helpers)} is invalid: {exc}") from exc
    known = set(public_key_package.verifying_shares)
    if participant not in known or not set(ordered) <= known:
        raise SessionMismatch(
            f"repair of signer {participant} with helpers {list(ordered)}: every one must be in "
            f"the public key package, which has {sorted(known)}",
            signer=participant,
        )
    if participant in ordered:
        raise SessionMismatch(
            f"signer {participant} cannot help repair its own share; pick other helpers",
            signer=participant,
        )
    if len(ordered) < public_key_package.min_signers:
        raise SessionMismatch(
            f"repair of signer {participant} has {len(ordered)} helpers, expected at least "
            f"t = {public_key_package.min_signers}",
            signer=participant,
        )
    return ordered
