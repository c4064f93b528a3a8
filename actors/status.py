"""``ztmint signers status``: print every signer's placement, health and attestation state.

The command connects to the Ray cluster and gets the coordinator actor ``ztmint-coordinator``.
It prints one row per signer from the coordinator's status. The columns are identifier, actor
name, node, fault domain, state, attestation state, measurement prefix, policy, time of the
last verified report, nonce pool depth and the last error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

CALL_TIMEOUT_SECONDS = 30.0
NODE_ID_PREFIX = 12
COLUMNS = (
    ("ID", "identifier"),
    ("ACTOR", "actor_name"),
    ("NODE", "node_id"),
    ("FAULT DOMAIN", "fault_domain"),
    ("STATE", "state"),
    ("ATTESTATION", "attestation"),
    ("MEASUREMENT", "measurement"),
    ("POLICY", "policy_id"),
    ("VERIFIED AT", "verified_at"),
    ("POOL", "pool_depth"),
    ("LAST ERROR", "last_error"),
)


def format_table(rows: Sequence[Mapping[str, object]]) -> str:
    """Render status rows as a fixed-width text table, one line per signer.

    Node ids are cut to their first 12 hex digits, whitespace runs (newlines in errors) become
    one space, and a missing value prints as ``-``.
    """
    cells = [[header for header, _ in COLUMNS]]
    for row in rows:
        line = []
        for _, key in COLUMNS:
            value = row.get(key)
            # Errors from Ray span several lines, and a table row must not.
            text = "-" if value is None else " ".join(str(value).split())
            if key == "node_id" and value is not None:
                text = text[:NODE_ID_PREFIX]
            line.append(text)
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print the signer table of the coordinator in the cluster at ``args.address``.

    ``args.address`` defaults to ``$RAY_ADDRESS``, then ``auto`` (the local cluster).

    Returns:
        0 when every signer is up, 1 when any is down, excluded or needs_repair, 2 when no
        coordinator runs in the cluster.
    """
    import ray

    from actors.mesh import connect

    address = getattr(args, "address", None) or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        coordinator: Any = connect(address)
    except ValueError:
        print(
            f"no coordinator actor ztmint-coordinator in the Ray cluster at {address}: "
            "start the mesh with `ztmint up`",
            file=sys.stderr,
        )
        return 2
    rows = ray.get(coordinator.status.remote(), timeout=CALL_TIMEOUT_SECONDS)
    mode = ray.get(coordinator.attestation_mode.remote(), timeout=CALL_TIMEOUT_SECONDS)
    print(f"attestation mode: {mode}", file=out)
    print(format_table(rows), file=out)
    return 0 if all(row.get("state") == "up" for row in rows) else 1
