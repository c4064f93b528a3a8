"""The Ray actor shell of the coordinator, ``ztmint-coordinator``.

It wraps ``actors.coordinator.CoordinatorCore`` with a background refill thread, the
coordinator's sealed caller-authentication key, attestation report verification and Ray
metrics. The actor starts without signers: ``start_mesh`` reads its public key
(``caller_public_key``), creates the signers with it and then calls ``attach``, so the private
key stays in the coordinator's state folder on the coordinator's node.

It is a threaded Ray actor: up to ``MAX_CONCURRENT_CALLS`` calls run at once, so
several mints are signed together. Key generation and key lifecycle runs hold
``CoordinatorCore.exclusive()``, so they wait for the mints in flight and no mint starts
while they run.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.assertion_check import AssertionEvidence
from actors.caller_auth import (
    CallTokenIssuer,
    load_or_create_coordinator_key,
    public_key_bytes,
)
from actors.coordinator import (
    COORDINATOR_ACTOR_NAME,
    STATE_DOWN,
    CoordinatorCore,
    CoordinatorSettings,
    SignedToken,
)
from actors.errors import MeshError
from actors.frost.keys import PublicKeyPackage
from actors.lifecycle.channel import SealedScalar
from actors.lifecycle.escrow import EscrowBundle
from actors.report_verification import AttestationSettings, ReportVerifier, policy_for
from actors.signer import NAMESPACE, signer_actor_name
from actors.signer_lifecycle import RestoreRequest
from actors.transport import RaySignerTransport
from authz.formats import TokenClaims

logger = logging.getLogger(__name__)

# Threads Ray runs actor calls on. Each sign_token call waits on its signers most of the time,
# so this bounds the mints signed at once.
MAX_CONCURRENT_CALLS = 32


class SignersNotAttached(MeshError):
    """The coordinator was called before ``attach`` gave it its signers."""


class SignerSetMismatch(MeshError):
    """``attach`` named other signers than the coordinator is attached to."""


class CoordinatorActor:
    """Ray actor shell around ``CoordinatorCore``, reaching signers by actor name.

    Owns the commitment pools, the signer health table and the attestation state of each
    signer. Its only secret is the caller-authentication key, sealed in ``state_dir`` on the
    node the actor runs on. A restart costs fresh commitments and fresh start-up reports,
    because attaching reads the group key from the signers again and re-attests them. A
    background thread refills pools and probes signers that are down. Ray never retries a call
    (``max_task_retries=0``); a caller that retries ``sign_token`` itself gets a new
    signature from fresh commitments, never a reused nonce.

    When Ray restarts the actor, it runs this constructor again with the original arguments:
    the key is loaded from ``state_dir`` and the signers named ``ztmint-signer-<id>`` for
    ``identifiers`` are attached again if any of them exists.

    Args:
        state_dir: folder on this node with the sealed coordinator key and the development
            chain. It must survive restarts on this node, or the signers reject the new key.
        settings: coordinator tuning.
        attestation: attestation mode and policy.
        identifiers: FROST identifiers of the signers to re-attach by name after a restart.
    """

    def __init__(
        self,
        state_dir: str,
        settings: CoordinatorSettings | None = None,
        attestation: AttestationSettings | None = None,
        identifiers: Sequence[int] = (),
    ) -> None:
        # The folder is created here, on the coordinator's node, and readable by its owner only.
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._settings = settings or CoordinatorSettings()
        attestation = attestation or AttestationSettings()
        policy = policy_for(attestation, state_dir)
        self._reports = (
            None if policy is None else ReportVerifier(policy, lambda: datetime.now(UTC))
        )
        self._attestation_mode = attestation.mode
        self._private_key = load_or_create_coordinator_key(state_dir)
        self._epoch = os.urandom(8).hex()
        self._attached: CoordinatorCore | None = None
        # Strong handles passed by attach(): they keep non-detached signers alive, which the
        # weak handles returned by ray.get_actor do not.
        self._signer_handles: dict[int, Any] = {}
        self._attach_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        logger.info("coordinator started", extra={"attestation": attestation.mode})
        if identifiers:
            self._reattach_by_name(identifiers)

    @property
    def _core(self) -> CoordinatorCore:
        core = self._attached
        if core is None:
            raise SignersNotAttached(
                "the coordinator has no signers attached: run start_mesh "
                "(`ztmint signers init`) to create the signers and attach them"
            )
        return core

    def _reattach_by_name(self, identifiers: Sequence[int]) -> None:
        import ray

        found: dict[int, Any] = {}
        for identifier in identifiers:
            try:
                name = signer_actor_name(identifier)
                found[identifier] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
        if not found:
            logger.info("no signer actors found by name: waiting for attach")
            return
        logger.info("re-attaching signers by name", extra={"signers": sorted(found)})
        # Signers not found now are looked up by name again on each call.
        self._start_core(list(identifiers), RaySignerTransport(found))

    def _start_core(self, identifiers: list[int], transport: RaySignerTransport) -> None:
        from actors.metrics import RayMeshMetrics

        core = CoordinatorCore(
            transport,
            sorted(identifiers),
            CallTokenIssuer(self._private_key),
            self._settings,
            reports=self._reports,
            metrics=RayMeshMetrics(),
        )
        core.refresh()
        core.refill()
        self._attached = core
        self._thread = threading.Thread(target=self._maintain, name="pool-refill", daemon=True)
        self._thread.start()

    def epoch(self) -> str:
        """Return the random id of this run of the coordinator, new after every restart."""
        return self._epoch

    def caller_public_key(self) -> bytes:
        """Return the 32-byte Ed25519 public key the signers must accept call tokens from."""
        return public_key_bytes(self._private_key)

    def attach(self, signers: Mapping[int, Any]) -> None:
        """Start signing through ``signers`` (actor handles by FROST identifier).

        Reads the group key from the signers and attests them, as ``refresh`` does. Calling it
        again with the same identifiers only keeps the new handles.

        Raises:
            SignerSetMismatch: the coordinator is attached to a different set of signers.
        """
        with self._attach_lock:
            self._signer_handles.update(signers)
            core = self._attached
            if core is None:
                self._start_core(sorted(signers), RaySignerTransport(signers))
                return
            attached = sorted(status["identifier"] for status in core.status())
            if attached != sorted(signers):
                raise SignerSetMismatch(
                    f"the coordinator is attached to signers {attached}, not {sorted(signers)}: "
                    "call start_mesh with the signer count the mesh was created with"
                )

    def _maintain(self) -> None:
        # NOTE: a refresh blocks other refreshes and refills while it waits up to call_timeout
        # for a hung signer, so mints that find their pools empty can stall for that long.
        while not self._stop.wait(self._settings.refill_interval):
            with self._core.shared():
                try:
                    if any(s["state"] == STATE_DOWN for s in self._core.status()):
                        self._core.refresh()
                    self._core.refill()
                except Exception:
                    # The loop must outlive a failed round; sign_token reports errors to callers.
                    logger.exception("pool refill round failed")

    def sign_token(
        self, claims: TokenClaims, kid: str, assertion: AssertionEvidence
    ) -> SignedToken:
        """Run ``CoordinatorCore.sign_token``, alongside other calls of it."""
        return self._core.sign_token(claims, kid, assertion)

    def refresh(self) -> list[dict[str, object]]:
        """Run ``CoordinatorCore.refresh`` and refill the pools."""
        with self._core.shared():
            self._core.refresh()
            self._core.refill()
            return self._core.status()

    def status(self) -> list[dict[str, object]]:
        """Run ``CoordinatorCore.status``."""
        return self._core.status()

    def node_id(self) -> str:
        """Return the id of the Ray node this coordinator runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def attestation_mode(self) -> str:
        """Return the attestation mode: production, development or off."""
        return str(self._attestation_mode)

    def group_public_key(self) -> bytes:
        """Run ``CoordinatorCore.group_public_key``."""
        return self._core.group_public_key()

    def public_key_package(self) -> PublicKeyPackage | None:
        """Run ``CoordinatorCore.public_key_package``."""
        return self._core.public_key_package()

    def readmit(self, identifier: int) -> None:
        """Run ``CoordinatorCore.readmit``."""
        self._core.readmit(identifier)

    def dkg_round1(self, min_signers: int) -> str:
        """Run ``CoordinatorCore.dkg_round1``."""
        with self._core.exclusive():
            return self._core.dkg_round1(min_signers)

    def dkg_round2(self) -> str:
        """Run ``CoordinatorCore.dkg_round2``."""
        with self._core.exclusive():
            return self._core.dkg_round2()

    def dkg_round3(self) -> str:
        """Run ``CoordinatorCore.dkg_round3`` and fill the pools."""
        with self._core.exclusive():
            message = self._core.dkg_round3()
            self._core.refill()
            return message

    # Key lifecycle (actors.coordinator_lifecycle). Each run is inside exclusive(), so no mint
    # and no refill round interleaves with it.

    def run_refresh(self, session_id: str) -> tuple[PublicKeyPackage, list[str]]:
        """Run ``CoordinatorCore.run_refresh``; return the package and the progress lines."""
        lines: list[str] = []
        with self._core.exclusive():
            return self._core.run_refresh(session_id, lines.append), lines

    def resume_refresh(self, skip: Sequence[int] = ()) -> tuple[PublicKeyPackage, list[str]]:
        """Run ``CoordinatorCore.resume_refresh``; return the package and the progress lines."""
        lines: list[str] = []
        with self._core.exclusive():
            return self._core.resume_refresh(lines.append, skip), lines

    def abort_refresh(self) -> dict[int, str]:
        """Run ``CoordinatorCore.abort_refresh``."""
        with self._core.exclusive():
            return self._core.abort_refresh()

    def run_repair(
        self, session_id: str, participant: int, helpers: Sequence[int] | None = None
    ) -> tuple[PublicKeyPackage, list[str]]:
        """Run ``CoordinatorCore.run_repair``; return the package and the progress lines."""
        lines: list[str] = []
        with self._core.exclusive():
            return self._core.run_repair(session_id, participant, helpers, lines.append), lines

    def run_escrow(
        self, escrow_id: str, guardian_public_keys: Sequence[bytes], guardian_threshold: int
    ) -> dict[int, EscrowBundle]:
        """Run ``CoordinatorCore.run_escrow``."""
        with self._core.exclusive():
            return self._core.run_escrow(escrow_id, guardian_public_keys, guardian_threshold)

    def begin_restore(self, participant: int, session_id: str) -> RestoreRequest:
        """Run ``CoordinatorCore.begin_restore``."""
        with self._core.exclusive():
            return self._core.begin_restore(participant, session_id)

    def finish_restore(
        self,
        participant: int,
        bundle: EscrowBundle,
        sender_box_public_key: bytes,
        pieces: Mapping[int, SealedScalar],
    ) -> PublicKeyPackage:
        """Run ``CoordinatorCore.finish_restore``."""
        with self._core.exclusive():
            return self._core.finish_restore(participant, bundle, sender_box_public_key, pieces)


def coordinator_actor(
    identifiers: Sequence[int],
    state_dir: str | Path,
    settings: CoordinatorSettings | None = None,
    attestation: AttestationSettings | None = None,
    *,
    detached: bool = False,
) -> Any:
    """Create (or get, if it exists) the coordinator actor ``ztmint-coordinator``.

    The actor lives in namespace ``ztmint``, is placed on a confidential node, is restarted
    without limit, reserves no CPU, and Ray never retries its calls. It starts without
    signers until ``attach`` is called, unless signers named for ``identifiers`` exist.

    Args:
        identifiers: FROST identifiers of all signers, used to re-attach them after a restart.
        state_dir: folder on the coordinator's node for the sealed coordinator key.
        settings: coordinator tuning.
        attestation: attestation mode and policy.
        detached: keep the actor alive after the creating driver exits.
    """
    import ray

    from actors.signer import CONFIDENTIAL_NODE_GROUP, NODE_GROUP_LABEL

    options: dict[str, Any] = {
        "name": COORDINATOR_ACTOR_NAME,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "label_selector": {NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP},
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": MAX_CONCURRENT_CALLS,
        "num_cpus": 0,
    }
    if detached:
        options["lifetime"] = "detached"
    return (
        ray.remote(CoordinatorActor)
        .options(**options)
        .remote(str(state_dir), settings, attestation, list(identifiers))
    )
