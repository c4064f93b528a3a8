"""Tests of the one place where ``mint.app`` maps errors to HTTP responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mint_testkit import ServiceParts, build_service

from mint.app import create_app
from mint.settings import Settings

Clients = tuple[ServiceParts, TestClient]


@pytest.fixture
def parts_and_client(tmp_path: Path) -> Iterator[tuple[ServiceParts, TestClient]]:
    parts = build_service(tmp_path / "state")
    app = create_app(parts.service, Settings(state_dir=tmp_path / "state"))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield parts, client


def test_app_maps_mint_error_to_reason_body(parts_and_client: Clients) -> None:
    _, client = parts_and_client
    response = client.post(
        "/assert", json={"user": "nobody", "scopes": ["a"], "audience": "s", "ttl_seconds": 900}
    )
    assert response.status_code == 404
    assert response.json()["error"] == "user_unknown"


def test_app_maps_unexpected_error_to_internal_error(
    parts_and_client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts, client = parts_and_client

    def fail() -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(parts.service, "jwks", fail)
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "disk on fire" not in response.text


def test_app_echoes_valid_client_request_id(parts_and_client: Clients) -> None:
    _, client = parts_and_client
    response = client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


def test_app_replaces_invalid_client_request_id(parts_and_client: Clients) -> None:
    _, client = parts_and_client
    response = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"
    assert len(response.headers["x-request-id"]) == 32
