"""The loopback callback of ``ztmint token --browser`` (``mint.browser``), over real sockets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mint import cli
from mint.browser import (
    BrowserDelivery,
    BrowserFlowError,
    CallbackTimeout,
    page_url,
    parse_delivery,
    receive_token,
)

MINT_URL = "http://localhost:8080"
MINT_ORIGIN = "http://localhost:8080"
STATE = "s" * 43


def _delivery(state: str = STATE, **changes: Any) -> dict[str, Any]:
    body = {
        "state": state,
        "token": "header.claims.signature",
        "receipt": "receipt.payload.signature",
        "jti": "jti-1",
        "expires_at": 1_767_226_500,
    }
    body.update(changes)
    return body


def _run_flow(
    page_actions: Callable[[str, str], None], **options: Any
) -> tuple[BrowserDelivery, list[str]]:
    """Run ``receive_token`` with a launcher whose thread calls ``page_actions(callback, url)``."""
    opened: list[str] = []
    threads: list[threading.Thread] = []

    def launch(url: str) -> None:
        opened.append(url)
        callback = parse_qs(urlsplit(url).query)["callback"][0]
        thread = threading.Thread(target=page_actions, args=(callback, url), daemon=True)
        threads.append(thread)
        thread.start()

    delivery = receive_token(
        MINT_URL,
        "alice",
        ["orders:read"],
        "orders",
        900,
        launch=launch,
        timeout_seconds=30,
        random_state=lambda size: STATE,
        **options,
    )
    for thread in threads:
        thread.join(timeout=10)
    return delivery, opened


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def test_page_url_carries_callback_state_and_request() -> None:
    url = page_url(
        MINT_URL, "http://127.0.0.1:5000/cb", STATE, "alice", ["a:b", "c"], "orders", 900
    )
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{MINT_URL}/ui/?")
    assert query["callback"] == ["http://127.0.0.1:5000/cb"]
    assert query["state"] == [STATE]
    assert query["scope"] == ["a:b c"]
    assert query["ttl"] == ["900"]


def test_parse_delivery_returns_fields() -> None:
    delivery = parse_delivery(json.dumps(_delivery()).encode(), STATE)
    assert delivery.jti == "jti-1"
    assert delivery.expires_at == 1_767_226_500


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps(_delivery(state="other" * 9)).encode(), "state does not match"),
        (json.dumps(_delivery(token="")).encode(), "no token"),
        (json.dumps(_delivery(receipt=7)).encode(), "no receipt"),
        (json.dumps(_delivery(expires_at=True)).encode(), "integer expires_at"),
    ],
)
def test_parse_delivery_rejects_malformed_body(body: bytes, message: str) -> None:
    with pytest.raises(BrowserFlowError, match=message):
        parse_delivery(body, STATE)


def test_browser_delivery_repr_hides_token() -> None:
    delivery = parse_delivery(json.dumps(_delivery()).encode(), STATE)
    assert "header.claims" not in repr(delivery)
    assert "receipt.payload" not in repr(delivery)


def test_receive_token_returns_delivery_from_page(client: httpx.Client) -> None:
    answers: list[httpx.Response] = []

    def page(callback: str, url: str) -> None:
        headers = {"Origin": MINT_ORIGIN}
        answers.append(client.post(callback, json=_delivery(), headers=headers))

    delivery, opened = _run_flow(page)
    assert delivery.token == "header.claims.signature"
    assert answers[0].status_code == 200
    assert answers[0].headers["access-control-allow-origin"] == MINT_ORIGIN
    assert opened[0].startswith(f"{MINT_URL}/ui/?callback=http%3A%2F%2F127.0.0.1%3A")


def test_receive_token_answers_preflight_for_mint_origin_only(client: httpx.Client) -> None:
    answers: dict[str, httpx.Response] = {}

    def page(callback: str, url: str) -> None:
        preflight = {"Access-Control-Request-Method": "POST"}
        answers["other"] = client.options(
            callback, headers={**preflight, "Origin": "https://evil.example"}
        )
        answers["mint"] = client.options(callback, headers={**preflight, "Origin": MINT_ORIGIN})
        client.post(callback, json=_delivery(), headers={"Origin": MINT_ORIGIN})

    _run_flow(page)
    assert answers["other"].status_code == 403
    assert "access-control-allow-origin" not in answers["other"].headers
    assert answers["mint"].status_code == 204
    assert answers["mint"].headers["access-control-allow-origin"] == MINT_ORIGIN
    assert answers["mint"].headers["access-control-allow-methods"] == "POST"


def test_receive_token_ignores_wrong_state_and_waits(client: httpx.Client) -> None:
    answers: list[httpx.Response] = []

    def page(callback: str, url: str) -> None:
        headers = {"Origin": MINT_ORIGIN}
        forged = _delivery(state="f" * 43, token="forged.token.value")
        answers.append(client.post(callback, json=forged, headers=headers))
        answers.append(client.post(callback, json=_delivery(), headers=headers))

    delivery, _ = _run_flow(page)
    assert answers[0].status_code == 400
    assert delivery.token == "header.claims.signature"


def test_receive_token_rejects_other_origin(client: httpx.Client) -> None:
    answers: list[httpx.Response] = []

    def page(callback: str, url: str) -> None:
        answers.append(
            client.post(callback, json=_delivery(), headers={"Origin": "https://evil.example"})
        )
        client.post(callback, json=_delivery(), headers={"Origin": MINT_ORIGIN})

    _run_flow(page)
    assert answers[0].status_code == 403


def test_receive_token_rejects_rebound_host_name(client: httpx.Client) -> None:
    answers: list[httpx.Response] = []

    def page(callback: str, url: str) -> None:
        port = urlsplit(callback).port
        rebound = {"Origin": MINT_ORIGIN, "Host": f"attacker.example:{port}"}
        answers.append(client.post(callback, json=_delivery(), headers=rebound))
        client.post(callback, json=_delivery(), headers={"Origin": MINT_ORIGIN})

    _run_flow(page)
    assert answers[0].status_code == 421


def test_receive_token_rejects_other_path(client: httpx.Client) -> None:
    answers: list[httpx.Response] = []

    def page(callback: str, url: str) -> None:
        other = callback.replace("/cb", "/other")
        answers.append(client.post(other, json=_delivery(), headers={"Origin": MINT_ORIGIN}))
        client.post(callback, json=_delivery(), headers={"Origin": MINT_ORIGIN})

    _run_flow(page)
    assert answers[0].status_code == 404


def test_receive_token_times_out_with_message() -> None:
    readings = iter([0.0, 301.0])
    with pytest.raises(CallbackTimeout, match="no token arrived from the browser within 300 s"):
        receive_token(
            MINT_URL,
            "alice",
            ["orders:read"],
            "orders",
            900,
            launch=lambda url: None,
            timeout_seconds=300,
            clock=lambda: next(readings),
        )


def test_receive_token_rejects_non_http_mint_url() -> None:
    with pytest.raises(BrowserFlowError, match="is not an http"):
        receive_token("ftp://mint", "alice", ["a"], "orders", 900, launch=lambda url: None)


def test_cli_token_browser_prints_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    requests: list[tuple[Any, ...]] = []

    def fake_receive_token(*args: Any) -> BrowserDelivery:
        requests.append(args)
        return parse_delivery(json.dumps(_delivery()).encode(), STATE)

    monkeypatch.setattr(cli, "receive_token", fake_receive_token)
    status = cli.main(
        [
            "token",
            "--browser",
            "--url",
            MINT_URL,
            "--user",
            "alice",
            "--scope",
            "orders:read",
            "--aud",
            "orders",
            "--ttl",
            "10m",
        ]
    )
    assert status == 0
    assert requests == [(MINT_URL, "alice", ["orders:read"], "orders", 600)]
    assert "token: header.claims.signature" in capsys.readouterr().out


def test_cli_token_browser_reports_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def timed_out(*args: Any) -> BrowserDelivery:
        raise CallbackTimeout("no token arrived from the browser within 300 s")

    monkeypatch.setattr(cli, "receive_token", timed_out)
    status = cli.main(["token", "--browser", "--scope", "orders:read", "--aud", "orders"])
    assert status == 1
    assert "no token arrived from the browser" in capsys.readouterr().err
