"""Start the signer mesh on Ray, or connect to one that is running.

``start_mesh`` creates the coordinator, then the n signer actors with the coordinator's public
key, attaches them to the coordinator, and either runs key generation (when no signer has a
sealed signing share) or reuses the sealed shares. The driver reads no state files, so it can run
on a node without the coordinator's or the signers' folders (a Ray Job pod, for instance). Any
other driver reaches the running coordinator by name with ``connect`` or ``get_coordinator``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actors.coordinator import COORDINATOR_ACTOR_NAME, CoordinatorSettings
from actors.coordinator_actor import coordinator_actor
from actors.errors import MeshError
from actors.messages import SignerInfo
from actors.report_verification import (
    DEVELOPMENT_WARNING,
    OFF_WARNING,
    AttestationMode,
    AttestationSettings,
)
from actors.signer import NAMESPACE, signer_actor

ProgressCallback = Callable[[str], None]


class CoordinatorKeyMismatch(MeshError):
    """Running signers accept call tokens from another key than the coordinator's."""


# Strong handles of the non-detached signers this driver created. Ray destroys a non-detached
# actor once no strong handle is left. A restarted coordinator finds the signers through
# ray.get_actor, whose handles are weak, so the driver keeps these for as long as it runs.
_driver_signer_handles: dict[int, Any] = {}


def start_mesh(
    state_dir: str | Path,
    n: int = 3,
    t: int = 2,
    *,
    progress: ProgressCallback | None = None,
    settings: CoordinatorSettings | None = None,
    attestation: AttestationSettings | None = None,
    fault_domains: Mapping[int, str] | None = None,
    detached: bool = False,
    timeout: float = 120.0,
    coordinator_state_dir: str | Path | None = None,
) -> Any:
    """Create the coordinator and the signers ``ztmint-signer-1..n``, generating keys if needed.

    A signer whose sealed share is missing still starts, in state ``needs_repair``, as long as
    at least ``t`` others have theirs. ``progress`` names it, and the coordinator signs without
    it until ``ztmint signers repair`` rebuilds its share.

    Ray must be initialised already (``ray.init`` or ``connect``). Actors that exist already
    under these names are reused. First the coordinator starts and loads or creates its
    caller-authentication key in ``coordinator_state_dir`` on its own node. Then each signer
    is created with the coordinator's public key and attached to the coordinator. Last, key
    generation runs, or the sealed shares are reused. This driver never opens ``state_dir``
    or ``coordinator_state_dir``, because both paths are read on the nodes the actors run on.

    Args:
        state_dir: folder with the sealed shares and sealing keys, on each signer's node.
        n: number of signers.
        t: threshold: signers needed per signature.
        progress: called with a one-line message at each step of start-up and key generation.
        settings: coordinator tuning.
        attestation: attestation mode (development by default) and production policy.
        fault_domains: fault domain to pin each signer to, by identifier; unpinned signers go
            to any confidential node.
        detached: keep the actors alive after this driver exits.
        timeout: seconds to wait for each step.
        coordinator_state_dir: folder with the sealed coordinator key, on the coordinator's
            node; ``state_dir`` when None.

    Returns:
        The coordinator's actor handle.

    Raises:
        MeshError: some signers have sealed shares but fewer than ``t``, or their threshold
            differs from ``t``.
        CoordinatorKeyMismatch: running signers accept another coordinator key.
        DkgError: key generation failed; the error names the signer.
    """
    import ray

    if not 1 <= t <= n:
        raise ValueError(f"threshold t={t} must be between 1 and n={n}")
    report = progress or (lambda _message: None)
    identifiers = list(range(1, n + 1))
    pinned = fault_domains or {}

    coordinator = coordinator_actor(
        identifiers,
        state_dir if coordinator_state_dir is None else coordinator_state_dir,
        settings,
        attestation,
        detached=detached,
    )
    coordinator_key: bytes = ray.get(coordinator.caller_public_key.remote(), timeout=timeout)
    report("coordinator started")
    signers = {
        i: signer_actor(
            i,
            state_dir,
            coordinator_key,
            attestation=attestation,
            fault_domain=pinned.get(i),
            detached=detached,
        )
        for i in identifiers
    }
    if not detached:
        _driver_signer_handles.update(signers)
    accepted_keys: list[bytes] = ray.get(
        [s.coordinator_public_key.remote() for s in signers.values()], timeout=timeout
    )
    _check_coordinator_key(dict(zip(identifiers, accepted_keys, strict=True)), coordinator_key)
    infos: list[SignerInfo] = ray.get(
        [s.describe.remote() for s in signers.values()], timeout=timeout
    )
    report(f"started {n} signers")
    mode = (attestation or AttestationSettings()).mode
    if mode is AttestationMode.DEVELOPMENT:
        report(DEVELOPMENT_WARNING)
    elif mode is AttestationMode.OFF:
        report(OFF_WARNING)
    with_share = _check_sealed_shares(infos, t)

    ray.get(coordinator.attach.remote(signers), timeout=timeout)
    if with_share:
        report(f"loaded sealed shares of signers {with_share}; skipping key generation")
        without_share = [i for i in identifiers if i not in with_share]
        if without_share:
            report(
                f"signers {without_share} have no sealed share and start in state needs_repair: "
                "run `ztmint signers repair --signer N` for each"
            )
    else:
        report(f"no sealed shares in {state_dir}: running {t}-of-{n} key generation")
        report(ray.get(coordinator.dkg_round1.remote(t), timeout=timeout))
        report(ray.get(coordinator.dkg_round2.remote(), timeout=timeout))
        report(ray.get(coordinator.dkg_round3.remote(), timeout=timeout))
    ray.get(coordinator.refresh.remote(), timeout=timeout)
    report("coordinator ready")
    return coordinator


def _check_coordinator_key(accepted_keys: Mapping[int, bytes], coordinator_key: bytes) -> None:
    stale = sorted(i for i, key in accepted_keys.items() if key != coordinator_key)
    if stale:
        raise CoordinatorKeyMismatch(
            f"signers {stale} accept call tokens from another coordinator key than the running "
            "coordinator's, so they would reject its calls. The coordinator's state folder was "
            "lost or it moved to another node. Stop those signer actors with "
            "ray.kill(handle, no_restart=True) and run start_mesh (`ztmint signers init`) again: "
            "the signers reload their sealed shares and accept the new key"
        )


def _check_sealed_shares(infos: list[SignerInfo], t: int) -> list[int]:
    thresholds_by_signer = {
        info.identifier: info.public_key_package.min_signers
        for info in infos
        if info.public_key_package is not None
    }
    if not thresholds_by_signer:
        return []
    thresholds = set(thresholds_by_signer.values())
    if thresholds != {t}:
        raise MeshError(
            f"sealed shares have threshold {sorted(thresholds)}, start_mesh was called with t={t}: "
            "pass the threshold the keys were generated with"
        )
    with_share = sorted(thresholds_by_signer)
    if len(with_share) < t:
        raise MeshError(
            f"only signers {with_share} have sealed shares, {t} are needed to sign: "
            "restore the missing sealed shares and sealing keys from backup"
        )
    return with_share


def get_coordinator() -> Any:
    """Return the handle of the running coordinator ``ztmint-coordinator``.

    Raises:
        ValueError: no coordinator runs in the connected Ray cluster (from ``ray.get_actor``).
    """
    import ray

    return ray.get_actor(COORDINATOR_ACTOR_NAME, namespace=NAMESPACE)


def connect(address: str = "auto") -> Any:
    """Connect this driver to the Ray cluster at ``address`` and return the coordinator."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE)
    return get_coordinator()
