"""Bounded caches in front of the two expensive steps of a check: verification and OPA.

``TokenCache`` remembers (token, receipt) pairs that passed ``verify_token`` and
``verify_receipt``, so a client that sends the same credentials again skips the Ed25519 and
ES256 checks. ``DecisionCache`` remembers OPA's decision for one (method, path, scopes, sub,
aud) under one policy bundle revision. Both are plain classes that take the time as an
argument, so the decision core stays testable with a fake clock. Both are safe to call from
several threads.

Limitations:
    Each process has its own caches, and a restart empties them.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from authz.errors import AuthzError
from authz.keys import KeySet
from authz.opa import PolicyDecision
from authz.verify import VerifiedReceipt, VerifiedToken, check_token_time


@dataclass
class CacheStats:
    """Lookup tallies of one cache since it was created.

    Attributes:
        hits: lookups that returned an entry.
        misses: lookups that found no usable entry.
    """

    hits: int = 0
    misses: int = 0

    def hit_ratio(self) -> float:
        """Return hits / (hits + misses), or 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def credentials_cache_key(token: str, receipt: str) -> bytes:
    """Return the cache key of a (token, receipt) pair: SHA-256 of their length-prefixed bytes.

    The key is SHA-256 over ``u64be(len(token)) || token || receipt`` (UTF-8). The length
    prefix makes the encoding injective, so two different pairs give two different byte
    strings, and two different pairs share a key only through a SHA-256 collision. The
    verifier accepts one spelling of each token and receipt (canonical base64url, strict
    JSON), so a verified pair has exactly one key and a re-encoded copy is a different,
    unverified pair that takes the slow path.
    """
    token_bytes = token.encode("utf-8", errors="surrogatepass")
    receipt_bytes = receipt.encode("utf-8", errors="surrogatepass")
    prefix = struct.pack(">Q", len(token_bytes))
    return hashlib.sha256(prefix + token_bytes + receipt_bytes).digest()


@dataclass(frozen=True)
class _VerifiedPair:
    token: VerifiedToken = field(repr=False)
    receipt: VerifiedReceipt
    group_public_key: bytes = field(repr=False)
    receipt_public_key: ec.EllipticCurvePublicKey = field(repr=False)


class TokenCache:
    """A bounded LRU of verified (token, receipt) pairs, keyed by ``credentials_cache_key``.

    An entry is used only while the token is before its ``exp`` and while the current key set
    still contains the same group key and the same, not retired, receipt key that verified it.
    Otherwise the entry is dropped and the caller verifies from scratch, which gives the same
    result an uncached verifier gives. On every hit the time claims are checked again against
    ``now`` with the leeway (``check_token_time``).

    Args:
        max_entries: the maximum number of pairs kept, at least 1. The least recently used
            pair is dropped first.

    Security:
        ``lookup`` must receive the exact header strings and ``store`` only pairs that passed
        ``verify_token`` and ``verify_receipt`` with the same audience and issuer as the
        caller checks. The cache does not check audience or issuer again.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, _VerifiedPair] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(
        self, token: str, receipt: str, keys: KeySet, now: int, leeway: int
    ) -> VerifiedToken | None:
        """Return the verified token of a cached pair, or None on a miss.

        Raises:
            AuthzError: ``token_not_yet_valid`` when the cached token's ``nbf`` or ``iat`` is
                ahead of ``now`` (a clock that stepped back).
        """
        key = credentials_cache_key(token, receipt)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and not _pair_is_usable(entry, keys, now):
                del self._entries[key]
                entry = None
            if entry is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
        check_token_time(entry.token, now, leeway)
        return entry.token

    def store(
        self,
        token: str,
        receipt: str,
        verified_token: VerifiedToken,
        verified_receipt: VerifiedReceipt,
        keys: KeySet,
    ) -> None:
        """Remember a pair that has just passed verification with ``keys``."""
        entry = _VerifiedPair(
            token=verified_token,
            receipt=verified_receipt,
            group_public_key=keys.group_key(verified_token.kid).public_key,
            receipt_public_key=keys.receipt_key(verified_receipt.kid).public_key,
        )
        key = credentials_cache_key(token, receipt)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)


def _pair_is_usable(entry: _VerifiedPair, keys: KeySet, now: int) -> bool:
    if now >= entry.token.exp:
        return False
    group_key = keys.group_keys.get(entry.token.kid)
    if group_key is None or group_key.public_key != entry.group_public_key:
        return False
    receipt_key = keys.receipt_keys.get(entry.receipt.kid)
    if receipt_key is None or receipt_key.retired_at is not None:
        return False
    return bool(receipt_key.public_key == entry.receipt_public_key)


@dataclass(frozen=True)
class DecisionKey:
    """What a policy decision depends on, besides the bundle revision.

    Attributes:
        method: the HTTP method.
        path: the normalised path (``authz.paths.normalize_path``).
        scopes: the token's scopes, sorted, because the policy reads them as a set.
        sub: the token's subject.
        aud: the token's audience.
    """

    method: str
    path: str
    scopes: tuple[str, ...]
    sub: str
    aud: str

    @classmethod
    def of(cls, method: str, path: str, scopes: tuple[str, ...], sub: str, aud: str) -> DecisionKey:
        """Build a key, sorting and de-duplicating ``scopes``."""
        return cls(method, path, tuple(sorted(set(scopes))), sub, aud)


class DecisionCache:
    """A bounded LRU of OPA decisions for one policy bundle revision.

    Every lookup and store names the revision it was made under. When the revision differs
    from the one the cache holds, the whole cache is emptied first, so no decision outlives
    the bundle that made it.

    Args:
        max_entries: the maximum number of decisions kept, at least 1. The least recently used
            decision is dropped first.

    Security:
        A cached decision is only as fresh as the revision it was stored under. The policy
        must decide from the input and the bundle alone (no ``http.send``, no ``time.now_ns``
        and no data pushed through OPA's Data API), or a cached decision can differ from OPA's.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self._max_entries = max_entries
        self._revision: str | None = None
        self._entries: OrderedDict[DecisionKey, PolicyDecision] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, revision: str, key: DecisionKey) -> PolicyDecision | None:
        """Return the decision stored for ``key`` under ``revision``, or None on a miss."""
        with self._lock:
            self._switch_revision(revision)
            decision = self._entries.get(key)
            if decision is None:
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return decision

    def store(self, revision: str, key: DecisionKey, decision: PolicyDecision) -> None:
        """Remember OPA's ``decision`` for ``key`` under ``revision``."""
        with self._lock:
            self._switch_revision(revision)
            self._entries[key] = decision
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Drop every decision, for when the revision cannot be read."""
        with self._lock:
            if self._entries:
                self.flushes += 1
            self._entries.clear()
            self._revision = None

    def _switch_revision(self, revision: str) -> None:
        if revision == self._revision:
            return
        if self._entries:
            self.flushes += 1
        self._entries.clear()
        self._revision = revision


class RevisionWatcher:
    """Reads the policy bundle revision from OPA at most once every ``interval`` seconds.

    Args:
        fetch: returns the current revision, such as ``OpaClient.bundle_revision``; raises
            ``AuthzError`` when OPA cannot be asked.
        clock: returns the current time in seconds.
        interval: seconds during which a revision read earlier is reused.

    Limitations:
        A new bundle can take up to ``interval`` seconds to empty the decision cache, so for
        that long a cached decision of the previous revision can still be returned.
    """

    def __init__(
        self, fetch: Callable[[], str], clock: Callable[[], float], interval: float
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._interval = interval
        self._revision: str | None = None
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> str | None:
        """Return the bundle revision, or None when it could not be read."""
        now = self._clock()
        with self._lock:
            # A failed read is reused too, so an OPA outage costs one failed read per interval.
            if now - self._read_at < self._interval:
                return self._revision
            try:
                self._revision = self._fetch()
            except AuthzError:
                self._revision = None
            self._read_at = now
            return self._revision
