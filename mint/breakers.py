"""Circuit breakers of the mint: per identity, and one for the whole mint.

An identity's breaker opens for ``cooldown_seconds`` when, within ``window_seconds``, the
identity collects ``max_refusals`` policy refusals or is denied ``max_denied_scopes``
distinct scopes (scope probing). The global breaker opens for ``global_cooldown_seconds``
when admitting one more mint would make more than ``global_max_mints`` mints within
``global_window_seconds``, a rate far above normal use that suggests abuse or a runaway
client. The breakers are pure state machines: time is passed in, and every trip and reset is
returned as a ``Transition`` for the caller to audit and count.

Limitations:
    The state lives in the memory of one mint process, so each replica counts on its own and
    a restart closes every breaker. Only refusals made after the assertion verified count
    against an identity: otherwise anyone could open another engineer's breaker by sending
    bad assertions for their challenges.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

GLOBAL_KEY = "*"


class BreakerKind(StrEnum):
    """Breaker kind: one per identity, or the global one."""

    IDENTITY = "identity"
    GLOBAL = "global"


class TransitionKind(StrEnum):
    """A breaker opening (trip) or closing again after its cool-down (reset)."""

    TRIP = "trip"
    RESET = "reset"


@dataclass(frozen=True)
class BreakerLimits:
    """Thresholds and cool-downs of the breakers.

    Attributes:
        window_seconds: sliding window in which an identity's refusals are counted.
        max_refusals: refusals within the window that open an identity's breaker.
        max_denied_scopes: distinct denied scopes within the window that open it.
        cooldown_seconds: how long an identity's breaker stays open.
        global_window_seconds: sliding window of the global mint count.
        global_max_mints: mints allowed within the global window; one more opens the breaker.
        global_cooldown_seconds: how long the global breaker stays open.
    """

    window_seconds: int = 300
    max_refusals: int = 10
    max_denied_scopes: int = 5
    cooldown_seconds: int = 900
    global_window_seconds: int = 10
    global_max_mints: int = 200
    global_cooldown_seconds: int = 60

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"breaker setting {name} is {value}; expected at least 1")


@dataclass(frozen=True)
class Transition:
    """A breaker trip or reset, for the audit log and the metrics.

    Attributes:
        breaker: identity or global.
        kind: trip or reset.
        key: the identity, or ``GLOBAL_KEY``.
        at: time of the transition, seconds since the epoch.
        open_until: when a tripped breaker closes; equal to ``at`` for a reset.
        cause: why it tripped (``refusals``, ``denied_scopes``, ``mint_rate``) or ``cooldown``.
    """

    breaker: BreakerKind
    kind: TransitionKind
    key: str
    at: float
    open_until: float
    cause: str


@dataclass
class _IdentityState:
    refusals: deque[float] = field(default_factory=deque)
    denied_scopes: dict[str, float] = field(default_factory=dict)
    open_until: float | None = None


class Breakers:
    """The per-identity breakers and the global breaker of one mint process (thread-safe).

    Args:
        limits: thresholds and cool-downs.
    """

    def __init__(self, limits: BreakerLimits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._identities: dict[str, _IdentityState] = {}
        self._mints: deque[float] = deque()
        self._global_open_until: float | None = None

    def open_count(self) -> dict[BreakerKind, int]:
        """Return how many breakers of each kind are open (as of the last check)."""
        with self._lock:
            identities = sum(1 for s in self._identities.values() if s.open_until is not None)
            return {
                BreakerKind.IDENTITY: identities,
                BreakerKind.GLOBAL: int(self._global_open_until is not None),
            }

    def close_expired(self, now: float) -> list[Transition]:
        """Close every breaker whose cool-down ended by ``now`` and return the resets."""
        resets: list[Transition] = []
        with self._lock:
            for key, state in self._identities.items():
                if state.open_until is not None and now >= state.open_until:
                    state.open_until = None
                    state.refusals.clear()
                    state.denied_scopes.clear()
                    resets.append(_reset(BreakerKind.IDENTITY, key, now))
            if self._global_open_until is not None and now >= self._global_open_until:
                self._global_open_until = None
                self._mints.clear()
                resets.append(_reset(BreakerKind.GLOBAL, GLOBAL_KEY, now))
            self._forget_idle(now)
        return resets

    def identity_open_until(self, identity: str) -> float | None:
        """Return when the identity's breaker closes, or None when it is closed."""
        with self._lock:
            state = self._identities.get(identity)
            return None if state is None else state.open_until

    def global_open_until(self) -> float | None:
        """Return when the global breaker closes, or None when it is closed."""
        with self._lock:
            return self._global_open_until

    def record_refusal(
        self, identity: str, denied_scopes: Iterable[str], now: float
    ) -> Transition | None:
        """Count a refusal of ``identity`` and its denied scopes; return a trip if one happens."""
        limits = self._limits
        with self._lock:
            state = self._identities.setdefault(identity, _IdentityState())
            if state.open_until is not None:
                return None
            state.refusals.append(now)
            for scope in denied_scopes:
                state.denied_scopes[scope] = now
            horizon = now - limits.window_seconds
            while state.refusals and state.refusals[0] <= horizon:
                state.refusals.popleft()
            state.denied_scopes = {s: t for s, t in state.denied_scopes.items() if t > horizon}

            if len(state.refusals) >= limits.max_refusals:
                cause = "refusals"
            elif len(state.denied_scopes) >= limits.max_denied_scopes:
                cause = "denied_scopes"
            else:
                return None
            state.open_until = now + limits.cooldown_seconds
            return Transition(
                BreakerKind.IDENTITY, TransitionKind.TRIP, identity, now, state.open_until, cause
            )

    def admit_mint(self, now: float) -> Transition | None:
        """Count one mint against the global window; return a trip instead when it is full.

        The caller rejects the mint when a trip is returned or the breaker is already open.
        """
        limits = self._limits
        with self._lock:
            if self._global_open_until is not None:
                return None
            horizon = now - limits.global_window_seconds
            while self._mints and self._mints[0] <= horizon:
                self._mints.popleft()
            if len(self._mints) < limits.global_max_mints:
                self._mints.append(now)
                return None
            self._global_open_until = now + limits.global_cooldown_seconds
            return Transition(
                BreakerKind.GLOBAL,
                TransitionKind.TRIP,
                GLOBAL_KEY,
                now,
                self._global_open_until,
                "mint_rate",
            )

    def _forget_idle(self, now: float) -> None:
        # Called under the lock: drop closed identities with nothing left in their window,
        # so the table does not grow with every identity ever seen.
        horizon = now - self._limits.window_seconds
        idle = [
            key
            for key, state in self._identities.items()
            if state.open_until is None
            and all(t <= horizon for t in state.refusals)
            and all(t <= horizon for t in state.denied_scopes.values())
        ]
        for key in idle:
            del self._identities[key]


def _reset(breaker: BreakerKind, key: str, now: float) -> Transition:
    return Transition(breaker, TransitionKind.RESET, key, now, now, "cooldown")
