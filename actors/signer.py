"""A signer: one FROST signing share, its pool of nonces, and its Ray actor shell.

``SignerCore`` contains the whole logic and needs no Ray. It runs its side of the dealerless
key generation in ``actors.frost.dkg`` (the three parts of frost-core's ``keys::dkg``). It
keeps precomputed round-one nonces (RFC 9591 section 5.1) and produces signature shares
(RFC 9591 section 5.2) for token signing inputs only. ``SignerActor`` and ``signer_actor``
wrap it for Ray.

Security:
    A nonce must never sign twice: two signature shares under one nonce and two different
    messages reveal the signing share. ``SignerCore.sign`` removes the nonce from the pool
    before it computes the share, nonces live in memory only (a restarted signer starts with
    an empty pool and a new epoch), and the Ray options never retry a signing call.

    Round-two DKG packages carry signing share contributions and travel through the
    coordinator, so each one is encrypted to its recipient with ``nacl.public.Box``
    (X25519, XSalsa20-Poly1305), which also authenticates the sender.

    Every call except ``describe`` must carry a per-call token of the coordinator
    (``actors.caller_auth``), checked before anything else, so another Ray driver can neither
    obtain a signature share nor use up a nonce. Before signing, the signer checks the
    message is a token signing input, that the claims name exactly the signers of the signing
    package, and that the WebAuthn assertion approved these claims (``actors.assertion_check``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from actors.assertion_check import check_assertion
from actors.attestation.evidence import Evidence
from actors.attestation.providers import ReportProvider
from actors.caller_auth import CallTokenVerifier
from actors.errors import (
    CommitmentMissing,
    DkgError,
    DkgPackageInvalid,
    NonceUnavailable,
    SignerNotReady,
    StaleEpoch,
)
from actors.frost import dkg
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.frost.round1 import SigningNonces, commit
from actors.frost.round2 import sign as frost_sign
from actors.message_check import check_signer_set, check_token_signing_input
from actors.messages import (
    CommitmentBatch,
    DkgAnnouncement,
    SealedRound2Package,
    SignatureReply,
    SignerInfo,
    SignRequest,
)
from actors.report_verification import (
    AttestationSettings,
    mint_report_data,
    report_provider_for,
    startup_report_data,
)
from actors.sealing import FileSealingKeyProvider, ShareRecord, ShareStore
from actors.signer_lifecycle import SignerActorLifecycle, SignerLifecycle
from authz.jose import b64url_decode, b64url_encode, json_dumps_compact

RandomSource = Callable[[int], bytes]

logger = logging.getLogger(__name__)

NAMESPACE = "ztmint"
NODE_GROUP_LABEL = "ztmint.io/node-group"
CONFIDENTIAL_NODE_GROUP = "confidential"
FAULT_DOMAIN_LABEL = "ztmint.io/fault-domain"
MAX_POOL_SIZE = 1024
_EPOCH_SIZE = 16
_BOX_NONCE_SIZE = Box.NONCE_SIZE


def signer_actor_name(identifier: int) -> str:
    """Return the Ray actor name of signer ``identifier``."""
    return f"ztmint-signer-{identifier}"


@dataclass
class _DkgState:
    """Secrets that a signer keeps between DKG steps. They never leave the signer."""

    max_signers: int
    min_signers: int
    box_key: PrivateKey
    round1_secret: Any
    round2_secret: Any = None
    announcements: dict[int, DkgAnnouncement] | None = None

    def __repr__(self) -> str:
        return f"_DkgState(max_signers={self.max_signers}, min_signers={self.min_signers})"


class SignerCore(SignerLifecycle):
    """One signer's logic: key generation steps, the nonce pool, signing and the key lifecycle.

    The refresh, repair and escrow steps come from ``actors.signer_lifecycle.SignerLifecycle``.

    Args:
        identifier: the signer's FROST identifier (1..n).
        store: where the sealed signing share is kept; an existing one is loaded now.
        caller: checks the coordinator's per-call tokens.
        report_provider: source of SEV-SNP reports, or None when attestation is off.
        rng: source of randomness for nonces, the epoch and DKG secrets.
        max_pool_size: maximum number of unused nonces the signer keeps.

    Raises:
        SealedShareInvalid: the sealed share exists but was altered.
        SealingKeyMissing: the sealed share exists but its sealing key does not.
    """

    def __init__(
        self,
        identifier: int,
        store: ShareStore,
        caller: CallTokenVerifier,
        report_provider: ReportProvider | None = None,
        rng: RandomSource = os.urandom,
        max_pool_size: int = MAX_POOL_SIZE,
    ) -> None:
        self.identifier = identifier
        self.epoch = rng(_EPOCH_SIZE).hex()
        self._store = store
        self._caller = caller
        self._report_provider = report_provider
        self._rng = rng
        self._max_pool_size = max_pool_size
        self._pool: dict[tuple[bytes, bytes], SigningNonces] = {}
        self._dkg: _DkgState | None = None
        self._key_package: KeyPackage | None = None
        self._public_key_package: PublicKeyPackage | None = None
        record = store.load(identifier)
        if record is not None:
            self._install(record)

    def __repr__(self) -> str:
        return f"SignerCore(identifier={self.identifier}, epoch={self.epoch})"

    def _install(self, record: ShareRecord) -> None:
        self._key_package = KeyPackage(
            identifier=record.identifier,
            signing_share=record.signing_share,
            verifying_share=record.verifying_shares[record.identifier],
            group_public_key=record.group_public_key,
            min_signers=record.min_signers,
        )
        self._public_key_package = PublicKeyPackage(
            verifying_shares=dict(record.verifying_shares),
            group_public_key=record.group_public_key,
            min_signers=record.min_signers,
        )

    def _start_new_epoch(self) -> None:
        # Commitments published under the old share must never be accepted again.
        self.epoch = self._rng(_EPOCH_SIZE).hex()
        self._pool.clear()

    def describe(self) -> SignerInfo:
        """Return the signer's public state."""
        return SignerInfo(
            identifier=self.identifier,
            epoch=self.epoch,
            public_key_package=self._public_key_package,
            pool_depth=len(self._pool),
        )

    # Dealerless key generation (frost-core keys::dkg part1 to part3), driven by the coordinator.

    def attest(self, auth: str, challenge: bytes) -> Evidence | None:
        """Return a start-up attestation report over ``startup_report_data``.

        The report binds the coordinator's ``challenge``, this signer's identifier and epoch,
        its verifying share (once it has one) and its X25519 key (while key generation runs).

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            AttestationError: the report provider failed.
        """
        self._caller.verify(auth, "attest", (challenge,))
        if self._report_provider is None:
            return None
        verifying_share = None
        if self._key_package is not None:
            verifying_share = self._key_package.verifying_share
        box_public_key = bytes(self._dkg.box_key.public_key) if self._dkg is not None else None
        report_data = startup_report_data(
            challenge, self.identifier, self.epoch, verifying_share, box_public_key
        )
        return self._report_provider.get_report(report_data)

    def dkg_part1(self, auth: str, max_signers: int, min_signers: int) -> DkgAnnouncement:
        """Start key generation: make the round-one package and an X25519 key pair.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            DkgError: the signer already has a signing share; key generation would replace
                it, so remove the sealed share first if that is really wanted.
        """
        self._caller.verify(auth, "dkg_part1", (max_signers, min_signers))
        if self._key_package is not None:
            raise DkgError(
                f"signer {self.identifier} already has a signing share: rejecting key "
                "generation that would replace it",
                signer=self.identifier,
            )
        secret, package = dkg.part1(self.identifier, max_signers, min_signers, self._rng)
        box_key = PrivateKey(self._rng(PrivateKey.SIZE))
        self._dkg = _DkgState(max_signers, min_signers, box_key, secret)
        return DkgAnnouncement(package=package, box_public_key=bytes(box_key.public_key))

    def dkg_part2(
        self, auth: str, announcements: Mapping[int, DkgAnnouncement]
    ) -> dict[int, SealedRound2Package]:
        """Make round-two packages for every other signer, each encrypted to its recipient.

        Args:
            auth: the coordinator's token for this call.
            announcements: the round-one announcements of all other signers.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            DkgError: part one has not run, or the announcements are not exactly the others'.
            FrostError: a proof of knowledge is invalid (``InvalidProofOfKnowledge`` names it).
        """
        self._caller.verify(auth, "dkg_part2", (announcements,))
        state = self._require_dkg("dkg_part2")
        others = {i: a for i, a in announcements.items() if i != self.identifier}
        if len(others) != state.max_signers - 1 or len(others) != len(announcements):
            raise DkgError(
                f"signer {self.identifier} got round-one announcements from "
                f"{sorted(announcements)}: expected the {state.max_signers - 1} other signers",
                signer=self.identifier,
            )
        round2_secret, packages = dkg.part2(
            state.round1_secret, {i: a.package for i, a in others.items()}
        )
        state.round2_secret = round2_secret
        state.announcements = dict(others)

        sealed: dict[int, SealedRound2Package] = {}
        for recipient, package in packages.items():
            box = Box(state.box_key, PublicKey(others[recipient].box_public_key))
            plaintext = json_dumps_compact(
                {
                    "sender": self.identifier,
                    "recipient": recipient,
                    "signing_share": b64url_encode(package.signing_share),
                }
            )
            ciphertext = bytes(box.encrypt(plaintext, self._rng(_BOX_NONCE_SIZE)))
            sealed[recipient] = SealedRound2Package(self.identifier, recipient, ciphertext)
        return sealed

    def dkg_part3(self, auth: str, packages: Mapping[int, SealedRound2Package]) -> PublicKeyPackage:
        """Decrypt the round-two packages addressed here, derive and seal the signing share.

        Args:
            auth: the coordinator's token for this call.
            packages: one encrypted round-two package from every other signer, by sender.

        Returns:
            The public key package (group key and every verifying share).

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            DkgError: part two has not run.
            DkgPackageInvalid: a package fails authentication or names other parties.
            FrostError: a package does not match its sender's commitment
                (``InvalidSecretShare`` names the sender).
        """
        self._caller.verify(auth, "dkg_part3", (packages,))
        state = self._require_dkg("dkg_part3")
        if state.announcements is None:
            raise DkgError(
                f"signer {self.identifier}: dkg_part3 called before dkg_part2",
                signer=self.identifier,
            )
        if set(packages) != set(state.announcements):
            raise DkgError(
                f"signer {self.identifier} got round-two packages from {sorted(packages)}: "
                f"expected {sorted(state.announcements)}",
                signer=self.identifier,
            )
        round2_packages = {
            sender: self._open_round2(state, sender, sealed) for sender, sealed in packages.items()
        }
        key_package, public_key_package = dkg.part3(
            state.round2_secret,
            {i: a.package for i, a in state.announcements.items()},
            round2_packages,
        )

        record = ShareRecord(
            identifier=self.identifier,
            signing_share=key_package.signing_share,
            group_public_key=public_key_package.group_public_key,
            min_signers=public_key_package.min_signers,
            max_signers=state.max_signers,
            verifying_shares=dict(public_key_package.verifying_shares),
        )
        self._store.save(record)
        self._key_package = key_package
        self._public_key_package = public_key_package
        self._dkg = None
        return public_key_package

    def _require_dkg(self, step: str) -> _DkgState:
        if self._dkg is None:
            raise DkgError(
                f"signer {self.identifier}: {step} called before dkg_part1",
                signer=self.identifier,
            )
        return self._dkg

    def _open_round2(
        self, state: _DkgState, sender: int, sealed: SealedRound2Package
    ) -> dkg.Round2Package:
        assert state.announcements is not None
        box = Box(state.box_key, PublicKey(state.announcements[sender].box_public_key))
        try:
            fields = json.loads(box.decrypt(sealed.ciphertext))
            signing_share = b64url_decode(fields["signing_share"])
        except (CryptoError, ValueError, KeyError, TypeError) as exc:
            raise DkgPackageInvalid(
                f"round-two package from signer {sender} to signer {self.identifier} failed "
                "authentication or does not parse",
                signer=sender,
            ) from exc
        if (fields.get("sender"), fields.get("recipient")) != (sender, self.identifier):
            raise DkgPackageInvalid(
                f"round-two package relayed as {sender} -> {self.identifier} names "
                f"{fields.get('sender')} -> {fields.get('recipient')}",
                signer=sender,
            )
        return dkg.Round2Package(
            sender=sender, recipient=self.identifier, signing_share=signing_share
        )

    # Signing (RFC 9591 sections 5.1 and 5.2).

    def publish_commitments(self, auth: str, count: int) -> CommitmentBatch:
        """Precompute up to ``count`` nonces and return their commitments.

        The pool never contains more than ``max_pool_size`` nonces, so the batch can be
        shorter.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SignerNotReady: the signer has no signing share yet.
        """
        self._caller.verify(auth, "publish_commitments", (count,))
        key_package = self._require_key_package()
        room = max(0, min(count, self._max_pool_size - len(self._pool)))
        commitments = []
        for _ in range(room):
            nonces, commitment = commit(key_package, rng=self._rng)
            self._pool[(commitment.hiding, commitment.binding)] = nonces
            commitments.append(commitment)
        return CommitmentBatch(self.identifier, self.epoch, tuple(commitments))

    def sign(self, auth: str, request: SignRequest) -> SignatureReply:
        """Check the request, use up the nonce of this signer's commitment, sign and attest.

        Checks, in order: the caller token, the epoch, the message (a token signing input for
        the group key), the claimed signer set, the WebAuthn assertion, and this signer's
        commitment. Then the nonce leaves the pool, the share is computed, and the report
        provider attests to ``mint_report_data(message, share, identifier)``.

        Security:
            The nonce leaves the pool before the share is computed, so the same commitment
            can never produce a second share, even when this call fails half-way or is sent
            again. Every check runs first, so a rejected request keeps the nonce.

        Raises:
            CallerRejected: ``auth`` is not a valid coordinator token for this call.
            SignerNotReady: the signer has no signing share yet.
            StaleEpoch: the commitments come from an earlier run of this signer.
            MessageRejected: the message is not a token signing input for the group key, or
                its claims name other signers than the signing package.
            AssertionRejected: the assertion does not approve these claims.
            CommitmentMissing: the signing package has no commitment of this signer.
            NonceUnavailable: this signer's commitment is not in its pool (used or altered).
            FrostError: the signing package is invalid (for example ``TooFewSigners``).
            AttestationError: the report provider failed after the nonce was used.
        """
        self._caller.verify(auth, "sign", (request,))
        key_package = self._require_key_package()
        if request.epoch != self.epoch:
            raise StaleEpoch(
                f"signer {self.identifier} is at epoch {self.epoch}, the request uses "
                f"commitments of epoch {request.epoch}: fetch fresh commitments",
                signer=self.identifier,
            )
        package = request.signing_package
        claims = check_token_signing_input(package.message, key_package.group_public_key)
        check_signer_set(claims, package.participants)
        check_assertion(request.assertion, claims)
        own = [c for c in package.commitments if c.identifier == self.identifier]
        if len(own) != 1:
            raise CommitmentMissing(
                f"signing package has {len(own)} commitments of signer {self.identifier}, "
                "expected exactly 1",
                signer=self.identifier,
            )

        nonces = self._pool.pop((own[0].hiding, own[0].binding), None)
        if nonces is None:
            raise NonceUnavailable(
                f"signer {self.identifier} has no unused nonce for the commitment in the "
                "signing package: it was used already or altered",
                signer=self.identifier,
            )
        share = frost_sign(package, nonces, key_package)

        evidence = None
        if self._report_provider is not None:
            report_data = mint_report_data(package.message, share.value, self.identifier)
            evidence = self._report_provider.get_report(report_data)
        return SignatureReply(share=share, evidence=evidence)

    def _require_key_package(self) -> KeyPackage:
        if self._key_package is None:
            raise SignerNotReady(
                f"signer {self.identifier} has no signing share: run key generation first",
                signer=self.identifier,
            )
        return self._key_package


class SignerActor(SignerActorLifecycle):
    """Ray actor shell around ``SignerCore``, with the lifecycle steps of ``SignerActorLifecycle``.

    Owns one signing share (sealed under ``state_dir``) and its in-memory nonce pool. When Ray
    restarts the actor, the constructor reloads the sealed share and draws a new epoch, and the
    pool starts empty. Calls are never retried by Ray (``max_task_retries=0``): a retried
    ``sign`` would find its nonce gone and fail with ``NonceUnavailable``, which is safe.

    Args:
        identifier: FROST identifier of the signer.
        state_dir: folder of the sealed shares, sealing keys and the development chain.
        coordinator_public_key: the 32-byte Ed25519 key whose per-call tokens are accepted.
        attestation: which report provider to use.
    """

    def __init__(
        self,
        identifier: int,
        state_dir: str,
        coordinator_public_key: bytes,
        attestation: AttestationSettings | None = None,
    ) -> None:
        from actors.metrics import RayMeshMetrics

        path = Path(state_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = attestation or AttestationSettings()
        self._coordinator_public_key = bytes(coordinator_public_key)
        self._core = SignerCore(
            identifier,
            ShareStore(path, FileSealingKeyProvider(path)),
            CallTokenVerifier(coordinator_public_key, signer_actor_name(identifier)),
            report_provider_for(settings, path, identifier),
        )
        self._metrics = RayMeshMetrics()
        logger.info(
            "signer started",
            extra={"signer": identifier, "epoch": self._core.epoch, "attestation": settings.mode},
        )

    def _record_pool_depth(self) -> None:
        self._metrics.pool_depth(self._core.identifier, self._core.describe().pool_depth)

    def coordinator_public_key(self) -> bytes:
        """Return the coordinator key this signer accepts call tokens from (no token needed)."""
        return self._coordinator_public_key

    def describe(self) -> SignerInfo:
        """Return the signer's public state with the Ray node it runs on (no token needed)."""
        import ray

        context = ray.get_runtime_context()
        labels = context.get_node_labels()
        return replace(
            self._core.describe(),
            node_id=context.get_node_id(),
            fault_domain=labels.get(FAULT_DOMAIN_LABEL),
        )

    def attest(self, auth: str, challenge: bytes) -> Evidence | None:
        """Run ``SignerCore.attest``."""
        return self._core.attest(auth, challenge)

    def dkg_part1(self, auth: str, max_signers: int, min_signers: int) -> DkgAnnouncement:
        """Run ``SignerCore.dkg_part1``."""
        return self._core.dkg_part1(auth, max_signers, min_signers)

    def dkg_part2(
        self, auth: str, announcements: Mapping[int, DkgAnnouncement]
    ) -> dict[int, SealedRound2Package]:
        """Run ``SignerCore.dkg_part2``."""
        return self._core.dkg_part2(auth, announcements)

    def dkg_part3(self, auth: str, packages: Mapping[int, SealedRound2Package]) -> PublicKeyPackage:
        """Run ``SignerCore.dkg_part3``."""
        return self._core.dkg_part3(auth, packages)

    def publish_commitments(self, auth: str, count: int) -> CommitmentBatch:
        """Run ``SignerCore.publish_commitments``."""
        batch = self._core.publish_commitments(auth, count)
        self._record_pool_depth()
        return batch

    def sign(self, auth: str, request: SignRequest) -> SignatureReply:
        """Run ``SignerCore.sign``."""
        try:
            return self._core.sign(auth, request)
        finally:
            self._record_pool_depth()


def signer_actor(
    identifier: int,
    state_dir: str | Path,
    coordinator_public_key: bytes,
    *,
    attestation: AttestationSettings | None = None,
    fault_domain: str | None = None,
    detached: bool = False,
) -> Any:
    """Create (or get, if it exists) the Ray actor of signer ``identifier``.

    The actor is named ``ztmint-signer-<identifier>`` in namespace ``ztmint``, is placed only
    on nodes labelled ``ztmint.io/node-group: confidential`` (and ``ztmint.io/fault-domain:
    <fault_domain>`` when given), is restarted without limit by Ray, and Ray never retries its
    calls. It reserves no CPU, so many signers fit on a small machine.

    Args:
        identifier: FROST identifier of the signer.
        state_dir: folder holding the sealed shares and sealing keys; every node that can
            run this signer must see it at the same path.
        coordinator_public_key: the coordinator's Ed25519 key (``actors.caller_auth``).
        attestation: which report provider the signer uses.
        fault_domain: pin the signer to nodes of this fault domain.
        detached: keep the actor alive after the creating driver exits.

    Returns:
        The actor handle.
    """
    import ray

    label_selector = {NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP}
    if fault_domain is not None:
        label_selector[FAULT_DOMAIN_LABEL] = fault_domain
    remote_class = ray.remote(SignerActor)
    options: dict[str, Any] = {
        "name": signer_actor_name(identifier),
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "label_selector": label_selector,
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
    }
    if detached:
        options["lifetime"] = "detached"
    return remote_class.options(**options).remote(
        identifier, str(state_dir), bytes(coordinator_public_key), attestation
    )
