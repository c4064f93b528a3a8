"""Receipt key rotation of the local KMS: mint, rotate, restart, and verify with the new JWKS.

The mint runs in process over real SQLite, key and audit files, with a fake clock. The token
signer is the in-process test fixture, because rotation concerns only the receipt key.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mint_testkit import ISSUER, ORIGIN, FakeClock, InProcessTokenSigner

from authz.errors import AuthzError, Reason
from authz.jose import b64url_decode
from authz.keys import key_set_from_jwks
from authz.verify import verify_receipt, verify_token
from mint.app import service_from_settings
from mint.cli import main
from mint.kms import LocalKms
from mint.rotation import (
    LOCAL_KEY_FILE,
    MIN_GRACE_SECONDS,
    RETIRED_KEYS_FILE,
    ReceiptKeyRing,
    RotationError,
    load_retired_keys,
    local_key_ring,
    rotate_local_key,
    run_rotate,
)
from mint.service import MintService
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator

AUDIENCE = "orders"


def _service(state_dir: Path, signer: InProcessTokenSigner, clock: FakeClock) -> MintService:
    settings = Settings(rp_id="localhost", origin=ORIGIN, issuer=ISSUER, state_dir=state_dir)
    return service_from_settings(settings, signer, clock=clock, random_bytes=os.urandom)


def _enroll(service: MintService, key_file: Path) -> SoftwareAuthenticator:
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(key_file, ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    return authenticator


def _mint(service: MintService, authenticator: SoftwareAuthenticator) -> tuple[str, str]:
    started = service.begin_assertion("alice", ["orders:read"], AUDIENCE, 900)
    assertion = authenticator.authenticate(started.options)
    result = service.mint(started.challenge_id, ["orders:read"], AUDIENCE, 900, assertion)
    return result.token, result.receipt


def _receipt_kid(receipt: str) -> str:
    header: dict[str, Any] = json.loads(b64url_decode(receipt.split(".")[0]))
    return str(header["kid"])


def _receipt_kids(service: MintService) -> set[str]:
    return {key["kid"] for key in service.jwks()["keys"] if key["kty"] == "EC"}


def _verify(service: MintService, token: str, receipt: str, now: int) -> None:
    keys = key_set_from_jwks(service.jwks())
    verified = verify_token(token, keys, now, AUDIENCE, ISSUER)
    verify_receipt(receipt, verified, keys, now)


@pytest.fixture
def rotated(tmp_path: Path) -> dict[str, Any]:
    """Mint once, rotate the receipt key a minute later, and restart the mint."""
    clock = FakeClock()
    signer = InProcessTokenSigner()
    state_dir = tmp_path / "state"
    before = _service(state_dir, signer, clock)
    authenticator = _enroll(before, tmp_path / "alice.json")
    token, receipt = _mint(before, authenticator)
    old_kid = _receipt_kid(receipt)
    clock.advance(60)
    result = rotate_local_key(state_dir, int(clock()))
    after = _service(state_dir, signer, clock)
    return {
        "clock": clock,
        "after": after,
        "authenticator": authenticator,
        "token": token,
        "receipt": receipt,
        "old_kid": old_kid,
        "result": result,
        "state_dir": state_dir,
    }


def test_rotation_keeps_old_receipt_verifiable(rotated: dict[str, Any]) -> None:
    rotated["clock"].advance(600)

    _verify(rotated["after"], rotated["token"], rotated["receipt"], int(rotated["clock"]()))


def test_rotation_publishes_old_and_new_key(rotated: dict[str, Any]) -> None:
    kids = _receipt_kids(rotated["after"])

    assert kids == {rotated["old_kid"], rotated["result"].new_kid}


def test_rotation_reports_retired_kid(rotated: dict[str, Any]) -> None:
    assert rotated["result"].retired_kid == rotated["old_kid"]
    assert rotated["result"].new_kid != rotated["old_kid"]


def test_rotation_signs_new_receipts_with_new_kid(rotated: dict[str, Any]) -> None:
    token, receipt = _mint(rotated["after"], rotated["authenticator"])

    assert _receipt_kid(receipt) == rotated["result"].new_kid
    _verify(rotated["after"], token, receipt, int(rotated["clock"]()))


def test_rotation_drops_old_key_after_grace(rotated: dict[str, Any]) -> None:
    rotated["clock"].advance(MIN_GRACE_SECONDS)

    assert _receipt_kids(rotated["after"]) == {rotated["result"].new_kid}


def test_rotation_old_receipt_unknown_after_grace(rotated: dict[str, Any]) -> None:
    rotated["clock"].advance(MIN_GRACE_SECONDS)
    now = int(rotated["clock"]())
    keys = key_set_from_jwks(rotated["after"].jwks())
    # The token itself expired too: a 900 s token cannot outlive a 3600 s grace period.
    token = verify_token(rotated["token"], keys, now - MIN_GRACE_SECONDS, AUDIENCE, ISSUER)

    with pytest.raises(AuthzError) as caught:
        verify_receipt(rotated["receipt"], token, keys, now)

    assert caught.value.reason is Reason.RECEIPT_KID_UNKNOWN


def test_rotation_keeps_old_key_just_before_grace_ends(rotated: dict[str, Any]) -> None:
    rotated["clock"].advance(MIN_GRACE_SECONDS - 1)

    assert rotated["old_kid"] in _receipt_kids(rotated["after"])


def test_rotation_deletes_old_private_key(rotated: dict[str, Any]) -> None:
    current = LocalKms(rotated["state_dir"] / LOCAL_KEY_FILE)

    assert current.kid == rotated["result"].new_kid
    assert list(rotated["state_dir"].glob("*.tmp")) == []


def test_rotation_prunes_expired_retired_keys(rotated: dict[str, Any]) -> None:
    state_dir = rotated["state_dir"]
    later = int(rotated["clock"]()) + MIN_GRACE_SECONDS + 1

    rotate_local_key(state_dir, later)

    retired = load_retired_keys(state_dir / RETIRED_KEYS_FILE)
    assert [key.kid for key in retired] == [rotated["result"].new_kid]


def test_rotate_revoke_drops_old_key_at_once(tmp_path: Path) -> None:
    first = rotate_local_key(tmp_path, 1_000)

    second = rotate_local_key(tmp_path, 2_000, revoke=True)

    ring = local_key_ring(tmp_path, lambda: 2_001.0, MIN_GRACE_SECONDS)
    assert second.revoked
    assert [key.kid for key in ring.published_keys()] == [second.new_kid]
    assert first.new_kid not in {key.kid for key in ring.published_keys()}


def test_rotate_first_key_retires_nothing(tmp_path: Path) -> None:
    result = rotate_local_key(tmp_path, 1_000)

    assert result.retired_kid is None
    assert load_retired_keys(tmp_path / RETIRED_KEYS_FILE) == []


def test_key_ring_ignores_active_key_listed_as_retired(tmp_path: Path) -> None:
    # State left by a crash after the retired list was written but before the key moved.
    active = LocalKms(tmp_path / LOCAL_KEY_FILE)
    entry = {"kid": active.kid, "jwk": active.public_jwk(), "retired_at": 1_000}
    (tmp_path / RETIRED_KEYS_FILE).write_text(json.dumps([entry]))

    ring = local_key_ring(tmp_path, lambda: 1_001.0, MIN_GRACE_SECONDS)

    assert [key.kid for key in ring.published_keys()] == [active.kid]


def test_key_ring_rejects_short_grace(tmp_path: Path) -> None:
    active = LocalKms(tmp_path / LOCAL_KEY_FILE)

    with pytest.raises(RotationError) as caught:
        ReceiptKeyRing(active, [], MIN_GRACE_SECONDS - 1, lambda: 0.0)

    assert f"expected at least {MIN_GRACE_SECONDS} s" in str(caught.value)


def test_load_retired_keys_rejects_kid_mismatch(tmp_path: Path) -> None:
    active = LocalKms(tmp_path / LOCAL_KEY_FILE)
    entry = {"kid": "not-the-thumbprint", "jwk": active.public_jwk(), "retired_at": 1}
    (tmp_path / RETIRED_KEYS_FILE).write_text(json.dumps([entry]))

    with pytest.raises(RotationError) as caught:
        load_retired_keys(tmp_path / RETIRED_KEYS_FILE)

    assert "kid does not match the JWK thumbprint" in str(caught.value)


def test_load_retired_keys_rejects_invalid_json(tmp_path: Path) -> None:
    (tmp_path / RETIRED_KEYS_FILE).write_text("[{")

    with pytest.raises(RotationError) as caught:
        load_retired_keys(tmp_path / RETIRED_KEYS_FILE)

    assert "is not valid JSON" in str(caught.value)


def test_load_retired_keys_rejects_missing_member(tmp_path: Path) -> None:
    (tmp_path / RETIRED_KEYS_FILE).write_text(json.dumps([{"kid": "x"}]))

    with pytest.raises(RotationError) as caught:
        load_retired_keys(tmp_path / RETIRED_KEYS_FILE)

    assert "needs kid, jwk and retired_at" in str(caught.value)


def test_run_rotate_prints_kids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = rotate_local_key(tmp_path, 1_000)

    status = run_rotate(argparse.Namespace(state=tmp_path, revoke=False), clock=lambda: 2_000.0)

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("new receipt key ")
    assert (
        lines[1]
        == f"old receipt key {first.new_kid} retired at 2000, published for the grace period"
    )
    assert lines[2].startswith("restart every mint process")


def test_cli_kms_rotate_creates_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kms", "rotate", "--state", str(tmp_path)]) == 0

    assert (tmp_path / LOCAL_KEY_FILE).exists()
    assert capsys.readouterr().out.startswith("new receipt key ")
