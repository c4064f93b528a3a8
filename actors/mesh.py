"""Start the signer mesh on Ray, or connect to one that is running.

``start_mesh`` creates the n signer actors and the coordinator, and either runs key generation
(when no signer has a sealed signing share) or reuses the sealed shares. Any other driver
reaches the running coordinator by name with ``connect`` or ``get_coordinator``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actors.caller_auth import load_or_create_coordinator_key, public_key_bytes
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
) -> Any:
    """Create the signers ``ztmint-signer-1..n`` and the coordinator, generating keys if needed.

    A signer whose sealed share is missing still starts, in state ``needs_repair``, as long as
    at least ``t`` others have theirs. ``progress`` names it, and the coordinator signs without
    it until ``ztmint signers repair`` rebuilds its share.

    Ray must be initialised already (``ray.init`` or ``connect``). Actors that exist already
    under these names are reused. The coordinator's caller-authentication key is created in
    ``state_dir`` if missing, and its public key is handed to every signer at creation.

    Args:
        state_dir: folder with the sealed shares and sealing keys, visible to every signer.
        n: number of signers.
        t: threshold: signers needed per signature.
        progress: called with a one-line message at each step of start-up and key generation.
        settings: coordinator tuning.
        attestation: attestation mode (development by default) and production policy.
        fault_domains: fault domain to pin each signer to, by identifier; unpinned signers go
            to any confidential node.
        detached: keep the actors alive after this driver exits.
        timeout: seconds to wait for each step.

    Returns:
        The coordinator's actor handle.

    Raises:
        MeshError: some signers have sealed shares but fewer than ``t``, or their threshold
            differs from ``t``.
        DkgError: key generation failed; the error names the signer.
    """
    import ray

    if not 1 <= t <= n:
        raise ValueError(f"threshold t={t} must be between 1 and n={n}")
    report = progress or (lambda _message: None)
    identifiers = list(range(1, n + 1))
    pinned = fault_domains or {}
    Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)

    # The driver unseals the coordinator key once, to learn and pass on its public half.
    coordinator_key = public_key_bytes(load_or_create_coordinator_key(state_dir))
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

    coordinator = coordinator_actor(signers, state_dir, settings, attestation, detached=detached)
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
