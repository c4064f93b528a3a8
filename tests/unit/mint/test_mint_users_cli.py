"""Tests of ``ztmint users invite|list|revoke`` on a real SQLite database."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from mint.cli import main
from mint.invitations import find_usable_invitation
from mint.store import SqliteStore
from mint.users_cli import parse_invitation_ttl


def test_users_invite_prints_usable_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "invite", "--state", str(tmp_path), "--user", "alice"]) == 0
    code = capsys.readouterr().out.strip()
    store = SqliteStore(tmp_path / "mint.sqlite3")
    assert find_usable_invitation(store, code, "alice", int(time.time())) is not None


def test_users_invite_applies_ttl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["users", "invite", "--state", str(tmp_path), "--user", "alice", "--ttl", "1h"])
    code = capsys.readouterr().out.strip()
    store = SqliteStore(tmp_path / "mint.sqlite3")
    later = int(time.time()) + 3601
    assert find_usable_invitation(store, code, "alice", later) is None


def test_users_invite_rejects_invalid_user(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "invite", "--state", str(tmp_path), "--user", "al ice"]) == 1
    assert "user must be 1-64 characters" in capsys.readouterr().err


def test_users_list_prints_header_only_when_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "list", "--state", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "user", "credentials", "cloned", "created",
    ]  # fmt: skip


def test_users_revoke_reports_nothing_to_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "revoke", "--state", str(tmp_path), "--user", "alice"]) == 1
    assert capsys.readouterr().out.strip() == "revoked 0 credential(s) of alice"


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("90m", 5400), ("7d", 604800)])
def test_parse_invitation_ttl_units(text: str, seconds: int) -> None:
    assert parse_invitation_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "h", "-1h", "1w"])
def test_parse_invitation_ttl_rejects_invalid(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="invalid invitation TTL"):
        parse_invitation_ttl(text)
