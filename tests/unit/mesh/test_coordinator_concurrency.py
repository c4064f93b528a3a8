"""CoordinatorCore under concurrent sign_token calls: each commitment is used once, every
signature verifies, and exclusive() waits for the signing calls in flight."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from mesh_unit_support import build_mesh, kid_of, token_claims

from actors.coordinator import SharedExclusiveLock, SignedToken
from actors.frost.round2 import SigningPackage
from actors.messages import SignRequest

_THREADS = 12
_MINTS_PER_THREAD = 4


def _sign_many(mesh: Any, thread: int) -> list[SignedToken]:
    kid = kid_of(mesh.coordinator.group_public_key())
    signed = []
    for index in range(_MINTS_PER_THREAD):
        claims = token_claims(jti=f"jti-{thread:02d}-{index:02d}")
        assertion = mesh.authenticator.assert_claims(claims)
        signed.append(mesh.coordinator.sign_token(claims, kid, assertion))
    return signed


def _sign_concurrently(mesh: Any) -> list[SignedToken]:
    start = threading.Barrier(_THREADS)

    def run(thread: int) -> list[SignedToken]:
        start.wait()
        return _sign_many(mesh, thread)

    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        batches = list(pool.map(run, range(_THREADS)))
    return [token for batch in batches for token in batch]


def _packages_sent(mesh: Any) -> dict[bytes, SigningPackage]:
    """Return the signing package of every sign call in the transport log, by message."""
    packages = {}
    for method, arguments, _results in mesh.transport.log:
        if method != "sign":
            continue
        for args in arguments.values():
            request = args[1]
            assert isinstance(request, SignRequest)
            packages[request.signing_package.message] = request.signing_package
    return packages


def test_sign_token_concurrent_calls_all_verify(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=5, t=3)
    group_key = Ed25519PublicKey.from_public_bytes(mesh.coordinator.group_public_key())

    signed = _sign_concurrently(mesh)

    assert len(signed) == _THREADS * _MINTS_PER_THREAD
    for token in signed:
        group_key.verify(token.signature, token.signing_input)
    assert len({token.signing_input for token in signed}) == len(signed)


def test_sign_token_concurrent_calls_use_commitment_once(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=5, t=3)

    signed = _sign_concurrently(mesh)

    packages = _packages_sent(mesh)
    used = [(c.identifier, c.hiding, c.binding) for p in packages.values() for c in p.commitments]

    assert len(packages) == len(signed)
    assert len(used) == len(set(used))


def test_sign_token_concurrent_calls_refill_pools(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=5, t=3)

    _sign_concurrently(mesh)

    refills = [entry for entry in mesh.transport.log if entry[0] == "publish_commitments"]
    assert len(refills) >= 2
    assert all(row["state"] == "up" for row in mesh.coordinator.status())


def test_exclusive_waits_for_signing_in_flight(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path, n=3, t=2)
    signing = threading.Event()
    release = threading.Event()
    original_call = mesh.transport.call

    def blocking_call(method: str, arguments: Any, timeout: float | None) -> dict[int, object]:
        if method == "sign":
            signing.set()
            release.wait(timeout=30)
        return original_call(method, arguments, timeout)

    mesh.transport.call = blocking_call  # type: ignore[method-assign]
    exclusive_entered = threading.Event()

    def take_exclusive() -> None:
        with mesh.coordinator.exclusive():
            exclusive_entered.set()

    with ThreadPoolExecutor(max_workers=2) as pool:
        mint = pool.submit(mesh.sign_token)
        assert signing.wait(timeout=30)
        lifecycle = pool.submit(take_exclusive)
        # NOTE: a negative check needs a bounded wait; 0.2 s only limits how long it looks.
        entered_early = exclusive_entered.wait(timeout=0.2)
        release.set()
        mint.result(timeout=30)
        lifecycle.result(timeout=30)

    assert not entered_early
    assert exclusive_entered.is_set()


def _wait_until_exclusive_waits(gate: SharedExclusiveLock) -> None:
    # NOTE: this polls a private counter, because the lock has no public way to show a waiting
    # thread. The loop gives up after about 10 s.
    poll = threading.Event()
    for _ in range(10_000):
        with gate._condition:
            if gate._exclusive_waiting:
                return
        poll.wait(timeout=0.001)
    raise AssertionError("the exclusive holder never started waiting")


def test_shared_exclusive_lock_holds_back_new_shared_holders() -> None:
    gate = SharedExclusiveLock()
    order: list[str] = []
    first_shared = threading.Event()
    leave_first = threading.Event()

    def first() -> None:
        with gate.shared():
            first_shared.set()
            leave_first.wait(timeout=30)
            order.append("first shared")

    def writer() -> None:
        with gate.exclusive():
            order.append("exclusive")

    def second() -> None:
        with gate.shared():
            order.append("second shared")

    with ThreadPoolExecutor(max_workers=3) as pool:
        holder = pool.submit(first)
        assert first_shared.wait(timeout=30)
        waiting_writer = pool.submit(writer)
        _wait_until_exclusive_waits(gate)
        late_reader = pool.submit(second)
        leave_first.set()
        for future in (holder, waiting_writer, late_reader):
            future.result(timeout=30)

    assert order == ["first shared", "exclusive", "second shared"]
