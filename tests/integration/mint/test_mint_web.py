"""The enrollment and mint page (``GET /ui/``) over real HTTP: headers, assets, callback checks."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from conftest import LiveMint

from mint.errors import MintReason, RequestInvalid
from mint.web import check_callback_url

pytestmark = pytest.mark.integration

STATE = "A" * 43
REJECTED_CALLBACKS = [
    "http://evil.example:5000/cb",
    "https://127.0.0.1:5000/cb",
    "http://127.0.0.1/cb",
    "http://127.0.0.1:0/cb",
    "http://127.0.0.1:65536/cb",
    "http://localhost:080/cb",
    "http://LOCALHOST:5000/cb",
    "http://127.0.0.2:5000/cb",
    "http://localhost:5000@evil.example/cb",
    "http://user@localhost:5000/cb",
    "http://127.0.0.1:5000/cb?next=http://evil.example",
    "http://127.0.0.1:5000/cb#fragment",
    "http://[::1]:5000/cb",
    "javascript:alert(1)",
    "",
]
ACCEPTED_CALLBACKS = [
    "http://127.0.0.1:5000/cb",
    "http://localhost:65535/cb",
    "http://localhost:1",
]


class _ResourceCollector(HTMLParser):
    """Collects script and stylesheet references and any inline script text."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            self._in_script = True
            self.sources.append(values.get("src") or "")
        if tag == "link":
            self.sources.append(values.get("href") or "")
        # Event handler attributes such as onclick are inline scripts too.
        self.inline_scripts.extend(name for name, _ in attrs if name.startswith("on"))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def _get(live: LiveMint, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{live.url}{path}", params=params, timeout=10)


def test_ui_page_sends_security_headers(live_mint: LiveMint) -> None:
    response = _get(live_mint, "/ui/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_ui_page_loads_only_own_files(live_mint: LiveMint) -> None:
    collector = _ResourceCollector()
    collector.feed(_get(live_mint, "/ui/").text)
    assert collector.sources
    assert all(source.startswith("/ui/") for source in collector.sources), collector.sources
    assert collector.inline_scripts == []


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/ui/ztmint.js", "text/javascript"), ("/ui/ztmint.css", "text/css")],
)
def test_ui_assets_served_with_type_and_headers(
    live_mint: LiveMint, path: str, media_type: str
) -> None:
    response = _get(live_mint, path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["x-content-type-options"] == "nosniff"


def test_ui_path_without_slash_redirects(live_mint: LiveMint) -> None:
    response = _get(live_mint, "/ui")
    assert response.status_code == 308
    assert response.headers["location"] == "/ui/"


@pytest.mark.parametrize("callback", REJECTED_CALLBACKS)
def test_ui_page_rejects_non_loopback_callback(live_mint: LiveMint, callback: str) -> None:
    response = _get(live_mint, "/ui/", callback=callback, state=STATE)
    assert response.status_code == 400
    assert response.json()["error"] == MintReason.REQUEST_INVALID


@pytest.mark.parametrize("callback", ACCEPTED_CALLBACKS)
def test_ui_page_accepts_loopback_callback(live_mint: LiveMint, callback: str) -> None:
    response = _get(live_mint, "/ui/", callback=callback, state=STATE)
    assert response.status_code == 200


def test_ui_page_rejects_malformed_state(live_mint: LiveMint) -> None:
    response = _get(live_mint, "/ui/", callback=ACCEPTED_CALLBACKS[0], state="short")
    assert response.status_code == 400
    assert response.json()["error"] == MintReason.REQUEST_INVALID


def test_check_callback_url_message_names_the_rule() -> None:
    with pytest.raises(RequestInvalid, match="http://127.0.0.1:PORT/PATH or http://localhost:PORT"):
        check_callback_url("http://evil.example:5000/cb")
