"""``ztmint token --browser``: mint through the mint's web page and receive the token locally.

The CLI listens once on ``127.0.0.1:<random port>``, opens the mint's page ``/ui/`` with
``callback=http://127.0.0.1:PORT/cb`` and a random ``state``, and waits. The engineer touches
the security key in the browser; the page mints the token and POSTs ``{state, token,
receipt, jti, expires_at}`` to the callback. The listener allows the CORS preflight for the
mint's origin only, checks the ``Origin`` and ``Host`` headers and the state, and stops after
the first accepted delivery or when the time-out passes.

Security:
    The state is 32 random bytes, compared in constant time, so another page or local
    process that finds the port cannot hand the CLI a token of its choosing. The mint
    serves the page only with a callback on 127.0.0.1 or localhost, the page checks it
    again, and the page's Content-Security-Policy lets it connect nowhere else. The token
    and receipt are never logged.

Limitations:
    Any local process can connect to the listener while it waits. Without the state it can
    only cause 4xx answers, which the listener logs at debug level and then ignores.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import urlencode, urlsplit

log = logging.getLogger(__name__)

CALLBACK_HOST = "127.0.0.1"
CALLBACK_PATH = "/cb"
DEFAULT_TIMEOUT_SECONDS = 300.0
MAX_BODY_BYTES = 64 * 1024
STATE_BYTES = 32
# Per-connection socket time-out, so a client that connects and sends nothing cannot hold
# the one-shot listener until the overall time-out.
CONNECTION_TIMEOUT_SECONDS = 10.0


class BrowserFlowError(Exception):
    """The browser flow failed; the message names the cause and the next step."""


class CallbackTimeout(BrowserFlowError):
    """No valid delivery reached the callback before the time-out."""


@dataclass(frozen=True)
class BrowserDelivery:
    """The token, receipt, jti and expiry that the page delivered to the callback.

    Security:
        ``token`` and ``receipt`` are bearer credentials; ``repr`` hides them.
    """

    token: str
    receipt: str
    jti: str
    expires_at: int

    def __repr__(self) -> str:
        return f"BrowserDelivery(jti={self.jti!r}, expires_at={self.expires_at}, <redacted>)"

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as the JSON object ``ztmint token --json`` prints."""
        return {
            "token": self.token,
            "receipt": self.receipt,
            "jti": self.jti,
            "expires_at": self.expires_at,
        }


def origin_of(url: str) -> str:
    """Return the origin (scheme://host[:port]) of ``url``, as a browser sends it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BrowserFlowError(f"mint URL {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def page_url(
    mint_url: str,
    callback_url: str,
    state: str,
    user: str,
    scopes: Sequence[str],
    audience: str,
    ttl_seconds: int,
) -> str:
    """Return the URL of the mint's page with the callback, state and prefilled request."""
    query = urlencode(
        {
            "callback": callback_url,
            "state": state,
            "user": user,
            "scope": " ".join(scopes),
            "aud": audience,
            "ttl": str(ttl_seconds),
        }
    )
    return f"{mint_url.rstrip('/')}/ui/?{query}"


def parse_delivery(body: bytes, expected_state: str) -> BrowserDelivery:
    """Parse and check the JSON the page POSTs to the callback.

    Raises:
        BrowserFlowError: when the body is not the expected JSON object or the state differs.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BrowserFlowError("callback body is not JSON") from None
    if not isinstance(data, dict):
        raise BrowserFlowError("callback body is not a JSON object")
    state = data.get("state")
    if not isinstance(state, str) or not hmac.compare_digest(
        state.encode(), expected_state.encode()
    ):
        raise BrowserFlowError("callback state does not match the state this CLI sent")
    strings = {name: data.get(name) for name in ("token", "receipt", "jti")}
    for name, value in strings.items():
        if not isinstance(value, str) or not value:
            raise BrowserFlowError(f"callback body has no {name} string")
    expires_at = data.get("expires_at")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int):
        raise BrowserFlowError("callback body has no integer expires_at")
    return BrowserDelivery(
        token=strings["token"],
        receipt=strings["receipt"],
        jti=strings["jti"],
        expires_at=expires_at,
    )


class _CallbackServer(HTTPServer):
    """One-shot loopback listener; ``delivery`` is set by the first valid POST."""

    def __init__(self, allowed_origin: str, state: str) -> None:
        super().__init__((CALLBACK_HOST, 0), _CallbackHandler)
        self.allowed_origin = allowed_origin
        self.state = state
        self.delivery: BrowserDelivery | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def callback_url(self) -> str:
        return f"http://{CALLBACK_HOST}:{self.port}{CALLBACK_PATH}"


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    timeout = CONNECTION_TIMEOUT_SECONDS

    def do_OPTIONS(self) -> None:  # noqa: N802 (http.server's method naming)
        if not self._request_allowed():
            return
        headers = {
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "60",
        }
        # A Private Network Access preflight (Chromium) sends Access-Control-Request-Private-Network
        # and expects this header in return.
        if self.headers.get("Access-Control-Request-Private-Network") == "true":
            headers["Access-Control-Allow-Private-Network"] = "true"
        self._respond(204, None, headers)

    def do_POST(self) -> None:  # noqa: N802 (http.server's method naming)
        if not self._request_allowed():
            return
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self._respond(413, {"error": "body missing or larger than 64 KiB"})
            return
        try:
            delivery = parse_delivery(self.rfile.read(int(length)), self.server.state)
        except BrowserFlowError as exc:
            log.debug("event=callback_rejected reason=%s", exc)
            self._respond(400, {"error": str(exc)})
            return
        self.server.delivery = delivery
        self._respond(200, {"status": "received"})

    def _request_allowed(self) -> bool:
        # The Host check defeats DNS rebinding; the Origin check limits callers to the page.
        expected_hosts = (f"{CALLBACK_HOST}:{self.server.port}", f"localhost:{self.server.port}")
        if self.path != CALLBACK_PATH:
            self._respond(404, {"error": "not found"}, cors=False)
            return False
        if self.headers.get("Host", "") not in expected_hosts:
            self._respond(421, {"error": "unexpected Host header"}, cors=False)
            return False
        if self.headers.get("Origin") != self.server.allowed_origin:
            self._respond(403, {"error": "origin not allowed"}, cors=False)
            return False
        return True

    def _respond(
        self,
        status: int,
        body: dict[str, str] | None,
        headers: dict[str, str] | None = None,
        *,
        cors: bool = True,
    ) -> None:
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if cors:
            self.send_header("Access-Control-Allow-Origin", self.server.allowed_origin)
            self.send_header("Vary", "Origin")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class name)
        # http.server writes every request line to stderr; requests are logged at debug
        # level instead, with the method and status only.
        log.debug("event=callback_request detail=%s", format % args)


def open_in_browser(url: str) -> None:
    """Open ``url`` in the default browser and print it, for when no browser opens."""
    print(
        f"Opening the mint page in your browser. If it does not open, visit:\n  {url}",
        file=sys.stderr,
    )
    if not webbrowser.open(url):
        print("No browser could be started; open the URL above by hand.", file=sys.stderr)


def receive_token(
    mint_url: str,
    user: str,
    scopes: Sequence[str],
    audience: str,
    ttl_seconds: int,
    *,
    launch: Callable[[str], None] = open_in_browser,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    random_state: Callable[[int], str] = secrets.token_urlsafe,
) -> BrowserDelivery:
    """Run the browser flow and return the token the page delivers to the callback.

    Args:
        mint_url: base URL of the mint; the page is served from its origin.
        user: user id prefilled on the page.
        scopes: scopes prefilled on the page.
        audience: audience prefilled on the page.
        ttl_seconds: lifetime prefilled on the page.
        launch: opens the page URL; tests pass a function that drives a browser.
        timeout_seconds: how long to wait for the delivery.
        clock: monotonic seconds, for the time-out.
        random_state: returns a URL-safe random string from a number of random bytes.

    Raises:
        CallbackTimeout: when no valid delivery arrives within ``timeout_seconds``.
        BrowserFlowError: when ``mint_url`` is not an http(s) URL.
    """
    allowed_origin = origin_of(mint_url)
    server = _CallbackServer(allowed_origin, random_state(STATE_BYTES))
    try:
        deadline = clock() + timeout_seconds
        launch(
            page_url(
                mint_url, server.callback_url, server.state, user, scopes, audience, ttl_seconds
            )
        )
        while server.delivery is None:
            remaining = deadline - clock()
            if remaining <= 0:
                raise CallbackTimeout(
                    f"no token arrived from the browser within {timeout_seconds:.0f} s; "
                    "run ztmint token --browser again and touch the security key on the page"
                )
            server.timeout = remaining
            server.handle_request()
        return server.delivery
    finally:
        server.server_close()
