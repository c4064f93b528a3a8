"""Benchmark the signing stage alone: ``sign_token`` calls on the coordinator actor over Ray.

Run from the repository root: ``.venv/bin/python -m bench.mesh [--quick]``.

This measures what ``POST /mint`` spends in the signer mesh, without the HTTP API, the
WebAuthn checks of the mint, the receipt or the audit log. For each mesh configuration of
``bench.mint.PLANS`` it starts Ray and the mesh (``actors.mesh.start_mesh``) and builds one
claims set and one WebAuthn assertion per call ahead of time. It then calls
``CoordinatorActor.sign_token`` at a fixed rate (open loop: calls are sent on schedule, not
when the previous one returns) for a bounded duration. Latency is from the scheduled send
time to the moment ``ray.wait`` returns the result, so a backlog counts against the mesh.

Assertions come from an in-memory P-256 credential built here with python-fido2's COSE and
CBOR helpers, because the signers check only the assertion's signature and its binding to
the claims (``actors.assertion_check``), not the credential's enrollment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256

from actors.assertion_check import AssertionEvidence, derive_challenge, request_digest
from actors.report_verification import AttestationMode, AttestationSettings
from authz.formats import TokenClaims
from authz.jose import b64url_encode
from authz.jwk import okp_ed25519_jwk, thumbprint
from bench.harness import OUT, RssSampler, machine_description, write_result
from bench.mint import PLANS, SHORT_RUNS, MeshPlan, actor_pids
from bench.profile import PY_SPY, summarise_collapsed
from mint.stack import CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL, NODE_GROUP_LABEL

ISSUER = "https://mint.bench.invalid"
AUDIENCE = "orders"
SCOPES = ("orders:read",)
TTL_SECONDS = 900
RP_ID = "mint.bench.invalid"
CALL_TIMEOUT_S = 30.0
# authenticatorData flags: UP (0x01) and UV (0x04).
USER_PRESENT_AND_VERIFIED = 0x05


class BenchCredential:
    """An in-memory P-256 WebAuthn credential that signs assertions over token requests."""

    def __init__(self) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = ES256.from_cryptography_key(self._private_key.public_key())
        self._cose_key = cbor.encode(dict(public_key))
        self._counter = 0

    def __repr__(self) -> str:
        return "BenchCredential(<redacted>)"

    def assert_claims(self, claims: TokenClaims) -> AssertionEvidence:
        """Return an assertion whose challenge binds the sub, scopes, aud and ttl of ``claims``."""
        salt = os.urandom(32)
        digest = request_digest(claims.sub, claims.scopes, claims.aud, claims.ttl)
        client_data = json.dumps(
            {
                "type": "webauthn.get",
                "challenge": b64url_encode(derive_challenge(salt, digest)),
                "origin": f"https://{RP_ID}",
            }
        ).encode()
        self._counter += 1
        authenticator_data = (
            hashlib.sha256(RP_ID.encode()).digest()
            + bytes([USER_PRESENT_AND_VERIFIED])
            + self._counter.to_bytes(4, "big")
        )
        signed = authenticator_data + hashlib.sha256(client_data).digest()
        return AssertionEvidence(
            credential_public_key=self._cose_key,
            authenticator_data=authenticator_data,
            client_data_json=client_data,
            signature=self._private_key.sign(signed, ec.ECDSA(hashes.SHA256())),
            challenge_salt=salt,
        )


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ascending ``sorted_values`` (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(round(fraction * len(sorted_values) + 0.5 - 1e-9)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def prepare_calls(
    credential: BenchCredential, count: int, now: int
) -> list[tuple[TokenClaims, AssertionEvidence]]:
    """Build ``count`` claims sets with fresh jti values and an assertion for each."""
    calls = []
    for index in range(count):
        claims = TokenClaims(
            iss=ISSUER,
            sub=f"bench{index % 100}@example.com",
            aud=AUDIENCE,
            scopes=SCOPES,
            iat=now,
            ttl=TTL_SECONDS,
            jti=b64url_encode(os.urandom(16)),
        )
        calls.append((claims, credential.assert_claims(claims)))
    return calls


def run_open_loop(
    coordinator: Any, kid: str, calls: Sequence[tuple[TokenClaims, Any]], rate: float
) -> dict[str, Any]:
    """Send ``calls`` at ``rate`` per second and return latency percentiles and errors."""
    import ray

    interval = 1.0 / rate
    started = time.perf_counter()
    scheduled: dict[Any, float] = {}
    latencies: list[float] = []
    errors: list[str] = []
    sent = 0
    deadline = started + len(calls) * interval + CALL_TIMEOUT_S
    while (sent < len(calls) or scheduled) and time.perf_counter() < deadline:
        now = time.perf_counter()
        while sent < len(calls) and started + sent * interval <= now:
            claims, assertion = calls[sent]
            reference = coordinator.sign_token.remote(claims, kid, assertion)
            scheduled[reference] = started + sent * interval
            sent += 1
        if not scheduled:
            time.sleep(max(0.0, started + sent * interval - time.perf_counter()))
            continue
        ready, _ = ray.wait(list(scheduled), num_returns=len(scheduled), timeout=0.001)
        finished = time.perf_counter()
        for reference in ready:
            latencies.append(finished - scheduled.pop(reference))
            try:
                ray.get(reference)
            except Exception as exc:  # noqa: BLE001 - every failure of a call is an error here
                errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
    elapsed = time.perf_counter() - started
    failed = len(errors) + len(scheduled)
    latencies.sort()
    return {
        "requested_rate": rate,
        "requests": len(calls),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "error_ratio": round(failed / len(calls), 6),
        "throughput": round((len(calls) - failed) / elapsed, 1),
        "errors": sorted(set(errors))[:5],
    }


def start_py_spy(pid: int, name: str, duration_s: float) -> tuple[subprocess.Popen[bytes], Path]:
    """Start sampling ``pid`` with py-spy for ``duration_s``; return the process and its output."""
    output = OUT / f"mesh-profile-{name}.txt"
    command = [
        str(PY_SPY), "record", "--format", "raw", "--rate", "200", "--nonblocking",
        "--duration", str(max(1, int(duration_s))), "--output", str(output), "--pid", str(pid),
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, output


def profile_summaries(started: Sequence[tuple[str, subprocess.Popen[bytes], Path]]) -> dict:
    """Wait for the py-spy processes and summarise what each recorded."""
    summaries = {}
    for name, process, output in started:
        process.wait(timeout=120)
        if output.exists():
            summaries[name] = summarise_collapsed(output.read_text(), top=15)
    return summaries


def bench_mesh(plan: MeshPlan, profile_rate: int | None = None) -> dict[str, Any]:
    """Start Ray and one mesh configuration, run its rates and return the results.

    With ``profile_rate``, py-spy samples the coordinator and one signer during that run.
    """
    import ray

    from actors.mesh import start_mesh

    state_dir = OUT / "mesh-state" / plan.name
    shutil.rmtree(state_dir, ignore_errors=True)
    # address="local" starts a new instance even when another Ray cluster runs on the machine.
    ray.init(
        address="local",
        namespace="ztmint",
        labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "local-0"},
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        started = time.monotonic()
        coordinator = start_mesh(
            state_dir,
            n=plan.signers,
            t=plan.threshold,
            attestation=AttestationSettings(mode=plan.attestation),
        )
        group_key = bytes(ray.get(coordinator.group_public_key.remote(), timeout=60))
        kid = thumbprint(okp_ed25519_jwk(group_key))
        print(f"{plan.name}: mesh up in {time.monotonic() - started:.1f} s", flush=True)
        credential = BenchCredential()
        run_open_loop(coordinator, kid, prepare_calls(credential, 10, int(time.time())), 10)
        pids = actor_pids()
        runs = []
        for rate, duration_s in plan.runs:
            calls = prepare_calls(credential, int(rate * duration_s), int(time.time()))
            sampler = RssSampler([pid for group in pids.values() for pid in group]).start()
            profiling = []
            if rate == profile_rate:
                for name in ("CoordinatorActor", "SignerActor"):
                    if pids[name]:
                        process, output = start_py_spy(pids[name][0], name, duration_s)
                        profiling.append((name, process, output))
            result = run_open_loop(coordinator, kid, calls, rate)
            peak = sampler.stop()
            if profiling:
                result["profile"] = profile_summaries(profiling)
            result["peak_rss_bytes"] = {
                name: max((peak.get(pid, 0) for pid in group), default=0)
                for name, group in pids.items()
            }
            runs.append(result)
            print(
                f"  rate={rate}/s p50={result['p50_ms']}ms p95={result['p95_ms']}ms"
                f" p99={result['p99_ms']}ms errors={result['error_ratio']}"
                f" throughput={result['throughput']}/s {result['errors'][:1]}",
                flush=True,
            )
    finally:
        ray.shutdown()
    return {
        "signers": plan.signers,
        "threshold": plan.threshold,
        "attestation": plan.attestation.value,
        "actor_processes": {name: len(group) for name, group in pids.items()},
        "runs": runs,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the signing benchmark and write bench/results/mesh-<date>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.mesh", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="run only 3-of-5 with attestation, at 50/s and 300/s"
    )
    args = parser.parse_args(argv)
    plans = PLANS
    if args.quick:
        plans = (MeshPlan(5, 3, AttestationMode.DEVELOPMENT, SHORT_RUNS),)
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.time()
    # Read now, so load_average_at_start is the load before this run added its own.
    machine = machine_description()
    meshes = {}
    for index, plan in enumerate(plans):
        print(f"{plan.name}: starting", flush=True)
        meshes[plan.name] = bench_mesh(plan, profile_rate=50 if index == 0 else None)
    document = {
        "kind": "mesh",
        "started_at": int(started),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine,
        "call": "CoordinatorActor.sign_token over Ray, from the driver process",
        "meshes": meshes,
    }
    path = write_result("mesh", document)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
