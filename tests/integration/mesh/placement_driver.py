"""Child process of test_mesh_placement: a five-node Ray cluster on loopback.

Starts a head node and four worker raylets with ``ray.cluster_utils.Cluster``: three carry
``ztmint.io/node-group=confidential`` and fault domains fd-1..fd-3, and the head and one
worker carry no labels. It starts a 2-of-3 mesh with one signer pinned per fault domain,
mints, removes the node of one signer (not the coordinator's) and mints again. Then it kills
the coordinator so that Ray restarts it, mints once more, and prints one JSON line with what
it saw.

The signers' state folder and the coordinator's state folder are different folders, as on a
cluster where each node has its own volume; both must already contain the same development
SEV-SNP chain.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "mesh"))
from mesh_unit_support import SoftAuthenticator, kid_of, token_claims  # noqa: E402

from actors.coordinator import CoordinatorSettings  # noqa: E402
from actors.mesh import start_mesh  # noqa: E402
from actors.signer import (  # noqa: E402
    CONFIDENTIAL_NODE_GROUP,
    FAULT_DOMAIN_LABEL,
    NAMESPACE,
    NODE_GROUP_LABEL,
)

CALL_TIMEOUT = 90.0
RESULT_PREFIX = "placement-result: "
NODE_ARGUMENTS = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def _mint(coordinator: object, jti: str) -> list[int]:
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=CALL_TIMEOUT)
    claims = token_claims(iat=int(time.time()), jti=jti)
    signed = ray.get(
        coordinator.sign_token.remote(
            claims, kid_of(group_key), SoftAuthenticator().assert_claims(claims)
        ),
        timeout=CALL_TIMEOUT,
    )
    return list(signed.signers)


def _wait_until_unreachable(handle: object) -> None:
    """Call describe until the actor's calls fail, waiting only on Ray's own replies.

    Actor calls go from worker to worker, so a signer whose raylet was killed can still
    answer until its worker process notices and exits.
    """
    deadline = time.monotonic() + CALL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            ray.get(handle.describe.remote(), timeout=2.0)
        except (ray.exceptions.RayError, TimeoutError):
            return
    raise AssertionError(f"signer still reachable {CALL_TIMEOUT} s after its node was removed")


def _wait_for_restart(coordinator: object, old_epoch: str) -> str:
    """Call epoch until the restarted coordinator returns a new one, waiting on Ray's replies."""
    deadline = time.monotonic() + CALL_TIMEOUT
    while time.monotonic() < deadline:
        try:
            epoch = ray.get(coordinator.epoch.remote(), timeout=CALL_TIMEOUT)
        except ray.exceptions.RayActorError:
            continue
        if epoch != old_epoch:
            return epoch
    raise AssertionError(f"coordinator did not restart within {CALL_TIMEOUT} s")


def main(state_dir: str, coordinator_state_dir: str) -> None:
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE_ARGUMENTS))
    confidential = {}
    for domain in ("fd-1", "fd-2", "fd-3"):
        labels = {NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: domain}
        confidential[domain] = cluster.add_node(labels=labels, **NODE_ARGUMENTS)
    unlabelled = cluster.add_node(**NODE_ARGUMENTS)
    cluster.wait_for_nodes()
    cluster.connect(namespace=NAMESPACE)

    settings = CoordinatorSettings(sign_timeout=5.0, call_timeout=5.0, refill_interval=3600.0)
    pinned = {1: "fd-1", 2: "fd-2", 3: "fd-3"}
    coordinator = start_mesh(
        state_dir,
        n=3,
        t=2,
        settings=settings,
        fault_domains=pinned,
        coordinator_state_dir=coordinator_state_dir,
    )
    before = ray.get(coordinator.status.remote(), timeout=CALL_TIMEOUT)
    coordinator_node = ray.get(coordinator.node_id.remote(), timeout=CALL_TIMEOUT)
    first = [_mint(coordinator, f"jti-before-{n}") for n in range(3)]

    victim = next(row for row in before if row["node_id"] != coordinator_node)
    victim_node = confidential[victim["fault_domain"]]
    cluster.remove_node(victim_node, allow_graceful=False)
    _wait_until_unreachable(ray.get_actor(victim["actor_name"], namespace=NAMESPACE))
    after_mints = [_mint(coordinator, f"jti-after-{n}") for n in range(3)]
    after = ray.get(coordinator.status.remote(), timeout=CALL_TIMEOUT)

    key_before_restart = ray.get(coordinator.caller_public_key.remote(), timeout=CALL_TIMEOUT)
    epoch_before_restart = ray.get(coordinator.epoch.remote(), timeout=CALL_TIMEOUT)
    ray.kill(coordinator, no_restart=False)
    _wait_for_restart(coordinator, epoch_before_restart)
    key_after_restart = ray.get(coordinator.caller_public_key.remote(), timeout=CALL_TIMEOUT)
    restarted_mints = [_mint(coordinator, f"jti-restarted-{n}") for n in range(2)]

    result = {
        "nodes": {domain: node.node_id for domain, node in confidential.items()},
        "head": cluster.head_node.node_id,
        "unlabelled": unlabelled.node_id,
        "coordinator_node": coordinator_node,
        "before": before,
        "first": first,
        "victim": victim["identifier"],
        "after_mints": after_mints,
        "after": after,
        "key_kept_after_restart": key_before_restart == key_after_restart,
        "restarted_mints": restarted_mints,
    }
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
