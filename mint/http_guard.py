"""Admission of HTTP requests before any route runs: a per-client rate limit and a body limit.

``RequestAdmission`` is an ASGI middleware in front of the whole mint app. For every request
that may carry a body (any method but GET, HEAD and OPTIONS) it

1. takes a token from the client address's bucket (``ClientRateLimiter``), or else rejects
   the request with 429 ``rate_limited`` and ``Retry-After``;
2. rejects a ``Content-Length`` above the limit with 413 ``request_too_large`` without reading
   the body, and otherwise reads the body while counting its bytes, so a chunked body that
   grows past the limit is rejected as soon as it does. The app then reads the buffered body.

``RejectionSampler`` decides which rejections of the HTTP layer get their own audit record.
The first few of each (client, operation, reason) in a minute do. The rest are counted into
one summary record, so a flood of bad requests cannot grow the audit log without limit.

Limitations:
    Buckets and counts live in the memory of one process, so each replica limits on its own
    and a restart forgets them. The client address is the TCP peer that uvicorn reports:
    behind a proxy every request shares the proxy's bucket unless uvicorn is started with
    ``--proxy-headers`` and the proxy's address in ``--forwarded-allow-ips``. When more than
    ``max_clients`` addresses are tracked, the least recently seen bucket is dropped, so an
    attacker with that many addresses can reset a bucket. A window's summary record is written
    at the first HTTP-layer rejection after the window ends, so the count of the last window
    before the process stops is lost.
"""

from __future__ import annotations

import json
import re
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from mint.errors import MintReason
from mint.limits import RateDecision, RateLimit, seconds_until_token

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_CLIENTS = 10_000
REQUEST_ID_HEADER = "x-request-id"
_CLIENT_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._-]{1,64}\Z")
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DRAIN_BYTES = 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
RejectHook = Callable[[str, str, MintReason], None]
"""Called as ``(client address, path, reason)`` for every request this middleware rejects."""


class ClientRateLimiter:
    """Token buckets keyed by client address, held in memory (a pure class; time is passed in).

    Args:
        limit: capacity and refill rate of each bucket.
        max_clients: buckets kept at most; the least recently used one is dropped beyond it.
    """

    def __init__(self, limit: RateLimit, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self._limit = limit
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str, now: float) -> RateDecision:
        """Take one token from ``client``'s bucket, refilled for the time since its last use."""
        tokens, updated = self._buckets.pop(client, (float(self._limit.burst), now))
        elapsed = max(0.0, now - updated)
        tokens = min(float(self._limit.burst), tokens + elapsed * self._limit.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        retry_after = 0 if allowed else seconds_until_token(tokens, self._limit)
        return RateDecision(allowed, tokens, retry_after)


@dataclass(frozen=True)
class RejectionSummary:
    """How many rejections of one kind were counted but not audited one by one.

    Attributes:
        key: ``(client address, operation, reason)``.
        suppressed: rejections in the window beyond the first ``per_window``.
        window_start: seconds since the epoch when the window began.
        window_seconds: the window's length.
    """

    key: tuple[str, str, str]
    suppressed: int
    window_start: float
    window_seconds: float


class RejectionSampler:
    """Choose which repeated rejections get their own audit record (time is passed in).

    Args:
        per_window: rejections of one key recorded one by one in each window.
        window_seconds: length of a window, starting at the first rejection of the key.
        max_keys: windows kept at most; the oldest is closed early beyond it.
    """

    def __init__(
        self, per_window: int = 10, window_seconds: float = 60.0, max_keys: int = 10_000
    ) -> None:
        self._per_window = per_window
        self._window_seconds = window_seconds
        self._max_keys = max_keys
        # Insertion order is window start order, so closed windows are at the front.
        self._windows: OrderedDict[tuple[str, str, str], list[float]] = OrderedDict()

    def observe(self, key: tuple[str, str, str], now: float) -> tuple[bool, list[RejectionSummary]]:
        """Count one rejection of ``key``.

        Returns:
            Whether to audit this rejection on its own, and the summaries of windows that
            closed and had suppressed rejections; audit each summary as one record.
        """
        summaries = self._close_windows(now)
        window = self._windows.get(key)
        if window is None:
            window = [now, 0.0, 0.0]
            self._windows[key] = window
        window[1] += 1
        if window[1] <= self._per_window:
            return True, summaries
        window[2] += 1
        return False, summaries

    def _close_windows(self, now: float) -> list[RejectionSummary]:
        summaries = []
        while self._windows:
            key, (start, _, suppressed) = next(iter(self._windows.items()))
            full = len(self._windows) > self._max_keys
            if now < start + self._window_seconds and not full:
                break
            del self._windows[key]
            if suppressed:
                summaries.append(
                    RejectionSummary(key, int(suppressed), start, self._window_seconds)
                )
        return summaries


class RequestAdmission:
    """ASGI middleware applying the per-client rate limit and the body size limit.

    Args:
        app: the ASGI app behind it.
        max_body_bytes: the largest body accepted, in bytes.
        limiter: the per-client rate limiter, or None for no rate limit.
        clock: current time in seconds since the epoch.
        on_reject: called for every rejection, to audit and count it.
    """

    def __init__(
        self,
        app: Asgi,
        *,
        max_body_bytes: int,
        limiter: ClientRateLimiter | None,
        clock: Callable[[], float],
        on_reject: RejectHook,
    ) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes
        self._limiter = limiter
        self._clock = clock
        self._on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODYLESS_METHODS:
            await self._app(scope, receive, send)
            return
        client = _client_address(scope)
        if self._limiter is not None:
            decision = self._limiter.take(client, self._clock())
            if not decision.allowed:
                if not await _drain(receive, more_body=True):
                    return
                text = f"too many requests from {client}; retry after {decision.retry_after} s"
                await self._reject(scope, send, client, MintReason.RATE_LIMITED, text, 429,
                                   {"retry-after": str(decision.retry_after)})  # fmt: skip
                return
        declared = _content_length(scope)
        if declared is not None and declared > self._max_body_bytes:
            await self._reject_too_large(scope, receive, send, client, more_body=True)
            return
        body = bytearray()
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] != "http.request":
                return
            body.extend(message.get("body", b""))
            more_body = bool(message.get("more_body", False))
            if len(body) > self._max_body_bytes:
                await self._reject_too_large(scope, receive, send, client, more_body=more_body)
                return
        await self._app(scope, _replay(bytes(body), receive), send)

    async def _reject_too_large(
        self, scope: Scope, receive: Receive, send: Send, client: str, *, more_body: bool
    ) -> None:
        if not await _drain(receive, more_body=more_body):
            return
        message = (
            f"request body is larger than {self._max_body_bytes} bytes; "
            "send a smaller body (the limit is ZTMINT_MAX_BODY_BYTES)"
        )
        await self._reject(scope, send, client, MintReason.REQUEST_TOO_LARGE, message, 413, {})

    async def _reject(
        self,
        scope: Scope,
        send: Send,
        client: str,
        reason: MintReason,
        message: str,
        status: int,
        extra_headers: dict[str, str],
    ) -> None:
        self._on_reject(client, scope.get("path", ""), reason)
        supplied = _header(scope, REQUEST_ID_HEADER) or ""
        request_id = supplied if _CLIENT_REQUEST_ID.match(supplied) else uuid.uuid4().hex
        body = json.dumps({"error": reason.value, "message": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER.encode(), request_id.encode()),
            (b"connection", b"close"),
            *((name.encode(), value.encode()) for name, value in extra_headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _drain(receive: Receive, *, more_body: bool) -> bool:
    """Read and drop the rest of a rejected request's body, up to ``_DRAIN_BYTES``.

    Closing a socket with unread bytes makes the kernel send a reset, and most clients then
    report the reset rather than the rejection. A larger body is cut off, and its client may
    see only the reset. Returns False when the client disconnected.
    """
    drained = 0
    while more_body and drained <= _DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return False
        drained += len(message.get("body", b""))
        more_body = bool(message.get("more_body", False))
    return True


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that yields the buffered body once, then the real messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _header(scope: Scope, name: str) -> str | None:
    target = name.encode()
    for key, value in scope.get("headers", ()):
        if key.lower() == target:
            return bytes(value).decode("latin-1")
    return None


def _content_length(scope: Scope) -> int | None:
    text = _header(scope, "content-length")
    if text is None or not text.strip().isdigit():
        return None
    return int(text)
