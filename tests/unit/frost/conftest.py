"""Shared helpers for the FROST unit tests: vector loading and a full DKG run."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from actors.frost import dkg
from actors.frost.keys import KeyPackage, PublicKeyPackage

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "frost"


def load_vector(name: str) -> dict[str, Any]:
    """Load one JSON vector file from tests/vectors/frost."""
    return json.loads((VECTORS / name).read_text())


def fixed_random(chunks: list[bytes]) -> Callable[[int], bytes]:
    """Return a random source that hands out ``chunks`` in order, checking each size."""
    remaining = list(chunks)

    def read(size: int) -> bytes:
        chunk = remaining.pop(0)
        assert len(chunk) == size
        return chunk

    return read


def seeded_random(seed: int) -> Callable[[int], bytes]:
    """Return a reproducible random source, so that a failing run can be replayed."""
    # Not for secrets: tests need replayable bytes, and no key made here protects anything.
    generator = random.Random(seed)  # noqa: S311
    return generator.randbytes


def run_dkg(
    min_signers: int, max_signers: int, rng: Callable[[int], bytes]
) -> tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]:
    """Run the three DKG parts for identifiers 1..max_signers.

    Returns:
        The key packages, the public key package (checked to be identical for everyone), and
        every intermediate package, so that tests can scan them.
    """
    identifiers = list(range(1, max_signers + 1))
    round1 = {i: dkg.part1(i, max_signers, min_signers, rng) for i in identifiers}
    broadcast = {i: package for i, (_, package) in round1.items()}
    round2 = {
        i: dkg.part2(round1[i][0], {j: p for j, p in broadcast.items() if j != i})
        for i in identifiers
    }
    key_packages = {}
    public_packages = []
    for i in identifiers:
        received = {j: round2[j][1][i] for j in identifiers if j != i}
        others = {j: p for j, p in broadcast.items() if j != i}
        key_package, public_package = dkg.part3(round2[i][0], others, received)
        key_packages[i] = key_package
        public_packages.append(public_package)
    assert all(p == public_packages[0] for p in public_packages)
    intermediates = {"round1": round1, "round2": round2}
    return key_packages, public_packages[0], intermediates


@pytest.fixture(scope="session")
def dkg_2_of_3() -> tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]:
    return run_dkg(2, 3, seeded_random(23))


@pytest.fixture(scope="session")
def dkg_3_of_5() -> tuple[dict[int, KeyPackage], PublicKeyPackage, dict[str, Any]]:
    return run_dkg(3, 5, seeded_random(35))
