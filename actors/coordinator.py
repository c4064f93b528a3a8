"""The coordinator: drives key generation, keeps commitment pools, and runs threshold signing.

``CoordinatorCore`` is the whole logic and reaches signers only through a ``SignerTransport``,
so it runs unchanged over in-process signers (tests) or Ray actors (``actors.coordinator_actor``).
It plays the coordinator role of RFC 9591 section 5. ``sign_token`` completes the token claims
with the signer set and the evidence digest, and builds the signing package from precomputed
commitments. It verifies each signature share against the signer's verifying share (section
5.4) and each signer's SEV-SNP report. Then it aggregates the shares (section 5.3) and
verifies the result as a plain Ed25519 signature (RFC 8032 section 5.1.7).

Security:
    The coordinator never receives a signing share or a nonce. During key generation it relays
    round-two packages that are encrypted from signer to signer. Each commitment is taken out
    of its pool before use, so the coordinator never offers a commitment twice; the signers
    enforce the same rule on their side. Every signer call except ``describe`` carries a
    per-call token signed with the coordinator key (``actors.caller_auth``). No share is
    aggregated before its signer's attestation report for this signing input is verified.

Concurrency:
    Several ``sign_token`` calls may run at once in different threads. A state lock guards the
    signer table and the pools, and is held only to choose signers and take their commitments
    out of the pools, and to record outcomes, never across a signer call. ``refresh`` and
    ``refill`` run one at a time. Key generation and key lifecycle runs must hold
    ``exclusive()``, which waits for the signing calls in flight and holds back new ones.

Limitations:
    The X25519 public keys that signers announce in DKG round one are bound to each signer's
    attestation report, but only the coordinator checks that binding. The signers take the
    other signers' keys from the coordinator, so a malicious coordinator could still put
    itself in the middle of key generation. Round one also assumes a broadcast channel, but the
    coordinator relays it: a coordinator that sends different announcements to different
    signers is caught only at the end (``DkgInconsistent``), after each signer has sealed its
    share, so those sealed shares must then be deleted by hand.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from actors.assertion_check import AssertionEvidence, check_assertion
from actors.caller_auth import CallTokenIssuer
from actors.coordinator_dkg import KeyGenerationRelay
from actors.coordinator_lifecycle import STATE_NEEDS_REPAIR, KeyLifecycleRelay
from actors.errors import (
    AggregateSignatureInvalid,
    AssertionRejected,
    CallerRejected,
    DkgInconsistent,
    EvidenceChanged,
    MessageRejected,
    MintFailed,
    NotEnoughSigners,
    ReportRejected,
    SigningPaused,
    StaleEpoch,
)
from actors.frost.aggregate import aggregate, verify_signature_share
from actors.frost.ciphersuite import verify_signature
from actors.frost.errors import FrostError, InvalidSignatureShare
from actors.frost.keys import PublicKeyPackage
from actors.frost.round1 import SigningCommitments
from actors.frost.round2 import SignatureShare, SigningPackage, make_signing_package
from actors.message_check import check_token_signing_input
from actors.messages import (
    CommitmentBatch,
    SignatureReply,
    SignerInfo,
    SignRequest,
)
from actors.metrics import MeshMetrics, NoMetrics
from actors.report_verification import (
    ReportVerifier,
    mint_report_data,
    startup_report_data,
)
from actors.signer import signer_actor_name
from actors.transport import SignerTransport
from authz.formats import TokenClaims, token_signing_input
from authz.jwk import okp_ed25519_jwk, thumbprint

COORDINATOR_ACTOR_NAME = "ztmint-coordinator"

logger = logging.getLogger(__name__)

STATE_UP = "up"
STATE_DOWN = "down"
STATE_EXCLUDED = "excluded"
_CHALLENGE_SIZE = 32
_MEASUREMENT_PREFIX_HEX = 16
_REPORT_REJECTED_PREFIX = "start-up report rejected: "

ProgressCallback = Callable[[str], None]
RandomSource = Callable[[int], bytes]


@dataclass(frozen=True)
class CoordinatorSettings:
    """Tuning of the coordinator.

    Attributes:
        batch_size: commitments requested from a signer per refill.
        low_watermark: refill a signer's pool when it contains fewer commitments than this.
        sign_timeout: seconds to wait for the signature shares of one attempt.
        call_timeout: seconds to wait for other signer calls (describe, refill, DKG steps).
        max_attempts: signing attempts per token before giving up.
        refill_interval: seconds between background refill rounds of the Ray actor.
    """

    batch_size: int = 32
    low_watermark: int = 8
    sign_timeout: float = 5.0
    call_timeout: float = 30.0
    max_attempts: int = 3
    refill_interval: float = 1.0


@dataclass(frozen=True)
class SignedToken:
    """A token signing input and its aggregate signature.

    Attributes:
        signing_input: ``BASE64URL(header) '.' BASE64URL(claims)`` with the completed claims.
        signature: the 64-byte Ed25519 signature, valid under the group key.
        signers: FROST identifiers of the signers whose shares were aggregated, ascending;
            the same list as the claims' ``ztm.signers``.
        evidence: the claims' ``ztm.evidence`` digest, or None when attestation is off.
    """

    signing_input: bytes
    signature: bytes
    signers: tuple[int, ...]
    evidence: str | None


@dataclass
class _SignerSlot:
    """Coordinator's record of one signer: health, placement and unused commitments."""

    identifier: int
    state: str = STATE_DOWN
    epoch: str | None = None
    node_id: str | None = None
    fault_domain: str | None = None
    last_error: str | None = None
    commitments: collections.deque[SigningCommitments] = field(default_factory=collections.deque)

    def mark_down(self, error: str) -> None:
        self.state = STATE_DOWN
        self.last_error = error
        self.epoch = None
        self.commitments.clear()


@dataclass(frozen=True)
class _Reservation:
    """Signers chosen for one signing attempt, with the commitments taken out of their pools."""

    signers: list[int]
    commitments: list[SigningCommitments]
    epochs: dict[int, str]
    evidence: str | None


class SharedExclusiveLock:
    """A readers-writer lock that prefers writers: ``shared`` holders run together, and an
    ``exclusive`` holder runs alone.

    A thread waiting for ``exclusive`` holds back new ``shared`` holders, so a steady stream
    of signing calls cannot starve a key lifecycle run. Neither side is reentrant, so a thread
    inside one side must not enter the other.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock together with other shared holders."""
        with self._condition:
            while self._exclusive or self._exclusive_waiting:
                self._condition.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._condition:
                self._shared -= 1
                if self._shared == 0:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Wait until no other holder is left, then hold the lock alone."""
        with self._condition:
            self._exclusive_waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._condition.wait()
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class CoordinatorCore(KeyGenerationRelay, KeyLifecycleRelay):
    """Coordinator logic over a set of signers.

    Key generation comes from ``KeyGenerationRelay``; share refresh, repair and escrow runs
    come from ``KeyLifecycleRelay``.

    Args:
        transport: how to reach the signers.
        identifiers: FROST identifiers of all n signers.
        issuer: signs the per-call tokens the signers require.
        settings: pool sizes, timeouts and attempts.
        reports: verifies signers' attestation reports, or None when attestation is off.
        metrics: where signer health, failures and signing time are recorded.
        rng: source of attestation challenges.
        timer: monotonic seconds, for the signing time metric.
    """

    def __init__(
        self,
        transport: SignerTransport,
        identifiers: Sequence[int],
        issuer: CallTokenIssuer,
        settings: CoordinatorSettings | None = None,
        reports: ReportVerifier | None = None,
        metrics: MeshMetrics | None = None,
        rng: RandomSource = os.urandom,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        if len(set(identifiers)) != len(identifiers) or not identifiers:
            raise ValueError(f"signer identifiers {list(identifiers)} must be distinct, not empty")
        self._transport = transport
        self._issuer = issuer
        self._settings = settings or CoordinatorSettings()
        self._reports = reports
        self._metrics = metrics or NoMetrics()
        self._rng = rng
        self._timer = timer
        self._slots = {identifier: _SignerSlot(identifier) for identifier in identifiers}
        self._public_key_package: PublicKeyPackage | None = None
        self._dkg = None
        self._pending_commit = None
        # Lock order: _gate, then _maintenance, then _lock. _lock is never held across a
        # signer call.
        self._gate = SharedExclusiveLock()
        self._maintenance = threading.RLock()
        self._lock = threading.RLock()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Wait for the ``sign_token`` calls in flight and hold back new ones.

        Key generation and the key lifecycle runs (refresh, repair, escrow, restore) must run
        inside this context when ``sign_token`` can be called from other threads, because
        they change shares and signer state across several signer calls.
        """
        return self._gate.exclusive()

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Run alongside ``sign_token`` calls but never during an ``exclusive()`` run."""
        return self._gate.shared()

    def _call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float
    ) -> dict[int, object]:
        """Call ``method`` on each signer with a fresh per-call token as first argument."""
        authenticated = {
            identifier: (
                self._issuer.issue(signer_actor_name(identifier), method, args),
                *args,
            )
            for identifier, args in arguments.items()
        }
        return self._transport.call(method, authenticated, timeout)

    # Public keys and status.

    def public_key_package(self) -> PublicKeyPackage | None:
        """Return the group key and verifying shares, or None before key generation."""
        return self._public_key_package

    def group_public_key(self) -> bytes:
        """Return the 32-byte Ed25519 group key.

        Raises:
            NotEnoughSigners: no key is known yet (run key generation or ``refresh``).
        """
        return self._require_public_key_package().group_public_key

    def status(self) -> list[dict[str, object]]:
        """Return one row per signer: placement, state, attestation, pool depth, last error.

        Keys: identifier, actor_name, node_id, fault_domain, state, attestation (``verified``,
        ``none`` or ``off``), measurement (hex prefix), policy_id, verified_at (ISO 8601),
        pool_depth (commitments the coordinator holds) and last_error.
        """
        with self._lock:
            return [self._status_row(slot) for slot in self._slots.values()]

    def _status_row(self, slot: _SignerSlot) -> dict[str, object]:
        row: dict[str, object] = {
            "identifier": slot.identifier,
            "actor_name": signer_actor_name(slot.identifier),
            "node_id": slot.node_id,
            "fault_domain": slot.fault_domain,
            "state": slot.state,
            "attestation": "off",
            "measurement": None,
            "policy_id": None,
            "verified_at": None,
            "pool_depth": len(slot.commitments),
            "last_error": slot.last_error,
        }
        if self._reports is not None:
            last = self._reports.last(slot.identifier)
            row["attestation"] = "none" if last is None else "verified"
            if last is not None:
                row["measurement"] = last.evidence.measurement.hex()[:_MEASUREMENT_PREFIX_HEX]
                row["policy_id"] = last.evidence.policy_id
                row["verified_at"] = last.verified_at.isoformat()
        return row

    def readmit(self, identifier: int) -> None:
        """Let an excluded signer take part again after its next refresh."""
        with self._lock:
            slot = self._slots[identifier]
            if slot.state == STATE_EXCLUDED:
                slot.state = STATE_DOWN

    def _set_state(self, slot: _SignerSlot, state: str, error: str | None = None) -> None:
        if state == STATE_DOWN:
            slot.mark_down(error or "down")
        else:
            if state == STATE_UP and slot.state != STATE_UP:
                # A signer that came back (after key generation, a restart or a repair) no
                # longer has the problem that kept it out; status must not keep showing it.
                slot.last_error = None
            slot.state = state
            if error is not None:
                slot.last_error = error
        if state != STATE_UP and self._reports is not None:
            self._reports.forget(slot.identifier)
        self._metrics.signer_up(slot.identifier, slot.fault_domain, state == STATE_UP)

    def refresh(self) -> list[dict[str, object]]:
        """Ask every signer that is not excluded for its state, learn the group key, and
        verify a start-up attestation report of each signer that has none verified.

        A signer whose epoch changed was restarted: its old commitments are dropped, because
        its nonces died with the old process, and it attests again.

        Returns:
            ``status()`` after the refresh.

        Raises:
            DkgInconsistent: two signers report different public key packages.
        """
        with self._maintenance:
            with self._lock:
                to_ask = {i: () for i, slot in self._slots.items() if slot.state != STATE_EXCLUDED}
            results = self._transport.call("describe", to_ask, self._settings.call_timeout)
            with self._lock:
                self._apply_descriptions(results)
            self._attest_unverified()
            return self.status()

    def _apply_descriptions(self, results: Mapping[int, object]) -> None:
        packages: dict[int, PublicKeyPackage] = {}
        without_share: list[int] = []
        for identifier, result in results.items():
            slot = self._slots[identifier]
            if not isinstance(result, SignerInfo):
                self._set_state(slot, STATE_DOWN, _describe_error(result))
                continue
            if result.epoch != slot.epoch:
                slot.commitments.clear()
                slot.epoch = result.epoch
                if self._reports is not None:
                    self._reports.forget(identifier)
            slot.node_id = result.node_id
            slot.fault_domain = result.fault_domain
            if result.public_key_package is None:
                without_share.append(identifier)
                continue
            packages[identifier] = result.public_key_package
            self._set_state(slot, STATE_UP)
        if self._pending_commit is None:
            self._adopt_public_key_package(packages)
        for identifier in without_share:
            self._mark_without_share(self._slots[identifier], results[identifier])

    def _mark_without_share(self, slot: _SignerSlot, info: object) -> None:
        # Before key generation no signer has a share; after it, a signer without one lost it.
        assert isinstance(info, SignerInfo)
        if self._public_key_package is None:
            self._set_state(slot, STATE_DOWN, "signer has no signing share")
        else:
            error = (
                f"signer has no signing share: run `ztmint signers repair --signer "
                f"{slot.identifier}` or restore it from its escrow bundle"
            )
            if slot.state != STATE_NEEDS_REPAIR:
                logger.warning("signer needs repair", extra={"signer": slot.identifier})
            self._set_state(slot, STATE_NEEDS_REPAIR, error)
            slot.commitments.clear()
        slot.epoch = info.epoch

    def _attest_unverified(self) -> None:
        # While a refresh commit is incomplete, signers hold old and new verifying shares, so a
        # start-up report could be checked against the wrong one. Signing is stopped anyway,
        # and the end of the commit attests every signer again.
        with self._lock:
            if self._reports is None or self._public_key_package is None or self._pending_commit:
                return
            reports = self._reports
            pending = [
                identifier
                for identifier, slot in self._slots.items()
                if slot.state == STATE_UP and reports.last(identifier) is None
            ]
            shares = self._public_key_package.verifying_shares
        errors = self._attest(pending, shares, {})
        with self._lock:
            self._record_attest_errors(errors)

    def _record_attest_errors(self, errors: Mapping[int, str]) -> None:
        for identifier, error in errors.items():
            # A rejected report excludes the signer, while a failed call only marks it down,
            # so the next refresh asks again.
            rejected = error.startswith(_REPORT_REJECTED_PREFIX)
            self._set_state(
                self._slots[identifier], STATE_EXCLUDED if rejected else STATE_DOWN, error
            )
            logger.error(
                "signer start-up attestation failed",
                extra={
                    "signer": identifier,
                    "error": error,
                    "state": self._slots[identifier].state,
                },
            )

    def _attest(
        self,
        identifiers: Sequence[int],
        verifying_shares: Mapping[int, bytes],
        box_keys: Mapping[int, bytes],
    ) -> dict[int, str]:
        """Verify a fresh start-up report of each signer; return the errors by signer."""
        if self._reports is None or not identifiers:
            return {}
        challenges = {i: self._rng(_CHALLENGE_SIZE) for i in identifiers}
        with self._lock:
            epochs = {i: self._slots[i].epoch or "" for i in identifiers}
        results = self._call(
            "attest", {i: (challenges[i],) for i in identifiers}, self._settings.call_timeout
        )
        errors: dict[int, str] = {}
        for identifier, result in sorted(results.items()):
            expected = startup_report_data(
                challenges[identifier],
                identifier,
                epochs[identifier],
                verifying_shares.get(identifier),
                box_keys.get(identifier),
            )
            if isinstance(result, BaseException):
                errors[identifier] = f"attest failed: {type(result).__name__}: {result}"
                continue
            try:
                self._reports.verify(identifier, result, expected)
            except ReportRejected as exc:
                errors[identifier] = f"{_REPORT_REJECTED_PREFIX}{exc}"
                self._metrics.signer_failure(identifier, exc.reason)
        return errors

    def _adopt_public_key_package(self, packages: Mapping[int, PublicKeyPackage]) -> None:
        known = [self._public_key_package] if self._public_key_package is not None else []
        distinct = {_package_fingerprint(p): p for p in [*known, *packages.values()]}
        if len(distinct) > 1:
            raise DkgInconsistent(
                f"signers {sorted(packages)} report {len(distinct)} different group keys or "
                "verifying share sets: expected one; restore the signers from one key generation"
            )
        if distinct:
            self._public_key_package = next(iter(distinct.values()))

    # Commitment pools.

    def refill(self) -> None:
        """Top up the commitment pool of every signer that is up and below the low watermark."""
        with self._maintenance:
            with self._lock:
                low = {
                    identifier: (self._settings.batch_size,)
                    for identifier, slot in self._slots.items()
                    if slot.state == STATE_UP
                    and len(slot.commitments) < self._settings.low_watermark
                }
                asked_epochs = {identifier: self._slots[identifier].epoch for identifier in low}
            if not low:
                return
            results = self._call("publish_commitments", low, self._settings.call_timeout)
            with self._lock:
                self._add_commitments(results, asked_epochs)
            self._attest_unverified()

    def _try_refill(self) -> None:
        """Refill unless another thread is refilling or refreshing already."""
        if not self._maintenance.acquire(blocking=False):
            return
        try:
            self.refill()
        finally:
            self._maintenance.release()

    def _add_commitments(
        self, results: Mapping[int, object], asked_epochs: Mapping[int, str | None]
    ) -> None:
        for identifier, result in results.items():
            slot = self._slots[identifier]
            if not isinstance(result, CommitmentBatch):
                self._set_state(slot, STATE_DOWN, f"publish_commitments failed: {result!r}")
                continue
            if slot.state != STATE_UP or slot.epoch != asked_epochs[identifier]:
                # A signing call marked the signer down while this batch was on its way.
                # Its nonces stay unused on the signer, which is safe.
                continue
            if result.epoch != slot.epoch:
                # The signer restarted since we last saw it: its older nonces are gone, and
                # its start-up report belongs to the old process.
                slot.commitments.clear()
                slot.epoch = result.epoch
                if self._reports is not None:
                    self._reports.forget(identifier)
            slot.commitments.extend(result.commitments)

    # Signing (RFC 9591 section 5).

    def sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        """Complete ``claims`` with the signer set and evidence, and sign them with t signers.

        Each attempt picks t signers that are up, attested and have commitments (distinct
        fault domains first), sets ``claims.signers`` to them and ``claims.evidence`` to the
        digest of their last verified reports, and calls them in parallel. Every share and
        every report is verified before aggregation. A signer that fails is named, kept out
        of the following attempts, and marked down (timeout, restart, changed evidence) or
        excluded until ``readmit`` (invalid share, rejected report). The next attempt builds
        new claims, so its signing input differs.

        Several threads may call it at once; see the module's Concurrency paragraph.

        Args:
            claims: the token claims; ``signers`` and ``evidence`` are overwritten.
            kid: the RFC 7638 thumbprint of the group key, for the token header.
            assertion: the WebAuthn assertion that approved the request in ``claims``.

        Raises:
            MessageRejected: ``kid`` is not the group key's thumbprint, or the claims are no
                valid token; no signer is asked and no commitment is spent.
            AssertionRejected: the assertion does not approve these claims; no signer is
                asked and no commitment is spent.
            NotEnoughSigners: fewer than t usable signers are available before any attempt.
            SigningPaused: a refresh commit is incomplete, so old and new shares coexist.
            MintFailed: ``max_attempts`` attempts failed, or too few signers remain after
                excluding the failing ones; ``failures`` names each failing signer.
            AggregateSignatureInvalid: all shares verified but the aggregate does not, which
                points at a bug rather than a signer.
        """
        started = self._timer()
        with self._gate.shared():
            signed = self._sign_token(claims, kid, assertion)
        self._metrics.signing_seconds(self._timer() - started)
        self._try_refill()
        return signed

    def _sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        paused = self.signing_paused()
        if paused is not None:
            raise SigningPaused(f"signing is stopped: {paused}")
        public_key_package = self._require_public_key_package()
        expected_kid = thumbprint(okp_ed25519_jwk(public_key_package.group_public_key))
        if kid != expected_kid:
            raise MessageRejected(
                f"kid {kid!r} is not the thumbprint of the group key ({expected_kid!r})"
            )
        check_token_signing_input(
            token_signing_input(claims, kid), public_key_package.group_public_key
        )
        check_assertion(assertion, claims.to_json())

        failures: dict[int, str] = {}
        attempts = 0
        while attempts < self._settings.max_attempts:
            try:
                reservation = self._reserve(public_key_package.min_signers, set(failures))
            except NotEnoughSigners:
                if not failures:
                    raise
                break
            attempts += 1
            signed = self._attempt(
                claims, kid, assertion, reservation, public_key_package, failures
            )
            if signed is not None:
                return signed
        raise MintFailed(
            f"signing failed after {attempts} attempts, {len(failures)} signers failed "
            "(retry later or check `status()`): "
            + ", ".join(f"{i} ({error})" for i, error in sorted(failures.items())),
            failures=failures,
        )

    def _attempt(
        self,
        claims: TokenClaims,
        kid: str,
        assertion: AssertionEvidence,
        reservation: _Reservation,
        public_key_package: PublicKeyPackage,
        failures: dict[int, str],
    ) -> SignedToken | None:
        chosen = reservation.signers
        completed = replace(claims, signers=tuple(chosen), evidence=reservation.evidence)
        message = token_signing_input(completed, kid)
        package = make_signing_package(reservation.commitments, message)
        requests = {i: (SignRequest(reservation.epochs[i], package, assertion),) for i in chosen}
        results = self._call("sign", requests, self._settings.sign_timeout)

        shares = self._collect_shares(results, message, failures)
        if len(shares) != len(chosen):
            return None
        # aggregate verifies every share against its verifying share before it sums them
        # (RFC 9591 section 5.4), computing the binding factors and the group commitment once.
        try:
            signature = aggregate(package, shares, public_key_package)
        except InvalidSignatureShare:
            self._exclude_invalid_shares(shares, package, public_key_package, failures)
            return None
        try:
            verify_signature(message, signature, public_key_package.group_public_key)
        except FrostError as exc:
            raise AggregateSignatureInvalid(
                f"aggregate of verified shares from signers {sorted(shares)} does not "
                "verify under the group key"
            ) from exc
        return SignedToken(message, signature, tuple(chosen), reservation.evidence)

    def _reserve(self, count: int, exclude: set[int]) -> _Reservation:
        """Choose ``count`` signers and take one commitment of each out of its pool.

        When too few signers are usable, refill the pools, and if that is not enough, refresh
        the signer table. Only the pool lookups and the removal hold the state lock, so a
        commitment is handed to one attempt only.
        """
        reservation = self._try_reserve(count, exclude)
        if reservation is None:
            self.refill()
            reservation = self._try_reserve(count, exclude)
        if reservation is None:
            self.refresh()
            self.refill()
            reservation = self._try_reserve(count, exclude)
        if reservation is None:
            with self._lock:
                usable = len(self._usable_slots(exclude))
                states = ", ".join(f"{s.identifier}={s.state}" for s in self._slots.values())
            raise NotEnoughSigners(
                f"{usable} signers are up with commitments, {count} are needed; states: {states}"
            )
        return reservation

    def _try_reserve(self, count: int, exclude: set[int]) -> _Reservation | None:
        with self._lock:
            usable = self._usable_slots(exclude)
            if len(usable) < count:
                return None
            chosen = _choose_signers(usable, count)
            evidence = None
            if self._reports is not None:
                evidence = self._reports.evidence_digest_of(chosen)
            return _Reservation(
                signers=chosen,
                commitments=[self._slots[i].commitments.popleft() for i in chosen],
                epochs={i: self._slots[i].epoch or "" for i in chosen},
                evidence=evidence,
            )

    def _usable_slots(self, exclude: set[int]) -> list[_SignerSlot]:
        return [
            slot
            for slot in self._slots.values()
            if slot.state == STATE_UP
            and slot.commitments
            and slot.identifier not in exclude
            and (self._reports is None or self._reports.last(slot.identifier) is not None)
        ]

    def _collect_shares(
        self, results: Mapping[int, object], message: bytes, failures: dict[int, str]
    ) -> dict[int, SignatureShare]:
        shares: dict[int, SignatureShare] = {}
        for identifier, result in sorted(results.items()):
            share = self._check_reply(identifier, result, message, failures)
            if share is not None:
                shares[identifier] = share
        return shares

    def _exclude_invalid_shares(
        self,
        shares: Mapping[int, SignatureShare],
        package: SigningPackage,
        public_key_package: PublicKeyPackage,
        failures: dict[int, str],
    ) -> None:
        """Verify each share on its own and exclude every signer whose share is invalid.

        ``aggregate`` stops at the first invalid share, so this names all of them.
        """
        for identifier, share in sorted(shares.items()):
            try:
                verify_signature_share(
                    share,
                    public_key_package.verifying_shares[identifier],
                    package,
                    public_key_package.group_public_key,
                )
            except FrostError as exc:
                self._fail(
                    self._slots[identifier],
                    failures,
                    "invalid_share",
                    f"invalid signature share: {exc}",
                    STATE_EXCLUDED,
                )

    def _check_reply(
        self,
        identifier: int,
        result: object,
        message: bytes,
        failures: dict[int, str],
    ) -> SignatureShare | None:
        slot = self._slots[identifier]
        if isinstance(result, MessageRejected | AssertionRejected):
            # The coordinator ran the same checks, so the signer's rules differ: keep it up.
            self._fail(slot, failures, "request_rejected", f"rejected the request: {result}")
            return None
        if not isinstance(result, SignatureReply):
            reason, error = _sign_error(result)
            self._fail(slot, failures, reason, error, STATE_DOWN)
            return None
        if self._reports is not None:
            try:
                self._check_mint_report(identifier, result, message)
            except ReportRejected as exc:
                self._fail(slot, failures, exc.reason, str(exc), STATE_EXCLUDED)
                return None
            except EvidenceChanged as exc:
                self._fail(slot, failures, "evidence_changed", str(exc), STATE_DOWN)
                return None
        return result.share

    def _check_mint_report(self, identifier: int, reply: SignatureReply, message: bytes) -> None:
        assert self._reports is not None
        before = self._reports.last(identifier)
        expected = mint_report_data(message, reply.share.value, identifier)
        verified = self._reports.verify(identifier, reply.evidence, expected)
        if before is None or (before.evidence.policy_id, before.evidence.measurement) != (
            verified.policy_id,
            verified.measurement,
        ):
            raise EvidenceChanged(
                f"signer {identifier} attested measurement {verified.measurement.hex()[:16]}... "
                "under another policy or measurement than the claims' evidence digest names",
                signer=identifier,
            )

    def _fail(
        self,
        slot: _SignerSlot,
        failures: dict[int, str],
        reason: str,
        error: str,
        state: str | None = None,
    ) -> None:
        failures[slot.identifier] = error
        self._metrics.signer_failure(slot.identifier, reason)
        with self._lock:
            if state is None:
                slot.last_error = error
            else:
                self._set_state(slot, state, error)
        logger.warning(
            "signer failed during signing",
            extra={"signer": slot.identifier, "reason": reason, "state": slot.state},
        )

    def _require_public_key_package(self) -> PublicKeyPackage:
        if self._public_key_package is None:
            raise NotEnoughSigners("no group key yet: run key generation or refresh the signers")
        return self._public_key_package


def _choose_signers(usable: Sequence[_SignerSlot], count: int) -> list[int]:
    """Return the identifiers of ``count`` signers out of ``usable``, ascending.

    Signers with deep pools come first, and one signer per fault domain before a second.
    """
    ordered = sorted(usable, key=lambda s: (-len(s.commitments), s.identifier))
    chosen: list[_SignerSlot] = []
    domains: set[str | None] = set()
    for slot in ordered:
        if slot.fault_domain not in domains:
            chosen.append(slot)
            domains.add(slot.fault_domain)
    chosen.extend(slot for slot in ordered if slot not in chosen)
    return sorted(slot.identifier for slot in chosen[:count])


def _package_fingerprint(package: PublicKeyPackage) -> tuple[object, ...]:
    return (
        package.group_public_key,
        package.min_signers,
        tuple(sorted(package.verifying_shares.items())),
    )


def _describe_error(result: object) -> str:
    return f"describe failed: {result!r}"


def _sign_error(result: object) -> tuple[str, str]:
    """Return the metric reason code and the status text of a failed ``sign`` call."""
    if isinstance(result, TimeoutError):
        return "timeout", f"timed out: {result}"
    if isinstance(result, StaleEpoch):
        return "restarted", "restarted since its commitments were fetched"
    if isinstance(result, CallerRejected):
        return "caller_rejected", f"rejected the coordinator token: {result}"
    return "error", f"sign failed: {type(result).__name__}: {result}"
