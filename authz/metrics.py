"""Prometheus metrics of the token and decision caches, read from their tallies at scrape time.

Exported per cache (label ``cache`` is ``token`` or ``decision``; a cache turned off with
size 0 exports nothing):

- ``ztmint_authz_cache_lookups_total{cache, result}``: lookups, ``result`` is hit or miss.
- ``ztmint_authz_cache_hit_ratio{cache}``: hits / (hits + misses) since the process started.
  For a recent ratio, compute it from the counter instead:
  ``sum by (cache) (rate(ztmint_authz_cache_lookups_total{result="hit"}[5m]))
  / sum by (cache) (rate(ztmint_authz_cache_lookups_total[5m]))``.
- ``ztmint_authz_cache_entries{cache}``: entries held now.
- ``ztmint_authz_decision_cache_flushes_total``: times the decision cache was emptied because
  the bundle revision changed or could not be read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from authz.cache import DecisionCache, TokenCache


class CacheCollector(Collector):
    """Exports the lookup tallies and sizes of the caches given by name.

    Args:
        caches: cache name (the ``cache`` label) to cache, or to None for a cache turned off.
    """

    def __init__(self, caches: Mapping[str, TokenCache | DecisionCache | None]) -> None:
        self._caches = {name: cache for name, cache in caches.items() if cache is not None}

    def collect(self) -> Iterator[Metric]:
        """Yield the current values; called by the registry on every scrape."""
        lookups = CounterMetricFamily(
            "ztmint_authz_cache_lookups",
            "Cache lookups, by cache (token or decision) and result (hit or miss).",
            labels=["cache", "result"],
        )
        ratio = GaugeMetricFamily(
            "ztmint_authz_cache_hit_ratio",
            "Cache hits divided by lookups since the process started.",
            labels=["cache"],
        )
        entries = GaugeMetricFamily(
            "ztmint_authz_cache_entries", "Entries held in the cache.", labels=["cache"]
        )
        flushes = CounterMetricFamily(
            "ztmint_authz_decision_cache_flushes",
            "Times the decision cache was emptied for a new or unreadable bundle revision.",
        )
        for name, cache in self._caches.items():
            lookups.add_metric([name, "hit"], cache.stats.hits)
            lookups.add_metric([name, "miss"], cache.stats.misses)
            ratio.add_metric([name], cache.stats.hit_ratio())
            entries.add_metric([name], len(cache))
            if isinstance(cache, DecisionCache):
                flushes.add_metric([], cache.flushes)
        yield lookups
        yield ratio
        yield entries
        if any(isinstance(cache, DecisionCache) for cache in self._caches.values()):
            yield flushes
