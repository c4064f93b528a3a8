"""Processes, load generators and their reports, shared by the authz and mint benchmarks.

Every server started here listens on 127.0.0.1 on a port picked by binding port 0, and every
load run is bounded by a duration, so a benchmark cannot send traffic anywhere else or run on
without end. Report parsing is pure and tested in tests/unit/bench/.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".bin"
OUT = REPO / "bench" / "out"
RESULTS = REPO / "bench" / "results"
NS_PER_MS = 1_000_000


class BenchError(RuntimeError):
    """A benchmark could not run: a server did not start or a load generator failed."""


@dataclass(frozen=True)
class LoadResult:
    """The outcome of one load run, in the units the result files use.

    Attributes:
        requested_rate: requests per second requested, or 0 for a run at maximum rate.
        requests: requests sent.
        p50_ms, p95_ms, p99_ms: latency percentiles in milliseconds.
        error_ratio: failed requests over requests sent, 0.0 to 1.0.
        throughput: successful requests per second.
        errors: up to five distinct error texts, to tell what failed.
    """

    requested_rate: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_ratio: float
    throughput: float
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON object."""
        return {**asdict(self), "errors": list(self.errors)}


def parse_vegeta_report(text: str, requested_rate: float) -> LoadResult:
    """Read the output of ``vegeta report -type=json`` (vegeta v12.13.0).

    vegeta counts a response as a success when its status is 2xx or 3xx. Its latencies are
    in nanoseconds, and ``throughput`` counts successful requests per second.

    Raises:
        BenchError: when the text is not a vegeta JSON report.
    """
    try:
        report = json.loads(text)
        latencies = report["latencies"]
        requests = int(report["requests"])
        success = float(report["success"])
        return LoadResult(
            requested_rate=requested_rate,
            requests=requests,
            p50_ms=latencies["50th"] / NS_PER_MS,
            p95_ms=latencies["95th"] / NS_PER_MS,
            p99_ms=latencies["99th"] / NS_PER_MS,
            error_ratio=round(1.0 - success, 6) if requests else 1.0,
            throughput=float(report["throughput"]),
            errors=tuple((report.get("errors") or [])[:5]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"vegeta report is not valid JSON with latencies: {exc}") from exc


def parse_ghz_report(text: str, requested_rate: float) -> LoadResult:
    """Read the output of ``ghz --format json`` (ghz v0.120.0).

    ghz gives latencies in nanoseconds in ``latencyDistribution`` and counts calls by gRPC
    status in ``statusCodeDistribution``. Every status other than OK is an error. A denied
    ext_authz check is an OK call, so the caller must check decisions separately.

    Raises:
        BenchError: when the text is not a ghz JSON report.
    """
    try:
        report = json.loads(text)
        count = int(report["count"])
        statuses: Mapping[str, int] = report.get("statusCodeDistribution") or {}
        ok = int(statuses.get("OK", 0))
        by_percent = {
            int(entry["percentage"]): float(entry["latency"])
            for entry in report.get("latencyDistribution") or []
        }
        total_seconds = float(report["total"]) / 1e9
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"ghz report is not valid JSON with counts: {exc}") from exc
    if count and not {50, 95, 99} <= by_percent.keys():
        raise BenchError("ghz report has no 50th, 95th and 99th latency percentiles")
    errors = tuple(
        f"{name}: {number}" for name, number in (report.get("errorDistribution") or {}).items()
    )
    return LoadResult(
        requested_rate=requested_rate,
        requests=count,
        p50_ms=by_percent.get(50, 0.0) / NS_PER_MS,
        p95_ms=by_percent.get(95, 0.0) / NS_PER_MS,
        p99_ms=by_percent.get(99, 0.0) / NS_PER_MS,
        error_ratio=round((count - ok) / count, 6) if count else 1.0,
        throughput=ok / total_seconds if total_seconds > 0 else 0.0,
        errors=errors[:5],
    )


def histogram_totals(text: str, metric: str, label: str) -> dict[str, tuple[float, float]]:
    """Read ``(sum, count)`` per value of ``label`` of a Prometheus histogram from /metrics text.

    Only the text exposition format's ``<metric>_sum{...}`` and ``<metric>_count{...}`` samples
    are read; series without ``label`` are skipped.
    """
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, column in (("_sum{", 0), ("_count{", 1)):
            if not line.startswith(metric + suffix):
                continue
            labels, _, value = line[len(metric) + len(suffix) :].rpartition("} ")
            for pair in labels.split(","):
                name, _, quoted = pair.partition("=")
                if name.strip() == label:
                    entry = totals.setdefault(quoted.strip().strip('"'), [0.0, 0.0])
                    entry[column] += float(value)
    return {key: (entry[0], entry[1]) for key, entry in totals.items()}


def mean_ms_between(
    before: Mapping[str, tuple[float, float]], after: Mapping[str, tuple[float, float]]
) -> dict[str, float]:
    """Return the mean in milliseconds of what each series observed between two readings."""
    means = {}
    for key, (total, count) in after.items():
        previous_total, previous_count = before.get(key, (0.0, 0.0))
        if count > previous_count:
            means[key] = round((total - previous_total) / (count - previous_count) * 1000, 3)
    return means


def run_vegeta(
    targets: Path, rate: float, duration_s: float, max_workers: int = 64, timeout_s: float = 5.0
) -> LoadResult:
    """Attack the JSON ``targets`` with vegeta and return its report.

    Args:
        targets: a file of vegeta JSON targets, one per line, used round-robin.
        rate: requests per second; 0 sends as fast as ``max_workers`` allow.
        duration_s: how long to attack.
        max_workers: maximum concurrent requests.
        timeout_s: per-request timeout.
    """
    attack = [
        str(BIN / "vegeta"),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-rate={int(rate)}/s" if rate > 0 else "-rate=0",
        f"-duration={duration_s}s",
        f"-max-workers={max_workers}",
        f"-timeout={timeout_s}s",
    ]
    if rate > 0:
        attack.append(f"-workers={min(max_workers, 16)}")
    else:
        attack.append(f"-workers={max_workers}")
    results = OUT / "vegeta.bin"
    # One core for the load generator, so it leaves the other to the server on 2 cores.
    env = {**os.environ, "GOMAXPROCS": "1"}
    with results.open("wb") as sink:
        subprocess.run(attack, stdout=sink, check=True, timeout=duration_s + 60, env=env)  # noqa: S603
    report = subprocess.run(  # noqa: S603
        [str(BIN / "vegeta"), "report", "-type=json", str(results)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return parse_vegeta_report(report.stdout, rate)


def run_ghz(
    address: str,
    protoset: Path,
    call: str,
    data_file: Path,
    rate: float,
    duration_s: float,
    concurrency: int = 50,
    connections: int = 4,
) -> LoadResult:
    """Call a unary gRPC method with ghz for ``duration_s`` and return its report.

    Args:
        address: the server's ``host:port`` (plaintext).
        protoset: a FileDescriptorSet that describes ``call``.
        call: the fully qualified method, such as ``package.Service.Method``.
        data_file: a JSON array of request messages, sent round-robin.
        rate: calls per second; 0 calls as fast as ``concurrency`` workers allow.
        duration_s: how long to call.
        concurrency: request workers.
        connections: gRPC connections shared by the workers.
    """
    command = [
        str(BIN / "ghz"),
        "--insecure",
        f"--protoset={protoset}",
        f"--call={call}",
        f"--data-file={data_file}",
        f"--duration={duration_s}s",
        "--duration-stop=wait",
        f"--concurrency={concurrency}",
        f"--connections={connections}",
        "--timeout=5s",
        "--format=json",
        "--cpus=1",
        address,
    ]
    if rate > 0:
        command.insert(1, f"--rps={int(rate)}")
    completed = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, timeout=duration_s + 60
    )
    if completed.returncode != 0 and not completed.stdout:
        raise BenchError(f"ghz failed with exit code {completed.returncode}: {completed.stderr}")
    return parse_ghz_report(completed.stdout, rate)


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        BenchError: when ``process`` exits first or ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"nothing listened on 127.0.0.1:{port} within {timeout_s} s")


class Service:
    """A server process started for a benchmark, its output in ``bench/out/<name>.log``."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None
    ) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = OUT / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            list(command),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO,
        )

    def stop(self) -> None:
        """Stop the process with SIGTERM, then SIGKILL after five seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


class RssSampler:
    """Samples the resident set size of some processes every ``interval_s`` and keeps the peak.

    The sampler runs in a daemon thread between ``start`` and ``stop``. A process that has
    exited is skipped.
    """

    def __init__(self, pids: Sequence[int], interval_s: float = 0.2) -> None:
        self._processes = [psutil.Process(pid) for pid in pids]
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_bytes: dict[int, int] = {pid: 0 for pid in pids}

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self._processes:
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.peak_bytes[process.pid] = max(self.peak_bytes[process.pid], rss)
            self._stop.wait(self._interval_s)

    def start(self) -> RssSampler:
        """Start sampling and return self."""
        self._thread.start()
        return self

    def stop(self) -> dict[int, int]:
        """Stop sampling and return the peak RSS in bytes by pid."""
        self._stop.set()
        self._thread.join(timeout=5)
        return dict(self.peak_bytes)


def machine_description() -> dict[str, Any]:
    """Describe the machine a result was measured on: cores, CPU model, memory, load."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": psutil.virtual_memory().total,
        "load_average_at_start": os.getloadavg(),
    }


def write_result(prefix: str, document: Mapping[str, Any]) -> Path:
    """Write ``document`` to ``bench/results/<prefix>-<UTC date>.json`` and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}-{time.strftime('%Y-%m-%d', time.gmtime())}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path
