"""Tests of ``mint.cli``: argument parsing, lazy dispatch and ``audit verify``."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
from mint_testkit import FakeClock

from mint.audit import AuditLog
from mint.cli import build_parser, main, parse_ttl, split_scopes


@pytest.mark.parametrize(
    ("text", "seconds"), [("15m", 900), ("900s", 900), ("1h", 3600), ("600", 600)]
)
def test_parse_ttl_accepts_units(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["m", "15 minutes", "1d", "-5m", ""])
def test_parse_ttl_rejects_other_spellings(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid TTL"):
        parse_ttl(text)


def test_split_scopes_flattens_repeated_and_spaced_values() -> None:
    assert split_scopes(["a:read b:write", "c"]) == ["a:read", "b:write", "c"]


def test_token_parser_reads_ttl_and_scopes() -> None:
    args = build_parser().parse_args(
        ["token", "--scope", "a:read", "--scope", "b", "--aud", "svc", "--ttl", "1h"]
    )
    assert args.ttl == 3600
    assert args.scope == ["a:read", "b"]


def test_token_parser_rejects_bad_ttl(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["token", "--scope", "a", "--aud", "svc", "--ttl", "soon"])
    assert "invalid TTL" in capsys.readouterr().err


def test_token_requires_explicit_authenticator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ZTMINT_AUTHENTICATOR", raising=False)
    status = main(["token", "--scope", "a", "--aud", "svc", "--url", "http://127.0.0.1:9"])
    assert status == 1
    assert "--authenticator" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "module"),
    [(["up"], "mint.stack"), (["demo"], "mint.demo"), (["signers", "status"], "actors.status")],
)
def test_main_dispatches_lead_commands_lazily(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], module: str
) -> None:
    fake = types.ModuleType(module)
    fake.run = lambda args: 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module, fake)
    assert main(argv) == 7


def test_audit_verify_reports_intact_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", FakeClock())
    log.append("token_minted", {"jti": "a"})
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl")]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 records")


def test_audit_verify_reports_broken_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, FakeClock())
    log.append("token_minted", {"jti": "a"})
    log.append("token_minted", {"jti": "b"})
    path.write_bytes(path.read_bytes().replace(b'"jti":"a"', b'"jti":"z"'))
    assert main(["audit", "verify", str(path)]) == 1
    assert "BROKEN at record 0: hash_mismatch" in capsys.readouterr().out


def test_audit_verify_reports_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_token_reports_unreachable_mint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--scope", "a", "--aud", "svc", "--authenticator", "software"]
    argv += ["--key-file", str(tmp_path / "absent.json"), "--url", "http://127.0.0.1:9"]
    assert main(argv) == 1
    assert "cannot reach the mint" in capsys.readouterr().err
