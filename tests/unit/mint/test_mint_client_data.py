"""Tests that cross-origin client data and non-``public-key`` credentials are rejected."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from fido2.webauthn import CollectedClientData
from mint_testkit import ORIGIN, ServiceParts, build_service

from mint import softkey
from mint.errors import MintError, MintReason
from mint.softkey import SoftwareAuthenticator

SCOPES = ["payments:read"]
AUDIENCE = "payments"
TTL = 900


@pytest.fixture
def parts(tmp_path: Path) -> ServiceParts:
    return build_service(tmp_path / "state")


def _rejection(call: Any) -> MintError:
    with pytest.raises(MintError) as caught:
        call()
    return caught.value


def _client_data_with(monkeypatch: pytest.MonkeyPatch, **members: Any) -> None:
    """Make the software authenticator add ``members`` to every ``clientDataJSON``."""
    create = functools.partial(CollectedClientData.create, **members)
    monkeypatch.setattr(softkey.CollectedClientData, "create", create)


def _enroll(parts: ServiceParts, key_file: Path) -> SoftwareAuthenticator:
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    authenticator = SoftwareAuthenticator(key_file, ORIGIN)
    parts.service.complete_registration(
        started.challenge_id, authenticator.register(started.options)
    )
    return authenticator


@pytest.mark.parametrize("members", [{"cross_origin": True}, {"topOrigin": "https://evil.example"}])
def test_complete_registration_rejects_cross_origin(
    parts: ServiceParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, Any]
) -> None:
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    _client_data_with(monkeypatch, **members)
    credential = SoftwareAuthenticator(tmp_path / "a.json", ORIGIN).register(started.options)
    error = _rejection(
        lambda: parts.service.complete_registration(started.challenge_id, credential)
    )
    assert error.reason is MintReason.ORIGIN_MISMATCH


@pytest.mark.parametrize("members", [{"cross_origin": True}, {"topOrigin": "https://evil.example"}])
def test_mint_rejects_cross_origin(
    parts: ServiceParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, Any]
) -> None:
    alice = _enroll(parts, tmp_path / "a.json")
    started = parts.service.begin_assertion("alice", SCOPES, AUDIENCE, TTL)
    _client_data_with(monkeypatch, **members)
    assertion = alice.authenticate(started.options)
    error = _rejection(
        lambda: parts.service.mint(started.challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    )
    assert error.reason is MintReason.ORIGIN_MISMATCH


def test_complete_registration_rejects_other_credential_type(
    parts: ServiceParts, tmp_path: Path
) -> None:
    started = parts.service.begin_registration("alice", parts.service.invite("alice"))
    credential = SoftwareAuthenticator(tmp_path / "a.json", ORIGIN).register(started.options)
    credential["type"] = "password"
    error = _rejection(
        lambda: parts.service.complete_registration(started.challenge_id, credential)
    )
    assert error.reason is MintReason.REQUEST_INVALID


def test_mint_rejects_other_credential_type(parts: ServiceParts, tmp_path: Path) -> None:
    alice = _enroll(parts, tmp_path / "a.json")
    started = parts.service.begin_assertion("alice", SCOPES, AUDIENCE, TTL)
    assertion = alice.authenticate(started.options)
    assertion["type"] = "password"
    error = _rejection(
        lambda: parts.service.mint(started.challenge_id, SCOPES, AUDIENCE, TTL, assertion)
    )
    assert error.reason is MintReason.REQUEST_INVALID
