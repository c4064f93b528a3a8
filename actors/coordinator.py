"""The coordinator: drives key generation, keeps commitment pools, and runs threshold signing.

``CoordinatorCore`` is the whole logic and reaches signers only through a ``SignerTransport``,
so it runs unchanged over in-process signers (tests) or Ray actors. It plays the coordinator
role of RFC 9591 section 5. It picks the signers and builds the signing package from their
precomputed commitments. It verifies each signature share against the signer's verifying
share (section 5.4), aggregates the shares (section 5.3), and verifies the result as a plain
Ed25519 signature (RFC 8032 section 5.1.7). ``CoordinatorActor`` and
``coordinator_actor`` wrap it for Ray.

Security:
    The coordinator never receives a signing share or a nonce. During key generation it relays
    round-two packages that are encrypted from signer to signer. Each commitment is taken out
    of its pool before use, so the coordinator never offers a commitment twice; the signers
    enforce the same rule on their side.

Limitations:
    The X25519 public keys that signers announce in DKG round one are not authenticated by
    anything the coordinator cannot forge, so a malicious coordinator could put itself in the
    middle of key generation. Binding these keys to each signer's attestation report would
    close this and is not done yet. Round one also assumes a broadcast channel, but the
    coordinator relays it: a coordinator that sends different announcements to different
    signers is caught only at the end (``DkgInconsistent``), after each signer has sealed its
    share, so those sealed shares must then be deleted by hand. Signers do not yet check a
    per-call token proving that a request comes from the coordinator.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.errors import (
    AggregateSignatureInvalid,
    DkgError,
    DkgInconsistent,
    MessageRejected,
    MintFailed,
    NotEnoughSigners,
    StaleEpoch,
)
from actors.frost.aggregate import aggregate, verify_signature_share
from actors.frost.ciphersuite import verify_signature
from actors.frost.errors import FrostError
from actors.frost.keys import PublicKeyPackage
from actors.frost.round1 import SigningCommitments
from actors.frost.round2 import SignatureShare, SigningPackage, make_signing_package
from actors.message_check import check_token_signing_input
from actors.messages import (
    CommitmentBatch,
    DkgAnnouncement,
    SealedRound2Package,
    SignerInfo,
    SignRequest,
)
from actors.signer import NAMESPACE, signer_actor_name
from actors.transport import RaySignerTransport, SignerTransport

COORDINATOR_ACTOR_NAME = "ztmint-coordinator"

logger = logging.getLogger(__name__)

STATE_UP = "up"
STATE_DOWN = "down"
STATE_EXCLUDED = "excluded"

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class CoordinatorSettings:
    """Tuning of the coordinator.

    Attributes:
        batch_size: commitments requested from a signer per refill.
        low_watermark: refill a signer's pool when it contains fewer commitments than this.
        sign_timeout: seconds to wait for the signature shares of one attempt.
        call_timeout: seconds to wait for other signer calls (describe, refill, DKG steps).
        max_attempts: signing attempts per message before giving up.
        refill_interval: seconds between background refill rounds of the Ray actor.
    """

    batch_size: int = 32
    low_watermark: int = 8
    sign_timeout: float = 5.0
    call_timeout: float = 30.0
    max_attempts: int = 3
    refill_interval: float = 1.0


@dataclass(frozen=True)
class SignResult:
    """An aggregate signature and the signers that made it.

    Attributes:
        signature: the 64-byte Ed25519 signature, valid under the group key.
        signers: FROST identifiers of the signers whose shares were aggregated, ascending.
    """

    signature: bytes
    signers: tuple[int, ...]


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


@dataclass
class _DkgRun:
    """Public data of a key generation in progress."""

    min_signers: int
    announcements: dict[int, DkgAnnouncement] = field(default_factory=dict)
    relayed: dict[int, dict[int, SealedRound2Package]] = field(default_factory=dict)


class CoordinatorCore:
    """Coordinator logic over a set of signers.

    Args:
        transport: how to reach the signers.
        identifiers: FROST identifiers of all n signers.
        settings: pool sizes, timeouts and attempts.
    """

    def __init__(
        self,
        transport: SignerTransport,
        identifiers: Sequence[int],
        settings: CoordinatorSettings | None = None,
    ) -> None:
        if len(set(identifiers)) != len(identifiers) or not identifiers:
            raise ValueError(f"signer identifiers {list(identifiers)} must be distinct, not empty")
        self._transport = transport
        self._settings = settings or CoordinatorSettings()
        self._slots = {identifier: _SignerSlot(identifier) for identifier in identifiers}
        self._public_key_package: PublicKeyPackage | None = None
        self._dkg: _DkgRun | None = None

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
        """Return, per signer: identifier, actor name, node id, fault domain, state, pool depth
        and last error."""
        return [
            {
                "identifier": slot.identifier,
                "actor_name": signer_actor_name(slot.identifier),
                "node_id": slot.node_id,
                "fault_domain": slot.fault_domain,
                "state": slot.state,
                "pool_depth": len(slot.commitments),
                "last_error": slot.last_error,
            }
            for slot in self._slots.values()
        ]

    def readmit(self, identifier: int) -> None:
        """Let a signer excluded for an invalid share take part again after its next refresh."""
        slot = self._slots[identifier]
        if slot.state == STATE_EXCLUDED:
            slot.state = STATE_DOWN

    def refresh(self) -> list[dict[str, object]]:
        """Ask every signer that is not excluded for its state, and learn the group key.

        A signer whose epoch changed was restarted: its old commitments are dropped, because
        its nonces died with the old process.

        Returns:
            ``status()`` after the refresh.

        Raises:
            DkgInconsistent: two signers report different public key packages.
        """
        to_ask = {i: () for i, slot in self._slots.items() if slot.state != STATE_EXCLUDED}
        results = self._transport.call("describe", to_ask, self._settings.call_timeout)
        packages: dict[int, PublicKeyPackage] = {}
        for identifier, result in results.items():
            slot = self._slots[identifier]
            if not isinstance(result, SignerInfo):
                slot.mark_down(_describe_error(result))
                continue
            if result.epoch != slot.epoch:
                slot.commitments.clear()
                slot.epoch = result.epoch
            slot.node_id = result.node_id
            slot.fault_domain = result.fault_domain
            if result.public_key_package is None:
                slot.state = STATE_DOWN
                slot.last_error = "signer has no signing share"
                continue
            slot.state = STATE_UP
            packages[identifier] = result.public_key_package
        self._adopt_public_key_package(packages)
        return self.status()

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

    # Dealerless key generation (frost-core keys::dkg part1 to part3), relayed by the coordinator.

    def run_dkg(self, min_signers: int, progress: ProgressCallback | None = None) -> bytes:
        """Run all three DKG rounds among all signers and return the group key."""
        report = progress or (lambda _message: None)
        report(self.dkg_round1(min_signers))
        report(self.dkg_round2())
        report(self.dkg_round3())
        return self.group_public_key()

    def dkg_round1(self, min_signers: int) -> str:
        """Start key generation: collect every signer's round-one announcement.

        Returns:
            A one-line progress message.

        Raises:
            DkgError: a group key exists already, or a signer failed (named in the error).
        """
        if self._public_key_package is not None:
            raise DkgError(
                "a group key exists already: rejecting a second key generation; remove the "
                "sealed shares first to start over"
            )
        max_signers = len(self._slots)
        results = self._call_all("dkg_part1", {i: (max_signers, min_signers) for i in self._slots})
        self._dkg = _DkgRun(min_signers, announcements=results)
        return f"key generation round 1 of 3: {max_signers} signers announced commitments"

    def dkg_round2(self) -> str:
        """Hand each signer the others' announcements and collect encrypted round-two packages.

        Raises:
            DkgError: round one has not run, or a signer failed (named in the error).
        """
        run = self._require_dkg()
        arguments = {
            identifier: ({i: a for i, a in run.announcements.items() if i != identifier},)
            for identifier in self._slots
        }
        results = self._call_all("dkg_part2", arguments)
        run.relayed = {identifier: {} for identifier in self._slots}
        for sender, packages in results.items():
            for recipient, package in packages.items():
                if package.sender != sender or recipient not in run.relayed:
                    raise DkgError(
                        f"signer {sender} addressed a round-two package from {package.sender} "
                        f"to {recipient}: expected packages from itself to other signers",
                        signer=sender,
                    )
                run.relayed[recipient][sender] = package
        return f"key generation round 2 of 3: relayed {sum(map(len, results.values()))} packages"

    def dkg_round3(self) -> str:
        """Deliver the encrypted packages, collect public key packages, and check they agree.

        Raises:
            DkgError: round two has not run, or a signer failed (named in the error).
            DkgInconsistent: the signers derived different group keys.
        """
        run = self._require_dkg()
        results = self._call_all("dkg_part3", {i: (run.relayed[i],) for i in self._slots})
        self._dkg = None
        self._adopt_public_key_package(results)
        self.refresh()
        return f"key generation round 3 of 3: group key {self.group_public_key().hex()}"

    def _require_dkg(self) -> _DkgRun:
        if self._dkg is None:
            raise DkgError("key generation round called out of order: start with round 1")
        return self._dkg

    def _call_all(self, method: str, arguments: Mapping[int, tuple[Any, ...]]) -> dict[int, Any]:
        results = self._transport.call(method, arguments, self._settings.call_timeout)
        for identifier, result in sorted(results.items()):
            if isinstance(result, BaseException):
                self._dkg = None
                raise DkgError(
                    f"signer {identifier} failed {method}: {result!r}; key generation aborted, "
                    "start again from round 1",
                    signer=identifier,
                ) from result
        return results

    # Commitment pools.

    def refill(self) -> None:
        """Top up the commitment pool of every signer that is up and below the low watermark."""
        low = {
            identifier: (self._settings.batch_size,)
            for identifier, slot in self._slots.items()
            if slot.state == STATE_UP and len(slot.commitments) < self._settings.low_watermark
        }
        if not low:
            return
        results = self._transport.call("publish_commitments", low, self._settings.call_timeout)
        for identifier, result in results.items():
            slot = self._slots[identifier]
            if not isinstance(result, CommitmentBatch):
                slot.mark_down(f"publish_commitments failed: {result!r}")
                continue
            if result.epoch != slot.epoch:
                # The signer restarted since we last saw it: its older nonces are gone.
                slot.commitments.clear()
                slot.epoch = result.epoch
            slot.commitments.extend(result.commitments)

    # Signing (RFC 9591 section 5).

    def sign(self, message: bytes) -> SignResult:
        """Produce an aggregate signature of ``message`` with t signers.

        Each attempt picks t signers that are up and have commitments (distinct fault domains
        first), calls them in parallel, and verifies every share. A signer that times out or
        fails is marked down, and one that returns an invalid share is excluded until
        ``readmit``. In both cases the next attempt goes on without it.

        Raises:
            MessageRejected: ``message`` is not a token signing input for the group key; the
                signers would reject it, so none is asked and no commitment is spent.
            NotEnoughSigners: fewer than t usable signers are available before any attempt.
            MintFailed: ``max_attempts`` attempts failed, or too few signers remain after
                excluding the failing ones; ``failures`` names each failing signer.
            AggregateSignatureInvalid: all shares verified but the aggregate does not, which
                points at a bug rather than a signer.
        """
        public_key_package = self._require_public_key_package()
        check_token_signing_input(message, public_key_package.group_public_key)
        failures: dict[int, str] = {}
        attempts = 0
        while attempts < self._settings.max_attempts:
            try:
                chosen = self._choose_signers(public_key_package.min_signers, exclude=set(failures))
            except NotEnoughSigners:
                if not failures:
                    raise
                break
            attempts += 1
            package = make_signing_package(
                [self._slots[i].commitments.popleft() for i in chosen], message
            )
            requests = {i: (SignRequest(self._slots[i].epoch or "", package),) for i in chosen}
            results = self._transport.call("sign", requests, self._settings.sign_timeout)

            shares = self._collect_shares(results, package, public_key_package, failures)
            if len(shares) == len(chosen):
                signature = aggregate(package, shares, public_key_package)
                try:
                    verify_signature(message, signature, public_key_package.group_public_key)
                except FrostError as exc:
                    raise AggregateSignatureInvalid(
                        f"aggregate of verified shares from signers {sorted(shares)} does not "
                        "verify under the group key"
                    ) from exc
                self.refill()
                return SignResult(signature=signature, signers=tuple(sorted(shares)))
        raise MintFailed(
            f"signing failed after {attempts} attempts, {len(failures)} signers failed "
            "(retry later or check `status()`): "
            + ", ".join(f"{i} ({error})" for i, error in sorted(failures.items())),
            failures=failures,
        )

    def _choose_signers(self, count: int, exclude: set[int]) -> list[int]:
        usable = self._usable_slots(exclude)
        if len(usable) < count:
            self.refresh()
            self.refill()
            usable = self._usable_slots(exclude)
        if len(usable) < count:
            raise NotEnoughSigners(
                f"{len(usable)} signers are up with commitments, {count} are needed; states: "
                + ", ".join(f"{s.identifier}={s.state}" for s in self._slots.values())
            )

        # Prefer signers with deep pools, and one signer per fault domain before a second.
        ordered = sorted(usable, key=lambda s: (-len(s.commitments), s.identifier))
        chosen: list[_SignerSlot] = []
        domains: set[str | None] = set()
        for slot in ordered:
            if slot.fault_domain not in domains:
                chosen.append(slot)
                domains.add(slot.fault_domain)
        chosen.extend(slot for slot in ordered if slot not in chosen)
        return sorted(slot.identifier for slot in chosen[:count])

    def _usable_slots(self, exclude: set[int]) -> list[_SignerSlot]:
        return [
            slot
            for slot in self._slots.values()
            if slot.state == STATE_UP and slot.commitments and slot.identifier not in exclude
        ]

    def _collect_shares(
        self,
        results: Mapping[int, object],
        package: SigningPackage,
        public_key_package: PublicKeyPackage,
        failures: dict[int, str],
    ) -> dict[int, SignatureShare]:
        shares: dict[int, SignatureShare] = {}
        for identifier, result in sorted(results.items()):
            slot = self._slots[identifier]
            if isinstance(result, MessageRejected):
                # The coordinator ran the same check, so the signer's rules differ: keep it up.
                failures[identifier] = f"rejected the message: {result}"
                slot.last_error = failures[identifier]
                continue
            if not isinstance(result, SignatureShare):
                failures[identifier] = _sign_error(result)
                slot.mark_down(failures[identifier])
                logger.warning(
                    "signer marked down",
                    extra={"signer": identifier, "error": failures[identifier]},
                )
                continue
            try:
                verify_signature_share(
                    result,
                    public_key_package.verifying_shares[identifier],
                    package,
                    public_key_package.group_public_key,
                )
            except FrostError as exc:
                failures[identifier] = f"invalid signature share: {exc}"
                slot.state = STATE_EXCLUDED
                slot.last_error = failures[identifier]
                logger.error(
                    "signer excluded: invalid signature share", extra={"signer": identifier}
                )
                continue
            shares[identifier] = result
        return shares

    def _require_public_key_package(self) -> PublicKeyPackage:
        if self._public_key_package is None:
            raise NotEnoughSigners("no group key yet: run key generation or refresh the signers")
        return self._public_key_package


def _package_fingerprint(package: PublicKeyPackage) -> tuple[object, ...]:
    return (
        package.group_public_key,
        package.min_signers,
        tuple(sorted(package.verifying_shares.items())),
    )


def _describe_error(result: object) -> str:
    return f"describe failed: {result!r}"


def _sign_error(result: object) -> str:
    if isinstance(result, TimeoutError):
        return f"timed out: {result}"
    if isinstance(result, StaleEpoch):
        return "restarted since its commitments were fetched"
    return f"sign failed: {type(result).__name__}: {result}"


class CoordinatorActor:
    """Ray actor shell around ``CoordinatorCore``, reaching signers by actor name.

    Owns the commitment pools and the signer health table. It stores no secrets, so a restart
    only costs fresh commitments, because the constructor reads the group key from the
    signers again.
    A background thread refills pools and probes signers that are down. Ray never retries a
    call (``max_task_retries=0``); a caller that retries ``sign`` itself gets a new signature
    from fresh commitments, never a reused nonce.
    """

    def __init__(
        self, signers: Mapping[int, Any], settings: CoordinatorSettings | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._settings = settings or CoordinatorSettings()
        self._core = CoordinatorCore(RaySignerTransport(signers), sorted(signers), self._settings)
        self._stop = threading.Event()
        self._core.refresh()
        self._core.refill()
        self._thread = threading.Thread(target=self._maintain, name="pool-refill", daemon=True)
        self._thread.start()

    def _maintain(self) -> None:
        # NOTE: a refresh holds the lock while it waits up to call_timeout for a hung signer,
        # so mints can stall for that long while a signer hangs.
        while not self._stop.wait(self._settings.refill_interval):
            with self._lock:
                try:
                    if any(s["state"] == STATE_DOWN for s in self._core.status()):
                        self._core.refresh()
                    self._core.refill()
                except Exception:
                    # The loop must outlive a failed round; sign() reports errors to callers.
                    logger.exception("pool refill round failed")

    def sign(self, message: bytes) -> SignResult:
        """Run ``CoordinatorCore.sign``."""
        with self._lock:
            return self._core.sign(message)

    def refresh(self) -> list[dict[str, object]]:
        """Run ``CoordinatorCore.refresh`` and refill the pools."""
        with self._lock:
            self._core.refresh()
            self._core.refill()
            return self._core.status()

    def status(self) -> list[dict[str, object]]:
        """Run ``CoordinatorCore.status``."""
        with self._lock:
            return self._core.status()

    def group_public_key(self) -> bytes:
        """Run ``CoordinatorCore.group_public_key``."""
        with self._lock:
            return self._core.group_public_key()

    def public_key_package(self) -> PublicKeyPackage | None:
        """Run ``CoordinatorCore.public_key_package``."""
        with self._lock:
            return self._core.public_key_package()

    def readmit(self, identifier: int) -> None:
        """Run ``CoordinatorCore.readmit``."""
        with self._lock:
            self._core.readmit(identifier)

    def dkg_round1(self, min_signers: int) -> str:
        """Run ``CoordinatorCore.dkg_round1``."""
        with self._lock:
            return self._core.dkg_round1(min_signers)

    def dkg_round2(self) -> str:
        """Run ``CoordinatorCore.dkg_round2``."""
        with self._lock:
            return self._core.dkg_round2()

    def dkg_round3(self) -> str:
        """Run ``CoordinatorCore.dkg_round3`` and fill the pools."""
        with self._lock:
            message = self._core.dkg_round3()
            self._core.refill()
            return message


def coordinator_actor(
    signers: Mapping[int, Any],
    settings: CoordinatorSettings | None = None,
    *,
    detached: bool = False,
) -> Any:
    """Create (or get, if it exists) the coordinator actor ``ztmint-coordinator``.

    The actor lives in namespace ``ztmint``, is restarted without limit, reserves no CPU, and
    Ray never retries its calls.

    Args:
        signers: actor handle of every signer, by FROST identifier. The coordinator keeps
            them, so the signers live as long as the coordinator does.
        settings: coordinator tuning.
        detached: keep the actor alive after the creating driver exits.
    """
    import ray

    options: dict[str, Any] = {
        "name": COORDINATOR_ACTOR_NAME,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
    }
    if detached:
        options["lifetime"] = "detached"
    return ray.remote(CoordinatorActor).options(**options).remote(dict(signers), settings)
