"""Profile the authz service at saturation with py-spy and summarise where the time goes.

Run from the repository root: ``.venv/bin/python -m bench.profile [--caches on|off]``.

The service runs as in bench/authz.py and ghz calls gRPC Check as fast as it can while
``py-spy record --format raw --gil`` samples the service, so the samples show what holds the
GIL, the one resource every check thread shares. The collapsed stacks go to
bench/out/authz-profile-caches-<on|off>.txt and the top functions by inclusive and self share
to bench/results/authz-profile-caches-<on|off>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.authz import (
    CHECK_CALL,
    REQUEST_PATH,
    authz_service,
    require_grpc_allowed,
    start_opa,
    write_ghz_data,
    write_protoset,
)
from bench.credentials import BenchIssuer
from bench.harness import OUT, REPO, RESULTS, run_ghz

PY_SPY = REPO / ".venv" / "bin" / "py-spy"
TOP_FUNCTIONS = 25


def summarise_collapsed(text: str, top: int = TOP_FUNCTIONS) -> dict[str, Any]:
    """Summarise py-spy raw output (collapsed stacks, ``frame;frame;... count`` per line).

    A frame is ``function (file:line)``. The line number is dropped, so each function counts
    once per stack however many of its lines appear, and recursion is not counted twice.

    Returns:
        ``{"samples": N, "inclusive": [[function, share], ...], "self": [...]}``, each list
        sorted by share (0.0 to 1.0) and cut to ``top`` entries.
    """
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function_of(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        samples += count
        for function in set(frames):
            inclusive[function] += count
        leaf[frames[-1]] += count

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(value / samples, 4)] for name, value in counter.most_common(top)]

    if samples == 0:
        return {"samples": 0, "inclusive": [], "self": []}
    return {"samples": samples, "inclusive": shares(inclusive), "self": shares(leaf)}


def _function_of(frame: str) -> str:
    # "check (authz/decision.py:212)" -> "check (authz/decision.py)"
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


def profile(caches: bool, duration_s: float) -> dict[str, Any]:
    """Load one authz service at maximum rate while py-spy samples it."""
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    issuer = BenchIssuer()
    pool = issuer.credentials(100, int(time.time()))
    jwks = OUT / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))

    label = "on" if caches else "off"
    raw = OUT / f"authz-profile-caches-{label}.txt"
    opa, opa_url = start_opa("profile-opa", [REPO / "opa" / "authz"])
    try:
        with authz_service(f"profile-caches-{label}", opa_url, jwks, caches) as endpoints:
            require_grpc_allowed(endpoints["grpc"], pool[:10])
            protoset = write_protoset(OUT / "external_auth.protoset")
            data = write_ghz_data(OUT / "profile-ghz.json", pool)
            load = threading.Thread(
                target=run_ghz,
                args=(endpoints["grpc"], protoset, CHECK_CALL, data, 0, duration_s + 2),
            )
            load.start()
            record = [
                str(PY_SPY), "record", "--format", "raw", "--gil", "--rate", "200",
                "--duration", str(int(duration_s)), "--output", str(raw),
                "--pid", str(endpoints["service"].process.pid),
            ]  # fmt: skip
            subprocess.run(record, check=True, capture_output=True, timeout=duration_s + 60)  # noqa: S603
            load.join()
    finally:
        opa.stop()

    summary = {
        "caches": caches,
        "request_path": REQUEST_PATH,
        "duration_s": duration_s,
        **summarise_collapsed(raw.read_text()),
    }
    Path(RESULTS / f"authz-profile-caches-{label}.json").write_text(
        json.dumps(summary, indent=2) + "\n"
    )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Profile the authz service and print the top functions."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument(
        "--caches",
        choices=("on", "off"),
        default="off",
        help="turn the service's token and decision caches on or off (default %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, default=8.0, help="seconds to sample (default %(default)s)"
    )
    args = parser.parse_args(argv)
    summary = profile(args.caches == "on", args.duration)
    print(f"samples={summary['samples']} (GIL held)")
    for name, share in summary["inclusive"]:
        print(f"{share * 100:6.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
