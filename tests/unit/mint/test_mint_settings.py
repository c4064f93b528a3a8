"""Tests of ``mint.settings``: defaults and ``ZTMINT_*`` parsing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mint_testkit import InProcessTokenSigner

from mint.app import create_app, service_from_settings
from mint.invitations import EnrollmentMode
from mint.limits import RateLimit
from mint.settings import Settings, SettingsError, settings_from_env


def test_settings_from_env_uses_development_defaults() -> None:
    settings = settings_from_env({})
    assert settings.rp_id == "localhost"
    assert settings.origin == "http://localhost:8080"
    assert settings.issuer == settings.origin
    assert settings.allow_self_attestation
    assert settings.user_verification == "preferred"


def test_settings_from_env_derives_origin_from_port() -> None:
    assert settings_from_env({"ZTMINT_PORT": "9000"}).origin == "http://localhost:9000"


def test_settings_from_env_reads_every_variable(tmp_path: Path) -> None:
    settings = settings_from_env(
        {
            "ZTMINT_RP_ID": "mint.example.com",
            "ZTMINT_ORIGIN": "https://mint.example.com",
            "ZTMINT_ISSUER": "https://issuer.example.com",
            "ZTMINT_STATE_DIR": str(tmp_path),
            "ZTMINT_ALLOW_SELF_ATTESTATION": "false",
            "ZTMINT_USER_VERIFICATION": "required",
            "ZTMINT_ATTESTATION_ROOTS": str(tmp_path / "roots.pem"),
        }
    )
    assert settings.rp_id == "mint.example.com"
    assert settings.origin == "https://mint.example.com"
    assert settings.issuer == "https://issuer.example.com"
    assert settings.audit_path == tmp_path / "audit.jsonl"
    assert not settings.allow_self_attestation
    assert settings.user_verification == "required"
    assert settings.attestation_roots == tmp_path / "roots.pem"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ZTMINT_PORT", "http", "expected an integer"),
        ("ZTMINT_PORT", "70000", "expected an integer"),
        ("ZTMINT_ALLOW_SELF_ATTESTATION", "maybe", "expected true or false"),
        ("ZTMINT_USER_VERIFICATION", "discouraged", "expected one of preferred, required"),
    ],
)
def test_settings_from_env_rejects_invalid_value(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings_from_env({variable: value})


def test_settings_rejects_unknown_user_verification() -> None:
    with pytest.raises(SettingsError, match="user_verification"):
        Settings(user_verification="always")


def test_settings_from_env_defaults_to_invitation_enrollment() -> None:
    assert settings_from_env({}).enrollment is EnrollmentMode.INVITATION


def test_settings_from_env_reads_open_enrollment() -> None:
    settings = settings_from_env({"ZTMINT_ENROLLMENT": "open"})
    assert settings.enrollment is EnrollmentMode.OPEN


def test_settings_from_env_rejects_unknown_enrollment() -> None:
    with pytest.raises(SettingsError, match="expected invitation or open"):
        settings_from_env({"ZTMINT_ENROLLMENT": "anyone"})


def test_settings_from_env_reads_body_and_client_limits() -> None:
    settings = settings_from_env(
        {
            "ZTMINT_MAX_BODY_BYTES": "1024",
            "ZTMINT_CLIENT_RATE_BURST": "5",
            "ZTMINT_CLIENT_RATE_PER_MINUTE": "30",
            "ZTMINT_REJECTION_AUDIT_PER_MINUTE": "2",
        }
    )
    assert settings.max_body_bytes == 1024
    assert settings.client_rate == RateLimit(burst=5, per_minute=30.0)
    assert settings.rejection_audit_per_minute == 2


def test_settings_from_env_turns_client_limit_off() -> None:
    assert settings_from_env({"ZTMINT_CLIENT_RATE_PER_MINUTE": "0"}).client_rate is None


def test_settings_from_env_rejects_zero_body_limit() -> None:
    with pytest.raises(SettingsError, match="ZTMINT_MAX_BODY_BYTES is 0; expected at least 1"):
        settings_from_env({"ZTMINT_MAX_BODY_BYTES": "0"})


def test_create_app_warns_about_open_enrollment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(state_dir=tmp_path / "state", enrollment=EnrollmentMode.OPEN)
    service = service_from_settings(settings, InProcessTokenSigner())
    with caplog.at_level(logging.WARNING, logger="mint.app"):
        create_app(service, settings)
    assert "event=open_enrollment" in caplog.text
