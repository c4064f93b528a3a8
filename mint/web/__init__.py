"""The enrollment and mint page served by the mint under ``/ui/``.

The page (``index.html``, ``ztmint.js``, ``ztmint.css`` in this folder) runs the WebAuthn
ceremonies in the browser with the options from ``POST /register`` and ``POST /assert``. It
shows the credential id after enrollment and the jti and expiry after a mint. It never puts
the token or receipt into the page: it POSTs them to the loopback callback of
``ztmint token --browser`` (see ``mint.browser``).

Security:
    Every page response carries a Content-Security-Policy that allows scripts, styles and
    connections from the mint's own origin only, plus connections to ``http://127.0.0.1:*``
    and ``http://localhost:*`` for the CLI callback. So the browser itself refuses to send a
    token anywhere else, even if a crafted link names another callback. The callback URL is
    also checked here (``check_callback_url``) and again by the page's script before it sends.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mint.api_models import ERROR_RESPONSE_REF
from mint.errors import MintReason, RequestInvalid

UI_PATH = "/ui/"
CALLBACK_HOSTS = ("127.0.0.1", "localhost")
STATE_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{16,128}\Z")
# The rules of check_callback_url as a JSON Schema pattern, for the OpenAPI document.
_PORT_PATTERN = (
    "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
CALLBACK_JSON_PATTERN = "^http://(127\\.0\\.0\\.1|localhost):" + _PORT_PATTERN + "(/[^?#]*)?$"
_CALLBACK_PATTERN = re.compile(CALLBACK_JSON_PATTERN.removeprefix("^").removesuffix("$"))

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self' http://127.0.0.1:* http://localhost:*",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_ASSETS = {
    "ztmint.js": "text/javascript; charset=utf-8",
    "ztmint.css": "text/css; charset=utf-8",
}


def check_callback_url(url: str) -> str:
    """Return ``url`` when it is a CLI callback the page may send a token to.

    Accepted: ``http://127.0.0.1:PORT/PATH`` or ``http://localhost:PORT/PATH`` in lower case,
    with an explicit port 1-65535 without leading zeros, and no user info, query or fragment.
    The path may be empty.

    Raises:
        RequestInvalid: ``request_invalid`` naming what is wrong with the URL.
    """
    # The pattern already excludes user info, queries and fragments. urlsplit is a second
    # opinion, because a browser parses the URL again before it connects.
    if not _CALLBACK_PATTERN.fullmatch(url):
        raise RequestInvalid(
            MintReason.REQUEST_INVALID,
            "callback must be http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH, "
            "as ztmint token --browser sends it",
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise RequestInvalid(MintReason.REQUEST_INVALID, "callback is not a valid URL") from None
    if parts.scheme != "http" or parts.hostname not in CALLBACK_HOSTS or port is None:
        raise RequestInvalid(
            MintReason.REQUEST_INVALID, "callback must name 127.0.0.1 or localhost and a port"
        )
    return url


def read_asset(name: str) -> bytes:
    """Return the bytes of the page file ``name`` from this package."""
    return resources.files(__package__).joinpath(name).read_bytes()


def add_ui_routes(app: FastAPI) -> None:
    """Add ``GET /ui/`` (the page) and its script and stylesheet to ``app``."""

    @app.get("/ui", include_in_schema=False)
    def ui_redirect() -> RedirectResponse:
        return RedirectResponse(UI_PATH, status_code=308)

    @app.get(
        UI_PATH,
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {"schema": {"type": "string"}}}},
            400: {
                "description": "Rejected with reason request_invalid: the callback or state "
                "is not one ztmint token --browser sends.",
                "content": {"application/json": {"schema": ERROR_RESPONSE_REF}},
            },
        },
        summary="The enrollment and mint page",
    )
    def ui_page(
        callback: Annotated[
            str | None,
            Query(
                description="Loopback URL of ztmint token --browser that receives the token: "
                "http://127.0.0.1:PORT/PATH or http://localhost:PORT/PATH.",
                json_schema_extra={"pattern": CALLBACK_JSON_PATTERN},
            ),
        ] = None,
        state: Annotated[
            str | None,
            Query(
                description="Value the page echoes to the callback. Without it the page "
                "does not send a token to the callback.",
                pattern=STATE_PATTERN.pattern.replace(r"\A", "^").replace(r"\Z", "$"),
            ),
        ] = None,
        user: Annotated[str | None, Query(description="User id to prefill.")] = None,
        scope: Annotated[str | None, Query(description="Space-separated scopes.")] = None,
        aud: Annotated[str | None, Query(description="Audience to prefill.")] = None,
        ttl: Annotated[str | None, Query(description="Lifetime in seconds.")] = None,
    ) -> Response:
        # The page reads the prefill values from its own URL, so only the callback, which
        # decides where a token goes, is checked here. FastAPI checks the state's pattern.
        if callback is not None:
            check_callback_url(callback)
        return Response(
            read_asset("index.html"),
            media_type="text/html; charset=utf-8",
            headers=SECURITY_HEADERS,
        )

    for name, media_type in _ASSETS.items():
        _add_asset_route(app, name, media_type)


def _add_asset_route(app: FastAPI, name: str, media_type: str) -> None:
    content = read_asset(name)
    kind = media_type.split(";")[0]

    @app.get(
        UI_PATH + name,
        response_class=Response,
        responses={200: {"content": {kind: {"schema": {"type": "string"}}}}},
        summary=f"The page's {name}",
        name=f"ui_asset_{name}",
    )
    def ui_asset() -> Response:
        return Response(content, media_type=media_type, headers=SECURITY_HEADERS)
