"""The signer mesh on a Ray instance whose gRPC channels use mutual TLS (``actors.tls``).

Ray reads its TLS settings from the environment when a process starts. So the mesh runs in a
child interpreter with that environment, apart from any Ray instance of this pytest process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors.tls import ensure_node_tls

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]
SIGN_ONCE = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import ray
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from mesh_unit_support import SoftAuthenticator, kid_of, token_claims
    from actors.coordinator import CoordinatorSettings
    from actors.mesh import start_mesh
    from actors.signer import (
        CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL, NAMESPACE, NODE_GROUP_LABEL,
    )

    context = ray.init(
        num_cpus=1,
        labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "fd-tls"},
        include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
    )
    settings = CoordinatorSettings(refill_interval=3600.0)
    coordinator = start_mesh(sys.argv[1], n=3, t=2, settings=settings)
    group_key = ray.get(coordinator.group_public_key.remote(), timeout=60)
    import time
    claims = token_claims(iat=int(time.time()))
    signed = ray.get(
        coordinator.sign_token.remote(
            claims, kid_of(group_key), SoftAuthenticator().assert_claims(claims)
        ),
        timeout=60,
    )
    Ed25519PublicKey.from_public_bytes(group_key).verify(signed.signature, signed.signing_input)
    from ray._private import ray_constants
    print(json.dumps({"signers": list(signed.signers), "address": context.address_info["address"],
                      "use_tls": ray_constants.env_bool("RAY_USE_TLS", False)}))
    ray.shutdown()
    """
)


def test_mesh_signs_with_ray_tls(tmp_path: Path) -> None:
    tls = ensure_node_tls(tmp_path / "state")
    environment = {
        **os.environ,
        **tls.ray_environment(),
        "PYTHONPATH": str(REPOSITORY),
        # Ray on Linux replaces 127.0.0.1 with the host's routable address, which the node
        # certificate does not name. Ray 2.60 keeps a one-node instance on loopback when
        # this variable is 0 (ray._private.services.get_node_ip_address).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    environment.pop("RAY_ADDRESS", None)

    completed = subprocess.run(  # noqa: S603 -- fixed interpreter and script
        [
            sys.executable, "-c", SIGN_ONCE, str(tmp_path / "state"),
            str(REPOSITORY / "tests" / "unit" / "mesh"),
        ],
        capture_output=True, text=True, timeout=120, env=environment, check=False,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert len(result["signers"]) == 2
    assert result["use_tls"] is True
