"""Single-use tokens: reject a token's ``jti`` the second time it is presented to an audience.

RFC 7519 section 4.1.7 makes ``jti`` unique per token so that a recipient can prevent replay.
For audiences configured as single-use, the decision core claims the jti here after the
policy has allowed the request. The first claim wins, and any later request with that jti is
rejected with ``token_replayed`` until the token's ``exp``, after which verification rejects
the token anyway and the entry can go.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable

from authz.errors import AuthzError, Reason


class ReplayGuard:
    """A bounded set of seen ``jti`` values, each kept until its token's ``exp``.

    Args:
        audiences: the audiences whose tokens are single-use.
        max_entries: the maximum number of unexpired jti values kept. Must be > 0.
        leeway: seconds past ``exp`` during which the verifier still accepts a token, so an
            entry has to stay that much longer.

    Security:
        When the set is full of unexpired entries, a new jti is rejected with
        ``replay_cache_full`` rather than an old entry dropped, because dropping one would let
        that token be replayed. Size ``max_entries`` above the number of single-use tokens
        one audience receives per maximum token lifetime.

    Limitations:
        The set lives in this process. Two authz replicas for one audience each accept the
        token once, so single-use applies per replica, not per service.
    """

    def __init__(self, audiences: Iterable[str], max_entries: int, leeway: int) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.audiences = frozenset(audiences)
        self._max_entries = max_entries
        self._leeway = leeway
        self._forget_at: dict[str, int] = {}
        self._expiry_heap: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._forget_at)

    def applies_to(self, audience: str) -> bool:
        """Return whether tokens for ``audience`` are single-use."""
        return audience in self.audiences

    def claim(self, jti: str, exp: int, now: int) -> None:
        """Record the first use of ``jti`` and reject any later one.

        Raises:
            AuthzError: ``token_replayed`` when ``jti`` was claimed before and its token has
                not expired; ``replay_cache_full`` when no room is left.
        """
        with self._lock:
            self._forget_expired(now)
            if jti in self._forget_at:
                raise AuthzError(Reason.TOKEN_REPLAYED, f"jti {jti!r} was already used")
            if len(self._forget_at) >= self._max_entries:
                raise AuthzError(
                    Reason.REPLAY_CACHE_FULL,
                    f"replay cache holds {self._max_entries} unexpired jti values;"
                    " raise --replay-cache-size",
                )
            forget_at = exp + self._leeway
            self._forget_at[jti] = forget_at
            heapq.heappush(self._expiry_heap, (forget_at, jti))

    def _forget_expired(self, now: int) -> None:
        while self._expiry_heap and self._expiry_heap[0][0] <= now:
            _, jti = heapq.heappop(self._expiry_heap)
            self._forget_at.pop(jti, None)
