"""Plot latency percentiles against request rate from the newest benchmark results.

Run from the repository root: ``.venv/bin/python -m bench.plot``. Reads the newest
bench/results/authz-*.json, mint-*.json and mesh-*.json and writes authz-latency.png and
mint-latency.png (the mint and the signing stage side by side) next to them. Only fixed-rate
runs are plotted, because a run at maximum rate has no requested rate to put on the x axis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.harness import RESULTS

# One point: (requested rate, p50, p95, p99), latencies in milliseconds.
Point = tuple[float, float, float, float]


def authz_series(document: Mapping[str, Any]) -> dict[str, list[Point]]:
    """Extract the fixed-rate points of an authz result, keyed ``"<target> <transport>"``."""
    series: dict[str, list[Point]] = {}
    for target, result in document.get("targets", {}).items():
        for transport in ("grpc", "http"):
            points = [
                (run["requested_rate"], run["p50_ms"], run["p95_ms"], run["p99_ms"])
                for run in result.get(transport, [])
                if run["requested_rate"] > 0
            ]
            if points:
                series[f"{target} {transport}"] = sorted(points)
    return series


def mint_series(document: Mapping[str, Any]) -> dict[str, list[Point]]:
    """Extract the points of a mint or mesh result, keyed by mesh configuration."""
    series: dict[str, list[Point]] = {}
    for name, mesh in document.get("meshes", {}).items():
        points = [
            (run["requested_rate"], run["p50_ms"], run["p95_ms"], run["p99_ms"])
            for run in mesh.get("runs", [])
            if run["requested_rate"] > 0 and run["error_ratio"] < 1.0
        ]
        if points:
            series[name] = sorted(points)
    return series


def newest(prefix: str, folder: Path = RESULTS) -> Path | None:
    """Return the newest ``<prefix>-<date>.json`` in ``folder``, or None."""
    candidates = sorted(folder.glob(f"{prefix}-20*.json"))
    return candidates[-1] if candidates else None


def plot_panels(
    panels: Mapping[str, Mapping[str, Sequence[Point]]],
    output: Path,
    targets_ms: Sequence[tuple[str, float]] = (),
) -> None:
    """Draw one panel per entry: p50 (solid), p95 (dashed), p99 (dotted) against rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, all_axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    for axes, (title, series) in zip(all_axes[0], panels.items(), strict=True):
        for index, (name, points) in enumerate(series.items()):
            rates = [point[0] for point in points]
            for column, style, label in ((1, "-", "p50"), (2, "--", "p95"), (3, ":", "p99")):
                values = [point[column] for point in points]
                axes.plot(rates, values, style, color=f"C{index}", marker="o", markersize=3,
                          label=f"{name} {label}")  # fmt: skip
        for label, value in targets_ms:
            axes.axhline(value, color="grey", linewidth=0.8)
            axes.annotate(label, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7)
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("requested rate (requests/s)")
        axes.set_ylabel("latency (ms)")
        axes.set_title(title, fontsize=9)
        axes.grid(True, which="both", linewidth=0.3)
        axes.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def split_by_transport(series: Mapping[str, Sequence[Point]]) -> dict[str, dict[str, Any]]:
    """Group authz series into a gRPC panel and an HTTP panel."""
    panels: dict[str, dict[str, Any]] = {}
    for key, points in series.items():
        target, _, transport = key.rpartition(" ")
        panels.setdefault(transport, {})[target] = points
    return panels


def main() -> int:
    """Plot the newest authz and mint results that exist."""
    authz = newest("authz")
    if authz is not None:
        panels = split_by_transport(authz_series(json.loads(authz.read_text())))
        titled = {
            f"authz Check over {transport} ({authz.name}, 100 distinct tokens)": series
            for transport, series in sorted(panels.items())
        }
        plot_panels(titled, RESULTS / "authz-latency.png", [("target p99 2 ms", 2.0)])
        print(f"wrote {RESULTS / 'authz-latency.png'}")
    panels = {}
    mint = newest("mint")
    if mint is not None and (series := mint_series(json.loads(mint.read_text()))):
        panels[f"POST /mint ({mint.name})"] = series
    mesh = newest("mesh")
    if mesh is not None and (series := mint_series(json.loads(mesh.read_text()))):
        panels[f"sign_token on the mesh only ({mesh.name})"] = series
    if panels:
        plot_panels(
            panels,
            RESULTS / "mint-latency.png",
            [("target p50 10 ms", 10.0), ("target p95 25 ms", 25.0)],
        )
        print(f"wrote {RESULTS / 'mint-latency.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
