"""Helpers shared by the lifecycle unit tests: key generation, a refresh relay and signing."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping

from actors.frost import dkg
from actors.frost.aggregate import aggregate
from actors.frost.ciphersuite import ZERO_SCALAR, scalar_add
from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.frost.round1 import commit
from actors.frost.round2 import (
    SignatureShare,
    SigningPackage,
    compute_binding_factors,
    compute_group_commitment,
    make_signing_package,
    sign,
)
from actors.lifecycle.refresh import RefreshResult, RefreshSession

MESSAGE = b"ztmint lifecycle test message"


def seeded_random(seed: int) -> Callable[[int], bytes]:
    """Return a deterministic random source, so a failing test can be replayed."""
    return random.Random(seed).randbytes  # noqa: S311 -- replayable test randomness


def generate_keys(
    min_signers: int = 2, max_signers: int = 3, seed: int = 1
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Run the dealerless DKG among identifiers 1..max_signers."""
    rng = seeded_random(seed)
    identifiers = list(range(1, max_signers + 1))
    round1 = {i: dkg.part1(i, max_signers, min_signers, rng) for i in identifiers}
    broadcast = {i: package for i, (_, package) in round1.items()}
    round2 = {
        i: dkg.part2(round1[i][0], {j: p for j, p in broadcast.items() if j != i})
        for i in identifiers
    }
    key_packages = {}
    public_key_package = None
    for i in identifiers:
        received = {j: round2[j][1][i] for j in identifiers if j != i}
        others = {j: p for j, p in broadcast.items() if j != i}
        key_packages[i], public_key_package = dkg.part3(round2[i][0], others, received)
    assert public_key_package is not None
    return key_packages, public_key_package


def run_refresh(
    session_id: str,
    key_packages: Mapping[int, KeyPackage],
    public_key_package: PublicKeyPackage,
    seed: int = 2,
) -> dict[int, RefreshResult]:
    """Relay a whole refresh among in-memory sessions, as the coordinator would."""
    rng = seeded_random(seed)
    sessions = {
        i: RefreshSession(session_id, kp, public_key_package, rng) for i, kp in key_packages.items()
    }
    announcements = {i: s.announcement for i, s in sessions.items()}
    sealed = {
        i: s.seal_packages({j: a for j, a in announcements.items() if j != i})
        for i, s in sessions.items()
    }
    return {i: s.finish({j: sealed[j][i] for j in sessions if j != i}) for i, s in sessions.items()}


def threshold_sign(
    key_packages: Mapping[int, KeyPackage],
    public_key_package: PublicKeyPackage,
    message: bytes = MESSAGE,
    seed: int = 3,
) -> bytes:
    """Sign ``message`` with the given signers and aggregate with every share verified."""
    package, shares = _signature_shares(key_packages, message, seed)
    return aggregate(package, shares, public_key_package)


def aggregate_unverified(
    key_packages: Mapping[int, KeyPackage],
    group_public_key: bytes,
    message: bytes = MESSAGE,
    seed: int = 3,
) -> bytes:
    """Sum signature shares into R || z without checking any share, as a cheating aggregator."""
    package, shares = _signature_shares(key_packages, message, seed)
    binding_factors = compute_binding_factors(group_public_key, package)
    group_commitment = compute_group_commitment(package, binding_factors)
    z = ZERO_SCALAR
    for share in shares.values():
        z = scalar_add(z, share.value)
    return group_commitment + z


def _signature_shares(
    key_packages: Mapping[int, KeyPackage], message: bytes, seed: int
) -> tuple[SigningPackage, dict[int, SignatureShare]]:
    rng = seeded_random(seed)
    rounds = {i: commit(kp, rng) for i, kp in key_packages.items()}
    package = make_signing_package([c for _, c in rounds.values()], message)
    shares = {i: sign(package, rounds[i][0], kp) for i, kp in key_packages.items()}
    return package, shares
