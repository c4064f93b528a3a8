"""Print the newest benchmark results as Markdown tables, for docs/PERFORMANCE.md.

Run from the repository root: ``.venv/bin/python -m bench.table``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bench.plot import newest

MIB = 1024 * 1024


def saturation_table(document: Mapping[str, Any]) -> str:
    """Tabulate throughput at maximum rate per target and token variety, with ratios.

    Each ztmint row over HTTP is divided by the peer's HTTP throughput at the same variety.
    """
    targets = document["targets"]
    peer = {run["variety"]: run for run in targets.get("peer_opa_rest", {}).get("http", [])}
    rows = [
        "| target | transport | distinct tokens | throughput (/s) | p50 (ms) | p99 (ms) "
        "| vs peer |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in targets.items():
        for transport in ("grpc", "http"):
            for run in result.get(transport, []):
                if run["requested_rate"] != 0:
                    continue
                ratio = ""
                reference = peer.get(run["variety"])
                if transport == "http" and reference and name != "peer_opa_rest":
                    ratio = f"{run['throughput'] / reference['throughput']:.2f}x"
                rows.append(
                    f"| {name} | {transport} | {run['variety']:,} | {run['throughput']:,.0f} "
                    f"| {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | {ratio} |"
                )
    return "\n".join(rows)


def fixed_rate_table(document: Mapping[str, Any]) -> str:
    """Tabulate latency percentiles at each fixed rate, per target and transport."""
    rows = [
        "| target | transport | rate (/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors "
        "| achieved (/s) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in document["targets"].items():
        for transport in ("grpc", "http"):
            for run in result.get(transport, []):
                if run["requested_rate"] == 0:
                    continue
                rows.append(
                    f"| {name} | {transport} | {run['requested_rate']:,.0f} | {run['p50_ms']:.2f} "
                    f"| {run['p95_ms']:.2f} | {run['p99_ms']:.2f} | {run['error_ratio']:.2%} "
                    f"| {run['throughput']:,.0f} |"
                )
    return "\n".join(rows)


def memory_table(document: Mapping[str, Any]) -> str:
    """Tabulate the peak RSS of each authz target's process."""
    rows = ["| target | peak RSS (MiB) |", "| --- | ---: |"]
    for name, result in document["targets"].items():
        rows.append(f"| {name} | {result['peak_rss_bytes'] / MIB:.0f} |")
    return "\n".join(rows)


def mint_table(document: Mapping[str, Any]) -> str:
    """Tabulate the mint or mesh runs per mesh and rate, with the actors' peak memory."""
    rows = [
        "| mesh | rate (/s) | p50 (ms) | p95 (ms) | p99 (ms) | errors | achieved (/s) "
        "| signer RSS (MiB) | coordinator RSS (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, mesh in document["meshes"].items():
        if "error" in mesh:
            rows.append(f"| {name} | failed: {mesh['error']} | | | | | | | |")
            continue
        for run in mesh["runs"]:
            rss = run["peak_rss_bytes"]
            rows.append(
                f"| {name} | {run['requested_rate']:.0f} | {run['p50_ms']:.1f} "
                f"| {run['p95_ms']:.1f} | {run['p99_ms']:.1f} | {run['error_ratio']:.2%} "
                f"| {run['throughput']:.0f} "
                f"| {rss.get('SignerActor', 0) / MIB:.0f} "
                f"| {rss.get('CoordinatorActor', 0) / MIB:.0f} |"
            )
    return "\n".join(rows)


def stage_table(document: Mapping[str, Any]) -> str:
    """Tabulate requests sent and the mean time of each mint stage, per mesh and rate."""
    stages = ("webauthn", "policy", "signing", "kms", "audit")
    rows = [
        "| mesh | rate (/s) | sent | " + " | ".join(f"{stage} (ms)" for stage in stages) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in stages) + " |",
    ]
    for name, mesh in document["meshes"].items():
        for run in mesh.get("runs", []):
            means = run.get("stage_mean_ms", {})
            cells = " | ".join(f"{means[stage]:.1f}" if stage in means else "" for stage in stages)
            rows.append(f"| {name} | {run['requested_rate']:.0f} | {run['requests']} | {cells} |")
    return "\n".join(rows)


def main() -> int:
    """Print the tables of the newest authz, mesh and mint results."""
    authz = newest("authz")
    if authz is not None:
        document = json.loads(authz.read_text())
        print(f"## {authz.name}\n")
        for table in (saturation_table, fixed_rate_table, memory_table):
            print(table(document) + "\n")
    for prefix in ("mesh", "mint"):
        path = newest(prefix)
        if path is not None:
            print(f"## {path.name}\n")
            document = json.loads(path.read_text())
            print(mint_table(document) + "\n")
            if prefix == "mint":
                print(stage_table(document) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
