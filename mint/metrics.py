"""Prometheus metrics of the mint, in a registry owned by one app instance.

Names:

- ``ztmint_mint_stage_seconds{stage}``: histogram of mint latency per stage; ``stage`` is
  ``webauthn``, ``policy``, ``signing``, ``kms`` or ``audit``.
- ``ztmint_mint_refusals_total{reason}``: rejected requests by reason code.
- ``ztmint_mint_rate_limited_total``: mints rejected by the per-identity rate limit.
- ``ztmint_mint_tokens_total``: tokens minted.
- ``ztmint_mint_breaker_open{breaker}``: open breakers, ``identity`` or ``global``.
- ``ztmint_mint_breaker_transitions_total{breaker,transition}``: breaker trips and resets.

No label carries an identity, scope or token, so the series count stays bounded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

STAGES = ("webauthn", "policy", "signing", "kms", "audit")
# Mint stages range from a millisecond (policy on loopback) to seconds (threshold signing
# across fault domains).
_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class MintMetrics:
    """The mint's metrics and the registry that contains them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stage_seconds = Histogram(
            "ztmint_mint_stage_seconds",
            "Mint latency per stage in seconds.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "ztmint_mint_refusals",
            "Requests rejected by the mint, by reason code.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "ztmint_mint_rate_limited",
            "Mints rejected by the per-identity rate limit.",
            registry=self.registry,
        )
        self.tokens = Counter("ztmint_mint_tokens", "Tokens minted.", registry=self.registry)
        self.breaker_open = Gauge(
            "ztmint_mint_breaker_open",
            "Open circuit breakers, by breaker kind.",
            ["breaker"],
            registry=self.registry,
        )
        self.breaker_transitions = Counter(
            "ztmint_mint_breaker_transitions",
            "Circuit breaker trips and resets.",
            ["breaker", "transition"],
            registry=self.registry,
        )

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block as mint stage ``name``, also when it raises."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        """Return the registry in the Prometheus text exposition format."""
        return generate_latest(self.registry)
