"""The ``ztmint`` CLI against a real mint over HTTP, with the software authenticator."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from conftest import LiveMint

from mint.cli import main

pytestmark = pytest.mark.integration


def _client_args(live: LiveMint, key_file: Path) -> list[str]:
    return [
        "--url",
        live.url,
        "--origin",
        live.origin,
        "--user",
        "carol",
        "--authenticator",
        "software",
        "--key-file",
        str(key_file),
    ]


def _enroll(live: LiveMint, key_file: Path, capsys: pytest.CaptureFixture[str]) -> int:
    """Invite carol with `ztmint users invite`, then enroll with `ztmint enroll --invitation`."""
    state = str(live.settings.state_dir)
    assert main(["users", "invite", "--state", state, "--user", "carol"]) == 0
    code = capsys.readouterr().out.strip()
    return main(["enroll", *_client_args(live, key_file), "--invitation", code])


def test_cli_enrolls_and_prints_token(
    live_mint: LiveMint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "carol.json"
    assert _enroll(live_mint, key_file, capsys) == 0
    capsys.readouterr()
    argv = ["token", *_client_args(live_mint, key_file), "--scope", "a:read b:write"]
    assert main([*argv, "--aud", "svc", "--ttl", "15m", "--json"]) == 0
    minted = json.loads(capsys.readouterr().out)
    claims = jwt.decode(minted["token"], options={"verify_signature": False})
    assert claims["scope"] == "a:read b:write"
    assert claims["exp"] - claims["iat"] == 900


def test_cli_prints_labelled_lines(
    live_mint: LiveMint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "carol.json"
    _enroll(live_mint, key_file, capsys)
    capsys.readouterr()
    argv = ["token", *_client_args(live_mint, key_file), "--scope", "a:read", "--aud", "svc"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("token: ey")
    assert lines[1].startswith("receipt: ey")


def test_cli_reports_rejection_reason(
    live_mint: LiveMint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "carol.json"
    _enroll(live_mint, key_file, capsys)
    capsys.readouterr()
    argv = ["token", *_client_args(live_mint, key_file), "--scope", "a", "--aud", "svc"]
    assert main([*argv, "--ttl", "2h"]) == 1
    assert "ttl_out_of_range" in capsys.readouterr().err


def test_cli_verifies_audit_log_of_session(
    live_mint: LiveMint, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "carol.json"
    _enroll(live_mint, key_file, capsys)
    main(["token", *_client_args(live_mint, key_file), "--scope", "a", "--aud", "svc"])
    capsys.readouterr()
    assert main(["audit", "verify", str(live_mint.settings.audit_path)]) == 0
    assert capsys.readouterr().out.startswith("OK: 2 records")
