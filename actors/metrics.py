"""Metrics of the signer mesh, exported through Ray's metrics agent to Prometheus.

``MeshMetrics`` is what the coordinator and signer logic report to. ``NoMetrics`` drops every
value (unit tests, tools), and ``RayMeshMetrics`` records them with ``ray.util.metrics``,
which Ray serves on each node's metrics export port with a ``ray_`` prefix (Ray 2.x,
"Adding Application-Level Metrics").

    ztmint_signer_pool_depth{signer}              gauge: unused nonces (commitments)
    ztmint_signer_up{signer,fault_domain}         gauge: 1 up, 0 down or excluded
    ztmint_mint_signing_seconds                   histogram: sign_token wall time
    ztmint_signer_failures_total{signer,reason}   counter: failed signer calls by reason
"""

from __future__ import annotations

from typing import Any, Protocol

SIGNING_SECONDS_BOUNDARIES = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


class MeshMetrics(Protocol):
    """Sink of the mesh's metrics."""

    def pool_depth(self, signer: int, depth: int) -> None:
        """Record the number of unused commitments of ``signer``."""
        ...

    def signer_up(self, signer: int, fault_domain: str | None, up: bool) -> None:
        """Record whether ``signer`` can be chosen for a mint."""
        ...

    def signing_seconds(self, seconds: float) -> None:
        """Record the duration of one successful ``sign_token``."""
        ...

    def signer_failure(self, signer: int, reason: str) -> None:
        """Count one failed call of ``signer``, with a stable ``reason`` code."""
        ...


class NoMetrics:
    """Drops every value."""

    def pool_depth(self, signer: int, depth: int) -> None:
        """Drop the value."""

    def signer_up(self, signer: int, fault_domain: str | None, up: bool) -> None:
        """Drop the value."""

    def signing_seconds(self, seconds: float) -> None:
        """Drop the value."""

    def signer_failure(self, signer: int, reason: str) -> None:
        """Drop the value."""


class RayMeshMetrics:
    """Records mesh metrics with ``ray.util.metrics``; create it inside a Ray worker."""

    def __init__(self) -> None:
        from ray.util import metrics

        self._pool_depth: Any = metrics.Gauge(
            "ztmint_signer_pool_depth",
            description="Unused nonces (published commitments) of a signer.",
            tag_keys=("signer",),
        )
        self._up: Any = metrics.Gauge(
            "ztmint_signer_up",
            description="1 when the coordinator can choose the signer for a mint, else 0.",
            tag_keys=("signer", "fault_domain"),
        )
        self._signing_seconds: Any = metrics.Histogram(
            "ztmint_mint_signing_seconds",
            description="Seconds the coordinator spent producing one token signature.",
            boundaries=SIGNING_SECONDS_BOUNDARIES,
        )
        self._failures: Any = metrics.Counter(
            "ztmint_signer_failures_total",
            description="Failed signer calls during signing, by stable reason code.",
            tag_keys=("signer", "reason"),
        )

    def pool_depth(self, signer: int, depth: int) -> None:
        """Set ``ztmint_signer_pool_depth``."""
        self._pool_depth.set(depth, tags={"signer": str(signer)})

    def signer_up(self, signer: int, fault_domain: str | None, up: bool) -> None:
        """Set ``ztmint_signer_up``."""
        tags = {"signer": str(signer), "fault_domain": fault_domain or "none"}
        self._up.set(1 if up else 0, tags=tags)

    def signing_seconds(self, seconds: float) -> None:
        """Observe ``ztmint_mint_signing_seconds``."""
        self._signing_seconds.observe(seconds)

    def signer_failure(self, signer: int, reason: str) -> None:
        """Increment ``ztmint_signer_failures_total``."""
        self._failures.inc(1, tags={"signer": str(signer), "reason": reason})
