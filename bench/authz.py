"""Benchmark the ztmint ext_authz service against OPA running the same checks in Rego.

Run from the repository root: ``.venv/bin/python -m bench.authz [--duration 4]``.

What runs, all on 127.0.0.1 with ports picked at start:

- OPA v1.22.4 with opa/authz (the policy the ztmint service queries);
- ``python -m authz.server`` serving gRPC and HTTP, once with its token and decision caches
  on (the default sizes) and once with both off (``--token-cache-size 0
  --decision-cache-size 0``);
- the peer: ``opa run --server`` with bench/peer/policy.rego, queried over OPA's REST API.
  The opa-envoy-plugin, which would serve the same policy over gRPC ext_authz, cannot be
  built here (docs/PERFORMANCE.md explains why), so the peer takes part in the HTTP runs only.

Every credential is checked once before the load starts, so a run of denials cannot pass for
a fast run. The gRPC runs also read the service's ``ztmint_authz_decisions`` counter to count
denials, because ghz counts a denied check as a successful call.

The results go to bench/results/authz-<date>.json.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.json_format import MessageToDict
from google.rpc import code_pb2

from bench.credentials import AUDIENCE, ISSUER, BenchIssuer, Credential
from bench.harness import (
    BIN,
    OUT,
    REPO,
    BenchError,
    LoadResult,
    RssSampler,
    Service,
    free_port,
    machine_description,
    run_ghz,
    run_vegeta,
    wait_for_port,
    write_result,
)

CHECK_CALL = "envoy.service.auth.v3.Authorization.Check"
REQUEST_METHOD = "GET"
REQUEST_PATH = "/orders/7"
PEER_QUERY_PATH = "/v1/data/envoy/authz/allow"
FIXED_RATES = (100, 500, 1000, 2000)
FIXED_RATE_VARIETY = 100
VARIETIES = (1, 100, 10_000)
START_TIMEOUT_S = 30.0


def write_protoset(path: Path) -> Path:
    """Write a FileDescriptorSet for ``Authorization.Check`` and its imports, for ghz."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(descriptor: FileDescriptor) -> None:
        if descriptor.name in files:
            return
        for dependency in descriptor.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        files[descriptor.name] = proto

    add(external_auth_pb2.DESCRIPTOR)
    path.write_bytes(
        descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()
    )
    return path


def check_request(credential: Credential) -> external_auth_pb2.CheckRequest:
    """Build the ``CheckRequest`` Envoy would send for a GET carrying ``credential``."""
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method = REQUEST_METHOD
    http.path = REQUEST_PATH
    http.headers.update(credential.headers())
    return request


def write_ghz_data(path: Path, credentials: Sequence[Credential]) -> Path:
    """Write the JSON array of check requests that ghz sends round-robin."""
    messages = [MessageToDict(check_request(credential)) for credential in credentials]
    path.write_text(json.dumps(messages))
    return path


def write_vegeta_targets(path: Path, url: str, credentials: Sequence[Credential]) -> Path:
    """Write vegeta JSON targets: a GET of ``url`` with each credential in its headers."""
    with path.open("w") as targets:
        for credential in credentials:
            header = {"Authorization": [f"Bearer {credential.token}"]}
            header["x-kms-sig"] = [credential.receipt]
            targets.write(json.dumps({"method": REQUEST_METHOD, "url": url, "header": header}))
            targets.write("\n")
    return path


def peer_input(credential: Credential) -> dict[str, Any]:
    """Build the opa-envoy-plugin input for a GET carrying ``credential``."""
    http = {"method": REQUEST_METHOD, "path": REQUEST_PATH, "headers": credential.headers()}
    return {"input": {"attributes": {"request": {"http": http}}}}


def write_peer_targets(path: Path, url: str, credentials: Sequence[Credential]) -> Path:
    """Write vegeta JSON targets that POST each credential's plugin input to OPA."""
    with path.open("w") as targets:
        for credential in credentials:
            body = base64.b64encode(json.dumps(peer_input(credential)).encode()).decode()
            header = {"Content-Type": ["application/json"]}
            targets.write(
                json.dumps({"method": "POST", "url": url, "header": header, "body": body})
            )
            targets.write("\n")
    return path


def start_opa(name: str, paths: Sequence[Path]) -> tuple[Service, str]:
    """Start ``opa run --server`` on a free port with ``paths`` loaded."""
    port = free_port()
    command = [
        str(BIN / "opa"),
        "run",
        "--server",
        "--skip-version-check",
        "--addr",
        f"127.0.0.1:{port}",
        "--log-level",
        "error",
        *map(str, paths),
    ]
    service = Service(name, command)
    wait_for_port(port, service.process, START_TIMEOUT_S)
    return service, f"http://127.0.0.1:{port}"


@contextmanager
def authz_service(name: str, opa_url: str, jwks: Path, caches: bool) -> Iterator[dict[str, Any]]:
    """Run ``python -m authz.server`` with gRPC, HTTP and metrics listeners."""
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "authz.server",
        f"--grpc-listen=127.0.0.1:{grpc_port}",
        f"--http-listen=127.0.0.1:{http_port}",
        f"--metrics-listen=127.0.0.1:{metrics_port}",
        f"--opa-url={opa_url}",
        f"--jwks-file={jwks}",
        f"--audience={AUDIENCE}",
        f"--issuer={ISSUER}",
    ]
    if not caches:
        command += ["--token-cache-size=0", "--decision-cache-size=0"]
    service = Service(name, command, env={"PYTHONPATH": str(REPO)})
    try:
        for port in (grpc_port, http_port, metrics_port):
            wait_for_port(port, service.process, START_TIMEOUT_S)
        yield {
            "service": service,
            "grpc": f"127.0.0.1:{grpc_port}",
            "http": f"http://127.0.0.1:{http_port}",
            "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
        }
    finally:
        service.stop()


def require_grpc_allowed(address: str, credentials: Sequence[Credential]) -> None:
    """Check every credential once over gRPC and raise unless each is allowed."""
    with grpc.insecure_channel(address) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        for credential in credentials:
            response = stub.Check(check_request(credential), timeout=5)
            if response.status.code != code_pb2.OK:
                raise BenchError(f"gRPC check denied a bench token: {response.status.message}")


def require_http_allowed(url: str, credentials: Sequence[Credential]) -> None:
    """Check every credential once over HTTP and raise unless each is allowed."""
    with httpx.Client(timeout=5) as client:
        for credential in credentials:
            response = client.get(url, headers=credential.headers())
            if response.status_code != 200:
                raise BenchError(f"HTTP check denied a bench token: {response.text}")


def require_peer_allowed(url: str, credentials: Sequence[Credential]) -> None:
    """Query the peer once per credential and raise unless each is allowed.

    Also swaps the receipts of the first two credentials and raises unless the peer denies
    both, so a peer policy that skips the receipt binding cannot pass for a fast one.
    """
    with httpx.Client(timeout=5) as client:
        for credential in credentials:
            response = client.post(url, json=peer_input(credential))
            if response.json().get("result") is not True:
                raise BenchError(f"the peer policy denied a bench token: {response.text}")
        first, second = credentials[0], credentials[1]
        for swapped in (
            Credential(first.token, second.receipt),
            Credential(second.token, first.receipt),
        ):
            response = client.post(url, json=peer_input(swapped))
            if response.json().get("result") is not False:
                raise BenchError("the peer policy allowed a token with another token's receipt")


def denied_count(metrics_url: str) -> float:
    """Read the total of ``ztmint_authz_decisions_total{outcome="deny"}`` from /metrics."""
    total = 0.0
    for line in httpx.get(metrics_url, timeout=5).text.splitlines():
        if line.startswith("ztmint_authz_decisions_total{") and 'outcome="deny"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_plan(variety_files: dict[int, Path], duration_s: float, attack: Any) -> list[dict]:
    """Run the fixed rates at variety 100, then maximum rate at every variety."""
    runs = []
    plan = [(rate, FIXED_RATE_VARIETY) for rate in FIXED_RATES]
    plan += [(0, variety) for variety in VARIETIES]
    for rate, variety in plan:
        result, extra = attack(variety_files[variety], rate, duration_s)
        runs.append({"variety": variety, **result.to_json(), **extra})
        print(
            f"  rate={rate or 'max'} variety={variety} p50={result.p50_ms:.2f}ms"
            f" p99={result.p99_ms:.2f}ms throughput={result.throughput:.0f}/s"
            f" errors={result.error_ratio:.4f} {extra}",
            flush=True,
        )
    return runs


def bench_ztmint(
    name: str, opa_url: str, jwks: Path, caches: bool, pool: list[Credential], duration_s: float
) -> dict[str, Any]:
    """Run the gRPC and HTTP plans against one ztmint authz service."""
    with authz_service(name, opa_url, jwks, caches) as endpoints:
        require_grpc_allowed(endpoints["grpc"], pool[:100])
        require_http_allowed(endpoints["http"] + REQUEST_PATH, pool[:100])
        protoset = write_protoset(OUT / "external_auth.protoset")
        ghz_files = {v: write_ghz_data(OUT / f"ghz-{v}.json", pool[:v]) for v in VARIETIES}
        url = endpoints["http"] + REQUEST_PATH
        vegeta_files = {
            v: write_vegeta_targets(OUT / f"{name}-targets-{v}.jsonl", url, pool[:v])
            for v in VARIETIES
        }
        sampler = RssSampler([endpoints["service"].process.pid]).start()

        def attack_grpc(data: Path, rate: int, duration: float) -> tuple[LoadResult, dict]:
            before = denied_count(endpoints["metrics"])
            result = run_ghz(endpoints["grpc"], protoset, CHECK_CALL, data, rate, duration)
            return result, {"denied": denied_count(endpoints["metrics"]) - before}

        def attack_http(targets: Path, rate: int, duration: float) -> tuple[LoadResult, dict]:
            return run_vegeta(targets, rate, duration), {}

        print(f"{name}: gRPC", flush=True)
        grpc_runs = run_plan(ghz_files, duration_s, attack_grpc)
        print(f"{name}: HTTP", flush=True)
        http_runs = run_plan(vegeta_files, duration_s, attack_http)
        peak = sampler.stop()
    return {
        "caches": caches,
        "grpc": grpc_runs,
        "http": http_runs,
        "peak_rss_bytes": max(peak.values()),
    }


def bench_peer(issuer: BenchIssuer, pool: list[Credential], duration_s: float) -> dict[str, Any]:
    """Run the HTTP plan against OPA serving bench/peer/policy.rego."""
    keys = OUT / "peer-keys.json"
    keys.write_text(json.dumps(issuer.peer_data()))
    policy = REPO / "bench" / "peer" / "policy.rego"
    peer, base = start_opa("peer-opa", [policy, REPO / "opa" / "authz" / "data.json", keys])
    try:
        url = base + PEER_QUERY_PATH
        require_peer_allowed(url, pool[:100])
        files = {
            v: write_peer_targets(OUT / f"peer-targets-{v}.jsonl", url, pool[:v]) for v in VARIETIES
        }
        sampler = RssSampler([peer.process.pid]).start()

        def attack(targets: Path, rate: int, duration: float) -> tuple[LoadResult, dict]:
            return run_vegeta(targets, rate, duration), {}

        print("peer (OPA REST): HTTP", flush=True)
        runs = run_plan(files, duration_s, attack)
        peak = sampler.stop()
    finally:
        peer.stop()
    return {"http": runs, "peak_rss_bytes": max(peak.values())}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the authz benchmark and write bench/results/authz-<date>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.authz", description=__doc__)
    parser.add_argument(
        "--duration", type=float, default=4.0, help="seconds per load run (default %(default)s)"
    )
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # Read now, so load_average_at_start is the load before this run added its own.
    machine = machine_description()
    issuer = BenchIssuer()
    pool = issuer.credentials(max(VARIETIES), int(started))
    jwks = OUT / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))

    opa, opa_url = start_opa("authz-opa", [REPO / "opa" / "authz"])
    try:
        targets = {
            "ztmint_caches_on": bench_ztmint(
                "authz-caches-on", opa_url, jwks, True, pool, args.duration
            ),
            "ztmint_caches_off": bench_ztmint(
                "authz-caches-off", opa_url, jwks, False, pool, args.duration
            ),
        }
    finally:
        opa.stop()
    targets["peer_opa_rest"] = bench_peer(issuer, pool, args.duration)

    document = {
        "kind": "authz",
        "started_at": int(started),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine,
        "duration_per_run_s": args.duration,
        "request": {"method": REQUEST_METHOD, "path": REQUEST_PATH},
        "group_key": "single Ed25519 key (PyNaCl), not a FROST group key",
        "targets": targets,
    }
    path = write_result("authz", document)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
