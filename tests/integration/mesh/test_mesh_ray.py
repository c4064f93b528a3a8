"""The signer mesh on a real local Ray instance: key generation, sign_token with attestation
reports and assertions, a rogue driver without the coordinator key, killed and restarted
signers.

One Ray instance and one 2-of-3 mesh serve the whole module, because starting Ray takes
seconds. The tests run in file order and the last one kills a signer for good.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ray.exceptions import RayActorError

from actors.coordinator import CoordinatorSettings
from actors.mesh import get_coordinator, start_mesh
from actors.messages import SignerInfo
from actors.signer import (
    CONFIDENTIAL_NODE_GROUP,
    FAULT_DOMAIN_LABEL,
    NAMESPACE,
    NODE_GROUP_LABEL,
    signer_actor_name,
)
from authz.formats import TokenClaims
from authz.jwk import okp_ed25519_jwk, thumbprint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mesh"))
from mesh_unit_support import SoftAuthenticator  # noqa: E402

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 60.0
FAULT_DOMAIN = "fd-1"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir: Path = tmp_path_factory.mktemp("mesh-state")
    context = ray.init(
        num_cpus=2,
        labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: FAULT_DOMAIN},
        include_dashboard=False,
        namespace=NAMESPACE,
        log_to_driver=False,
    )
    progress: list[str] = []
    # No background refill: the tests call refresh() themselves, so what they see is
    # caused by the step under test and not by a timer.
    settings = CoordinatorSettings(sign_timeout=20.0, refill_interval=3600.0)
    coordinator = start_mesh(state_dir, n=3, t=2, progress=progress.append, settings=settings)
    yield {
        "coordinator": coordinator,
        "progress": progress,
        "state_dir": state_dir,
        "address": context.address_info["address"],
    }
    ray.shutdown()


def _claims(jti: str) -> TokenClaims:
    return TokenClaims(
        iss="https://mint.example",
        sub="alice@example.com",
        aud="billing",
        scopes=("invoices:read",),
        iat=int(time.time()),
        ttl=900,
        jti=jti,
    )


def _sign(coordinator: Any, jti: str) -> tuple[bytes, Any]:
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
    claims = _claims(jti)
    assertion = SoftAuthenticator().assert_claims(claims)
    kid = thumbprint(okp_ed25519_jwk(group_key))
    result = ray.get(coordinator.sign_token.remote(claims, kid, assertion), timeout=CALL_TIMEOUT)
    Ed25519PublicKey.from_public_bytes(group_key).verify(result.signature, result.signing_input)
    return result.signing_input, result


def _status(coordinator: Any, identifier: int) -> dict[str, Any]:
    statuses = ray.get(coordinator.status.remote(), timeout=CALL_TIMEOUT)
    return next(s for s in statuses if s["identifier"] == identifier)


def _describe_after_restart(handle: Any, old_epoch: str) -> SignerInfo:
    """Call describe until the restarted actor returns a new epoch.

    Ray restarts the actor asynchronously after ray.kill; a call made in between either fails
    with RayActorError or still reaches the old process. This waits on Ray's own reply, with
    no sleep, for at most CALL_TIMEOUT seconds.
    """
    deadline = time.monotonic() + CALL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            info: SignerInfo = ray.get(handle.describe.remote(), timeout=CALL_TIMEOUT)
        except RayActorError:
            continue
        if info.epoch != old_epoch:
            return info
    raise AssertionError(f"signer did not restart within {CALL_TIMEOUT} s")


def test_start_mesh_runs_key_generation(mesh: dict[str, Any]) -> None:
    assert any("round 3 of 3" in line for line in mesh["progress"])
    assert mesh["progress"][-1] == "coordinator ready"
    assert any("development SEV-SNP chain trusted" in line for line in mesh["progress"])


def test_mesh_signs_token_signing_input(mesh: dict[str, Any]) -> None:
    _, result = _sign(mesh["coordinator"], "jti-sign")

    assert len(result.signers) == 2


def test_mesh_status_shows_node_and_fault_domain(mesh: dict[str, Any]) -> None:
    statuses = ray.get(mesh["coordinator"].status.remote(), timeout=CALL_TIMEOUT)

    assert [s["identifier"] for s in statuses] == [1, 2, 3]
    for status in statuses:
        assert status["state"] == "up"
        assert status["fault_domain"] == FAULT_DOMAIN
        assert status["node_id"] == ray.get_runtime_context().get_node_id()
        assert status["actor_name"] == signer_actor_name(status["identifier"])
        assert status["pool_depth"] > 0
        assert status["attestation"] == "verified"
        assert status["policy_id"] == "ztmint-development"


def test_mesh_token_carries_evidence(mesh: dict[str, Any]) -> None:
    _, result = _sign(mesh["coordinator"], "jti-evidence")

    assert result.evidence is not None


ROGUE_DRIVER = textwrap.dedent(
    """
    import json, sys
    import ray
    from actors.signer import NAMESPACE, signer_actor_name

    ray.init(address=sys.argv[1], namespace=NAMESPACE, log_to_driver=False)
    handle = ray.get_actor(signer_actor_name(1), namespace=NAMESPACE)
    before = ray.get(handle.describe.remote()).pool_depth
    outcomes = {}
    calls = {
        "publish_commitments": lambda: handle.publish_commitments.remote("", 8),
        "sign": lambda: handle.sign.remote("forged.token.value", None),
        "dkg_part1": lambda: handle.dkg_part1.remote("", 3, 2),
        "attest": lambda: handle.attest.remote("", bytes(32)),
    }
    for name, call in calls.items():
        try:
            ray.get(call())
            outcomes[name] = "succeeded"
        except Exception as exc:
            outcomes[name] = type(exc).__name__ + ": " + str(exc).splitlines()[-1]
    after = ray.get(handle.describe.remote()).pool_depth
    print(json.dumps({"before": before, "after": after, "outcomes": outcomes}))
    """
)


def test_rogue_driver_consumes_no_nonce(mesh: dict[str, Any]) -> None:
    import json

    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    completed = subprocess.run(  # noqa: S603 -- fixed interpreter and script
        [sys.executable, "-c", ROGUE_DRIVER, mesh["address"]],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["before"] == result["after"]
    for name, outcome in result["outcomes"].items():
        assert "CallerRejected" in outcome, (name, outcome)
    _sign(mesh["coordinator"], "jti-after-rogue")


def test_get_coordinator_returns_named_actor(mesh: dict[str, Any]) -> None:
    expected = ray.get(mesh["coordinator"].group_public_key.remote(), timeout=CALL_TIMEOUT)

    found = get_coordinator()

    assert ray.get(found.group_public_key.remote(), timeout=CALL_TIMEOUT) == expected


def test_start_mesh_again_reuses_sealed_shares(mesh: dict[str, Any]) -> None:
    progress: list[str] = []
    expected = ray.get(mesh["coordinator"].group_public_key.remote(), timeout=CALL_TIMEOUT)

    again = start_mesh(mesh["state_dir"], n=3, t=2, progress=progress.append)

    assert any("skipping key generation" in line for line in progress)
    assert ray.get(again.group_public_key.remote(), timeout=CALL_TIMEOUT) == expected


def test_restarted_signer_reloads_share(mesh: dict[str, Any]) -> None:
    coordinator = mesh["coordinator"]
    handle = ray.get_actor(signer_actor_name(1), namespace=NAMESPACE)
    before: SignerInfo = ray.get(handle.describe.remote(), timeout=CALL_TIMEOUT)
    error_before = _status(coordinator, 1)["last_error"]

    ray.kill(handle, no_restart=False)
    after = _describe_after_restart(handle, before.epoch)
    ray.get(coordinator.refresh.remote(), timeout=CALL_TIMEOUT)
    signers_used = {i for n in range(4) for i in _sign(coordinator, f"jti-restart-{n}")[1].signers}

    assert after.public_key_package.group_public_key == before.public_key_package.group_public_key
    assert 1 in signers_used
    # Had the coordinator sent a commitment of the old epoch, signer 1 would have raised
    # StaleEpoch and been marked down with a new error.
    assert _status(coordinator, 1)["state"] == "up"
    assert _status(coordinator, 1)["last_error"] == error_before


def test_mesh_mints_after_signer_killed(mesh: dict[str, Any]) -> None:
    coordinator = mesh["coordinator"]
    ray.kill(ray.get_actor(signer_actor_name(3), namespace=NAMESPACE), no_restart=True)

    results = [_sign(coordinator, f"jti-killed-{n}")[1] for n in range(3)]

    assert all(result.signers == (1, 2) for result in results)
    assert _status(coordinator, 3)["state"] == "down"


def test_signers_status_prints_each_signer(mesh: dict[str, Any]) -> None:
    import argparse
    import io

    from actors import status

    out = io.StringIO()

    code = status.run(argparse.Namespace(address=mesh["address"]), out=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == "attestation mode: development"
    assert len(lines) == 5
    assert [line.split()[1] for line in lines[2:]] == [signer_actor_name(i) for i in (1, 2, 3)]
    # Signer 3 was killed for good by the test before, so one signer is down.
    assert lines[4].split()[4] == "down"
    assert code == 1
