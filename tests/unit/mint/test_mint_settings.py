"""Tests of ``mint.settings``: defaults and ``ZTMINT_*`` parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

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
