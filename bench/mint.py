"""Benchmark minting through the local stack: WebAuthn assertion, FROST signing, receipt, audit.

Run from the repository root: ``.venv/bin/python -m bench.mint [--quick]``, or
``.venv/bin/python -m bench.mint --kms local oci-2ms oci-60ms [--quick]`` for the KMS runs.

For each mesh configuration this starts Ray, the signer mesh and the mint API in this process
(``mint.stack.Stack`` without its OPA and authz children, which minting does not use), then:

1. enrolls ``AUTHENTICATORS`` software authenticators (``mint.softkey``);
2. for each rate, requests one challenge per planned request from ``POST /assert`` ahead of
   time and has the authenticators sign them. The signed ``POST /mint`` bodies become vegeta
   JSON targets, so the load generator replays only the mint step;
3. sends them with vegeta at a fixed rate for a bounded duration;
4. records latency percentiles, the error ratio, the peak RSS of the signer and coordinator
   actor processes, and the mean time of each mint stage from the mint's
   ``ztmint_mint_stage_seconds`` histogram (``GET /metrics``) over the run.

Per-mint attestation reports are switched with ``actors.report_verification.AttestationMode``:
``development`` has every signer return a development SEV-SNP report per signature share and
the coordinator verify each, ``off`` skips both.

``--kms`` runs 3-of-5 attested at 10/s and 50/s once per KMS variant (``bench.kms``): the
local key, or OCI KMS behind a mock with a fixed 2 ms or 60 ms delay per sign call. Every mint
calls the KMS twice: once for the receipt (stage ``kms``) and once for the audit checkpoint,
inside the audit log lock (stage ``audit``). Those results go to
``bench/results/mint-kms-<date>.json``.

Limitations:
    Rate limits and circuit breakers are raised far above the bench's rates, and the mint
    policy is off, because the bench starts no OPA for it. Without ``--kms`` the receipt comes
    from the local KMS key. ``BenchStack`` passes the KMS settings to the mint itself,
    because ``mint.wiring.build_app``, which ``mint.stack`` uses, does not read ``ZTMINT_KMS``.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from actors.report_verification import AttestationMode, AttestationSettings
from bench.harness import (
    OUT,
    BenchError,
    RssSampler,
    histogram_totals,
    machine_description,
    mean_ms_between,
    run_vegeta,
    write_result,
)
from bench.kms import KMS_VARIANTS, KmsVariant, kms_settings_for
from mint.client import enroll, post_json
from mint.kms_select import KmsSettings
from mint.softkey import SoftwareAuthenticator
from mint.stack import (
    CONFIDENTIAL_NODE_GROUP,
    FAULT_DOMAIN_LABEL,
    NODE_GROUP_LABEL,
    Stack,
    StackConfig,
    free_port,
    wait_until,
)

AUTHENTICATORS = 200
SCOPES = ["orders:read"]
AUDIENCE = "orders"
TTL_SECONDS = 900
ACTOR_PROCESS_NAMES = ("SignerActor", "CoordinatorActor")
STAGE_METRIC = "ztmint_mint_stage_seconds"
# Rate limits and circuit breakers far above any rate the bench sends (mint.limits and
# mint.breakers read these names). No ZTMINT_OPA_URL, so no mint policy is applied.
BENCH_GUARD_ENVIRONMENT = {
    "ZTMINT_RATE_BURST": "1000000",
    "ZTMINT_RATE_PER_MINUTE": "1000000",
    "ZTMINT_BREAKER_MAX_REFUSALS": "1000000",
    "ZTMINT_BREAKER_MAX_DENIED_SCOPES": "1000000",
    "ZTMINT_GLOBAL_MAX_MINTS": "1000000",
}


@dataclass(frozen=True)
class MeshPlan:
    """One mesh configuration and the (rate per second, duration in seconds) runs to make."""

    signers: int
    threshold: int
    attestation: AttestationMode
    runs: tuple[tuple[int, float], ...]

    @property
    def name(self) -> str:
        """Return a short label such as ``3-of-5-attested``."""
        suffix = "attested" if self.attestation is not AttestationMode.OFF else "unattested"
        return f"{self.threshold}-of-{self.signers}-{suffix}"


FULL_RUNS = ((10, 5.0), (50, 5.0), (100, 4.0), (300, 3.0))
SHORT_RUNS = ((50, 4.0), (300, 3.0))
KMS_RUNS = ((10, 5.0), (50, 5.0))
KMS_QUICK_RUNS = ((10, 3.0), (50, 3.0))
PLANS = (
    MeshPlan(5, 3, AttestationMode.DEVELOPMENT, FULL_RUNS),
    MeshPlan(5, 3, AttestationMode.OFF, FULL_RUNS),
    MeshPlan(3, 2, AttestationMode.DEVELOPMENT, SHORT_RUNS),
    MeshPlan(9, 5, AttestationMode.DEVELOPMENT, SHORT_RUNS),
)


class BenchStack(Stack):
    """The local stack with an attestation mode and KMS of choice, without OPA and authz."""

    attestation: AttestationSettings = AttestationSettings()
    kms: KmsSettings = KmsSettings()
    mint_service: Any = None

    def _start_ray(self) -> None:
        """Start a new local Ray instance, never joining a cluster another process started."""
        import ray

        ray.init(
            address="local",
            namespace="ztmint",
            labels={NODE_GROUP_LABEL: CONFIDENTIAL_NODE_GROUP, FAULT_DOMAIN_LABEL: "local-0"},
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        self._ray_started = True

    def _start_mesh(self) -> object:
        from actors.mesh import start_mesh

        return start_mesh(
            self.config.state_dir / "signers",
            n=self.config.signers,
            t=self.config.threshold,
            attestation=self.attestation,
        )

    def _start_mint(self, coordinator: object) -> None:
        """Start the mint API as ``mint.wiring.build_app`` does, with the bench's guard."""
        import uvicorn

        from mint.app import create_app, service_from_settings
        from mint.limits import guard_settings_from_env
        from mint.ray_signer import RayTokenSigner
        from mint.settings import Settings

        port = free_port()
        self.endpoints.mint_url = f"http://localhost:{port}"
        settings = Settings(
            rp_id="localhost",
            origin=self.endpoints.mint_url,
            issuer=self.endpoints.mint_url,
            state_dir=self.config.state_dir / "mint",
            port=port,
            guard=guard_settings_from_env(BENCH_GUARD_ENVIRONMENT),
            kms=self.kms,
            # Every request comes from 127.0.0.1, so a per-address limit would cap the run.
            client_rate=None,
        )
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.mint_service = service_from_settings(settings, RayTokenSigner(coordinator))
        app = create_app(self.mint_service, settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, name="mint-api", daemon=True)
        thread.start()
        self._mint_server, self._mint_thread = server, thread
        wait_until(lambda: _healthy(f"{self.endpoints.mint_url}/healthz"), "mint API")

    def _start_opa(self) -> None:
        return

    def _start_authz(self) -> None:
        return


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def enroll_authenticators(
    mint_url: str, folder: Path, count: int, invite: Callable[[str], str]
) -> list[tuple[str, Any]]:
    """Enroll ``count`` software authenticators, one user each; return (user, authenticator).

    ``invite`` returns a fresh invitation code for a user, as ``ztmint users invite`` does.
    """
    folder.mkdir(parents=True, exist_ok=True)
    enrolled = []
    for index in range(count):
        user = f"bench{index}"
        authenticator = SoftwareAuthenticator(folder / f"{user}.key", origin=mint_url)
        enroll(mint_url, user, authenticator, invitation=invite(user))
        enrolled.append((user, authenticator))
    return enrolled


def prepare_mint_targets(
    api_url: str, enrolled: Sequence[tuple[str, Any]], count: int, path: Path
) -> Path:
    """Write ``count`` vegeta targets, each a ``POST /mint`` with a fresh signed challenge.

    Authenticators are used round-robin, so one authenticator's assertions are sent in the
    order its signature counter grew, ``len(enrolled)`` requests apart.
    """
    request = {"scopes": SCOPES, "audience": AUDIENCE, "ttl_seconds": TTL_SECONDS}
    header = {"Content-Type": ["application/json"]}
    with httpx.Client(base_url=api_url, timeout=30) as client, path.open("w") as targets:
        for index in range(count):
            user, authenticator = enrolled[index % len(enrolled)]
            started = post_json(client, "/assert", {"user": user, **request})
            assertion = authenticator.authenticate(started["publicKey"])
            body = {"challenge_id": started["challenge_id"], **request, "assertion": assertion}
            encoded = base64.b64encode(json.dumps(body).encode()).decode()
            target = {"method": "POST", "url": f"{api_url}/mint", "header": header, "body": encoded}
            targets.write(json.dumps(target) + "\n")
    return path


def stage_totals(api_url: str) -> dict[str, tuple[float, float]]:
    """Read (sum, count) per stage of ``ztmint_mint_stage_seconds`` from the mint's /metrics."""
    try:
        text = httpx.get(f"{api_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return histogram_totals(text, STAGE_METRIC, "stage")


def actor_pids() -> dict[str, list[int]]:
    """Find the Ray worker processes of the signer and coordinator actors under this process."""
    found: dict[str, list[int]] = {name: [] for name in ACTOR_PROCESS_NAMES}
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except psutil.Error:
            continue
        for name in ACTOR_PROCESS_NAMES:
            if title.startswith(f"ray::{name}"):
                found[name].append(process.pid)
    return found


def bench_mesh(
    plan: MeshPlan, state_root: Path, kms: KmsSettings | None = None, label: str | None = None
) -> dict[str, Any]:
    """Start one mesh configuration, run its rates and return the results.

    Args:
        plan: the mesh and its runs.
        state_root: the parent of the stack's state folder.
        kms: the mint's KMS; None uses the local key.
        label: the name of the state folder, vegeta files and progress lines; default
            ``plan.name``.
    """
    name = label or plan.name
    state_dir = state_root / name
    shutil.rmtree(state_dir, ignore_errors=True)
    config = StackConfig(
        state_dir=state_dir,
        signers=plan.signers,
        threshold=plan.threshold,
        mint_port=0,
        include_dashboard=False,
        audience=AUDIENCE,
    )
    stack = BenchStack(config, progress=lambda message: print(f"  {message}", flush=True))
    stack.attestation = AttestationSettings(mode=plan.attestation)
    stack.kms = kms or KmsSettings()
    started = time.monotonic()
    endpoints = stack.start()
    try:
        # Targets use the IP address, because "localhost" may resolve to ::1 first. The
        # origin signed into each assertion stays the mint's public URL.
        api_url = endpoints.mint_url.replace("localhost", "127.0.0.1")
        print(f"{name}: started in {time.monotonic() - started:.1f} s", flush=True)
        enrolled = enroll_authenticators(
            endpoints.mint_url, state_dir / "softkeys", AUTHENTICATORS, stack.mint_service.invite
        )
        # Warm the nonce pools and the connections once, outside the measurements.
        warm = prepare_mint_targets(api_url, enrolled, 20, OUT / "mint-warm.jsonl")
        run_vegeta(warm, 10, 2.0, max_workers=8, timeout_s=30.0)
        pids = actor_pids()
        runs = []
        for rate, duration_s in plan.runs:
            targets = OUT / f"mint-{name}-{rate}.jsonl"
            prepare_started = time.monotonic()
            prepare_mint_targets(api_url, enrolled, int(rate * duration_s), targets)
            prepare_s = time.monotonic() - prepare_started
            before = stage_totals(api_url)
            sampler = RssSampler([pid for group in pids.values() for pid in group]).start()
            result = run_vegeta(targets, rate, duration_s, max_workers=128, timeout_s=30.0)
            peak = sampler.stop()
            stage_means = mean_ms_between(before, stage_totals(api_url))
            runs.append(
                {
                    **result.to_json(),
                    "prepare_s": round(prepare_s, 2),
                    "stage_mean_ms": stage_means,
                    "peak_rss_bytes": {
                        name: max((peak.get(pid, 0) for pid in group), default=0)
                        for name, group in pids.items()
                    },
                }
            )
            print(
                f"  rate={rate}/s p50={result.p50_ms:.1f}ms p95={result.p95_ms:.1f}ms"
                f" p99={result.p99_ms:.1f}ms errors={result.error_ratio:.4f}"
                f" throughput={result.throughput:.0f}/s {result.errors[:1]}",
                flush=True,
            )
    finally:
        stack.stop()
    return {
        "signers": plan.signers,
        "threshold": plan.threshold,
        "attestation": plan.attestation.value,
        "actor_processes": {name: len(group) for name, group in pids.items()},
        "runs": runs,
    }


def bench_kms(variants: Sequence[KmsVariant], quick: bool) -> Path:
    """Run 3-of-5 attested once per KMS variant and write bench/results/mint-kms-<date>.json."""
    plan = MeshPlan(5, 3, AttestationMode.DEVELOPMENT, KMS_QUICK_RUNS if quick else KMS_RUNS)
    OUT.mkdir(parents=True, exist_ok=True)
    state_root = OUT / "mint-kms-state"
    started = time.time()
    machine = machine_description()
    results: dict[str, Any] = {}
    for variant in variants:
        label = f"{plan.name}-kms-{variant.name}"
        print(f"{label}: starting", flush=True)
        try:
            with kms_settings_for(variant, state_root / f"{variant.name}-oci") as kms:
                results[variant.name] = {
                    "kms": variant.describe(),
                    **bench_mesh(plan, state_root, kms=kms, label=label),
                }
        except BenchError as exc:
            results[variant.name] = {"kms": variant.describe(), "error": str(exc)}
            print(f"{label}: failed: {exc}", flush=True)

    document = {
        "kind": "mint-kms",
        "started_at": int(started),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine,
        "mesh": plan.name,
        "authenticators": AUTHENTICATORS,
        "request": {"scopes": SCOPES, "audience": AUDIENCE, "ttl_seconds": TTL_SECONDS},
        "kms_calls_per_mint": "2: the receipt (stage kms) and the audit checkpoint, signed "
        "inside the audit log lock (stage audit)",
        "audit": "local file, fsync per record (mint.audit.AuditLog)",
        "guard": BENCH_GUARD_ENVIRONMENT,
        "mint_policy": "off (no ZTMINT_OPA_URL)",
        "variants": results,
    }
    return write_result("mint-kms", document)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the mint benchmark and write bench/results/mint-<date>.json or mint-kms-<date>.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.mint", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run only 3-of-5 with attestation, at 50/s and 300/s; with --kms, run 3 s per rate",
    )
    parser.add_argument(
        "--kms",
        nargs="+",
        choices=sorted(KMS_VARIANTS),
        metavar="{local,oci-2ms,oci-60ms}",
        help="run 3-of-5 attested at 10/s and 50/s with each KMS: the local key, or OCI KMS "
        "behind a mock that adds 2 ms or 60 ms to every sign call",
    )
    args = parser.parse_args(argv)

    if args.kms:
        path = bench_kms([KMS_VARIANTS[name] for name in args.kms], args.quick)
        print(f"wrote {path}")
        return 0

    plans = PLANS
    if args.quick:
        plans = (MeshPlan(5, 3, AttestationMode.DEVELOPMENT, SHORT_RUNS),)
    OUT.mkdir(parents=True, exist_ok=True)
    state_root = OUT / "mint-state"
    started = time.time()
    # Read now, so load_average_at_start is the load before this run added its own.
    machine = machine_description()
    meshes = {}
    for plan in plans:
        print(f"{plan.name}: starting", flush=True)
        try:
            meshes[plan.name] = bench_mesh(plan, state_root)
        except BenchError as exc:
            meshes[plan.name] = {"error": str(exc)}
            print(f"{plan.name}: failed: {exc}", flush=True)

    document = {
        "kind": "mint",
        "started_at": int(started),
        "elapsed_s": round(time.time() - started, 1),
        "machine": machine,
        "authenticators": AUTHENTICATORS,
        "request": {"scopes": SCOPES, "audience": AUDIENCE, "ttl_seconds": TTL_SECONDS},
        "kms": "local P-256 key (mint.kms.LocalKms)",
        "audit": "local file, fsync per record (mint.audit.AuditLog)",
        "guard": BENCH_GUARD_ENVIRONMENT,
        "mint_policy": "off (no ZTMINT_OPA_URL)",
        "meshes": meshes,
    }
    path = write_result("mint", document)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
