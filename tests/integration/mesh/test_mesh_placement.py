"""Signer placement on a multi-node Ray cluster on loopback, mints after losing a node, and a
coordinator whose state folder is not the signers' (nor the driver's).

The cluster runs in a child process (``placement_driver.py``) because Ray reads its address
settings when it is imported, and this pytest process may hold another Ray instance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.attestation.development import DevelopmentProvider
from actors.report_verification import development_folder

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("placement_driver.py")


@pytest.fixture(scope="module")
def placement(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    state_dir = tmp_path_factory.mktemp("placement-state")
    coordinator_state_dir = tmp_path_factory.mktemp("coordinator-node-state")
    # Development attestation needs one SEV-SNP chain on every node: make it here and copy it.
    DevelopmentProvider(development_folder(state_dir))
    shutil.copytree(development_folder(state_dir), development_folder(coordinator_state_dir))
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPOSITORY),
        # Keep every raylet on 127.0.0.1: Ray 2.60 on Linux otherwise replaces loopback with
        # the host's routable address (ray._private.services.get_node_ip_address).
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    environment.pop("RAY_ADDRESS", None)
    completed = subprocess.run(  # noqa: S603 -- fixed interpreter and script
        [sys.executable, str(DRIVER), str(state_dir), str(coordinator_state_dir)],
        capture_output=True, text=True, timeout=240, env=environment, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    marker = "placement-result: "
    lines = [line for line in completed.stdout.splitlines() if line.startswith(marker)]
    assert lines, completed.stdout[-4000:] + completed.stderr[-4000:]
    result = json.loads(lines[-1][len(marker) :])
    result["state_dir"] = state_dir
    result["coordinator_state_dir"] = coordinator_state_dir
    return result


def test_signers_land_on_their_fault_domain(placement: dict[str, Any]) -> None:
    for row in placement["before"]:
        expected_domain = f"fd-{row['identifier']}"
        assert row["fault_domain"] == expected_domain
        assert row["node_id"] == placement["nodes"][expected_domain]


def test_no_signer_on_unlabelled_node(placement: dict[str, Any]) -> None:
    used = {row["node_id"] for row in placement["before"]}

    assert placement["unlabelled"] not in used
    assert placement["head"] not in used
    assert placement["coordinator_node"] in placement["nodes"].values()


def test_mint_signers_share_no_fault_domain(placement: dict[str, Any]) -> None:
    domain_of = {row["identifier"]: row["fault_domain"] for row in placement["before"]}

    for signers in placement["first"] + placement["after_mints"]:
        assert len({domain_of[i] for i in signers}) == len(signers) == 2


def test_mints_continue_after_node_removed(placement: dict[str, Any]) -> None:
    victim = placement["victim"]
    victim_row = next(row for row in placement["after"] if row["identifier"] == victim)

    assert len(placement["after_mints"]) == 3
    assert all(victim not in signers for signers in placement["after_mints"])
    assert victim_row["state"] == "down"
    assert victim_row["last_error"]


COORDINATOR_KEY_FILE = Path("coordinator") / "caller-key.sealed.json"


def test_coordinator_key_only_in_coordinator_folder(placement: dict[str, Any]) -> None:
    assert (placement["coordinator_state_dir"] / COORDINATOR_KEY_FILE).is_file()
    assert not (placement["state_dir"] / COORDINATOR_KEY_FILE).exists()


def test_key_generation_with_separate_coordinator_folder(placement: dict[str, Any]) -> None:
    assert len(placement["first"]) == 3
    assert all(row["state"] == "up" for row in placement["before"])


def test_restarted_coordinator_keeps_key(placement: dict[str, Any]) -> None:
    assert placement["key_kept_after_restart"] is True


def test_restarted_coordinator_reattaches_signers(placement: dict[str, Any]) -> None:
    victim = placement["victim"]

    assert len(placement["restarted_mints"]) == 2
    assert all(victim not in signers for signers in placement["restarted_mints"])
