"""Audit shipping from a real mint to the OCI mock: records, checkpoints and sealed segments.

The mint is built with ``service_from_settings`` over real files and a fake clock. Delivery is
driven by calling ``AuditShipping.ship_pending`` instead of the background threads, so each
test decides when an upload is attempted and no test waits on a timer.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from mint.app import service_from_settings
from mint.oci_sinks import BACKOFF_MAX_SECONDS
from mint.service import MintService
from mint.settings import Settings, SettingsError, settings_from_env
from mint.shipping import AuditShipping, ShippingStateCorrupt, shipping_settings_from_env
from mint.softkey import SoftwareAuthenticator
from tests.integration.kms import conftest as kms_fixtures
from tests.support.ocimock import OciMock
from tests.unit.mint.mint_testkit import ISSUER, ORIGIN, FakeClock, InProcessTokenSigner

pytestmark = pytest.mark.integration

# The OCI mock fixtures of the KMS integration tests, shared by name.
api_key = kms_fixtures.api_key
oci_config = kms_fixtures.oci_config
oci_mock = kms_fixtures.oci_mock

NAMESPACE = "ztmint-ns"
BUCKET = "ztmint-audit"
LOG_ID = "ocid1.log.oc1.iad.ztmint.audit"
AUDIENCE = "orders"
SEGMENT_RECORDS = 2


class Mint:
    """A mint with audit shipping, and the parts a test drives or inspects."""

    def __init__(self, env: dict[str, str], state_dir: Path, clock: FakeClock) -> None:
        self.settings: Settings = settings_from_env(
            {
                **env,
                "ZTMINT_ORIGIN": ORIGIN,
                "ZTMINT_ISSUER": ISSUER,
                "ZTMINT_STATE_DIR": str(state_dir),
            }
        )
        assert self.settings.shipping is not None
        self.shipping = AuditShipping.open(
            self.settings.shipping, state_dir, self.settings.audit_path, clock
        )
        self.service: MintService = service_from_settings(
            self.settings, InProcessTokenSigner(), clock, os.urandom, shipping=self.shipping
        )
        self.authenticator: SoftwareAuthenticator | None = None
        self.key_file = state_dir.parent / "alice.json"

    def enroll(self) -> None:
        started = self.service.begin_registration("alice", self.service.invite("alice"))
        self.authenticator = SoftwareAuthenticator(self.key_file, ORIGIN)
        registration = self.authenticator.register(started.options)
        self.service.complete_registration(started.challenge_id, registration)

    def mint(self) -> int:
        assert self.authenticator is not None
        started = self.service.begin_assertion("alice", ["orders:read"], AUDIENCE, 900)
        assertion = self.authenticator.authenticate(started.options)
        result = self.service.mint(started.challenge_id, ["orders:read"], AUDIENCE, 900, assertion)
        return result.audit_index

    def backlog_gauge(self) -> dict[str, float]:
        text = self.service.guard.metrics.render().decode()
        pattern = re.compile(r'^ztmint_ship_backlog_items\{sink="([^"]+)"\} (\S+)$', re.M)
        return {sink: float(value) for sink, value in pattern.findall(text)}


def _env(mock_url: str, config: Path) -> dict[str, str]:
    return {
        "ZTMINT_AUDIT_BUCKET": BUCKET,
        "ZTMINT_OCI_NAMESPACE": NAMESPACE,
        "ZTMINT_OCI_OBJECT_STORAGE_ENDPOINT": mock_url,
        "ZTMINT_OCI_LOG_ID": LOG_ID,
        "ZTMINT_OCI_LOGGING_ENDPOINT": mock_url,
        "ZTMINT_OCI_CONFIG_FILE": str(config),
        "ZTMINT_AUDIT_SEGMENT_RECORDS": str(SEGMENT_RECORDS),
        "ZTMINT_AUDIT_SOURCE": "mint-test",
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mint(oci_mock: OciMock, oci_config: Path, tmp_path: Path, clock: FakeClock) -> Mint:
    return Mint(_env(oci_mock.url, oci_config), tmp_path / "state", clock)


def _object_names(mock: OciMock) -> list[str]:
    return [name for (namespace, bucket, name) in mock.state.objects if bucket == BUCKET]


def _log_ids(mock: OciMock) -> list[str]:
    return [entry["id"] for entry in mock.state.logs[LOG_ID]]


def _audit_lines(mint: Mint) -> list[bytes]:
    return mint.settings.audit_path.read_bytes().split(b"\n")[:-1]


def test_shipping_sends_each_record_to_logging(mint: Mint, oci_mock: OciMock) -> None:
    mint.enroll()
    mint.mint()

    mint.shipping.ship_pending()

    entries = oci_mock.state.logs[LOG_ID]
    assert [entry["id"] for entry in entries] == ["audit-0", "audit-1"]
    assert [entry["type"] for entry in entries] == [
        "ztmint.credential_registered",
        "ztmint.token_minted",
    ]
    assert json.loads(entries[1]["data"]) == json.loads(_audit_lines(mint)[1])
    assert {entry["source"] for entry in entries} == {"mint-test"}


def test_shipping_uploads_checkpoint_of_each_mint(mint: Mint, oci_mock: OciMock) -> None:
    mint.enroll()
    mint.mint()

    mint.shipping.ship_pending()

    stored = oci_mock.state.objects[(NAMESPACE, BUCKET, "audit/checkpoints/000000000002.txt")]
    latest = mint.settings.state_dir / "checkpoints" / "latest.txt"
    assert stored == latest.read_bytes()


def test_shipping_uploads_sealed_segment(mint: Mint, oci_mock: OciMock) -> None:
    mint.enroll()
    mint.mint()

    mint.shipping.ship_pending()

    segment = oci_mock.state.objects[(NAMESPACE, BUCKET, "audit/segments/000000000000.jsonl")]
    assert segment == mint.settings.audit_path.read_bytes()


def test_shipping_leaves_open_segment_local(mint: Mint, oci_mock: OciMock) -> None:
    mint.enroll()
    mint.mint()
    mint.mint()

    mint.shipping.ship_pending()

    assert "audit/segments/000000000001.jsonl" not in _object_names(oci_mock)


def test_shipping_requests_are_signed(mint: Mint, oci_mock: OciMock) -> None:
    mint.enroll()
    mint.mint()

    mint.shipping.ship_pending()

    assert oci_mock.state.requests
    assert all(request.authenticated for request in oci_mock.state.requests)


def test_shipping_backlog_grows_while_oci_down(mint: Mint, oci_mock: OciMock) -> None:
    oci_mock.stop()
    mint.enroll()
    first = mint.mint()
    second = mint.mint()

    delivered = mint.shipping.ship_pending()

    # Both mints succeeded: the second record follows the first.
    assert second == first + 1
    assert delivered == 0
    # 3 records wait as log entries; 1 sealed segment and 2 checkpoints wait as objects.
    assert mint.backlog_gauge() == {f"objectstorage:{BUCKET}": 3.0, f"logging:{LOG_ID}": 3.0}
    assert mint.shipping.depth == 6


def test_shipping_drains_in_order_when_oci_back(
    mint: Mint, oci_mock: OciMock, clock: FakeClock
) -> None:
    oci_mock.stop()
    mint.enroll()
    mint.mint()
    mint.mint()
    mint.shipping.ship_pending()
    oci_mock.start()
    clock.advance(BACKOFF_MAX_SECONDS + 1)

    mint.shipping.ship_pending()

    assert _log_ids(oci_mock) == ["audit-0", "audit-1", "audit-2"]
    assert _object_names(oci_mock) == [
        "audit/segments/000000000000.jsonl",
        "audit/checkpoints/000000000002.txt",
        "audit/checkpoints/000000000003.txt",
    ]
    assert mint.shipping.depth == 0
    assert set(mint.backlog_gauge().values()) == {0.0}


def test_shipping_waits_for_backoff_before_retry(
    mint: Mint, oci_mock: OciMock, clock: FakeClock
) -> None:
    oci_mock.stop()
    mint.enroll()
    mint.shipping.ship_pending()
    oci_mock.start()

    delivered = mint.shipping.ship_pending()

    assert delivered == 0
    assert _log_ids(oci_mock) == []


def test_shipping_keeps_backlog_across_restart(
    oci_mock: OciMock, oci_config: Path, tmp_path: Path, clock: FakeClock
) -> None:
    env = _env(oci_mock.url, oci_config)
    oci_mock.stop()
    first = Mint(env, tmp_path / "state", clock)
    first.enroll()
    first.mint()
    oci_mock.start()

    restarted = Mint(env, tmp_path / "state", clock)
    restarted.shipping.ship_pending()

    assert _log_ids(oci_mock) == ["audit-0", "audit-1"]
    assert "audit/segments/000000000000.jsonl" in _object_names(oci_mock)


def test_shipping_catches_up_segment_sealed_without_it(
    oci_mock: OciMock, oci_config: Path, tmp_path: Path, clock: FakeClock
) -> None:
    # Records written while shipping was off (or before a crash) seal a segment; shipping
    # enqueues that segment when it starts.
    state_dir = tmp_path / "state"
    settings = Settings(rp_id="localhost", origin=ORIGIN, issuer=ISSUER, state_dir=state_dir)
    plain = service_from_settings(settings, InProcessTokenSigner(), clock, os.urandom)
    plain.record_rejection({"operation": "mint", "reason": "request_invalid"})
    plain.record_rejection({"operation": "mint", "reason": "request_invalid"})

    restarted = Mint(_env(oci_mock.url, oci_config), state_dir, clock)
    restarted.shipping.ship_pending()

    segment = oci_mock.state.objects[(NAMESPACE, BUCKET, "audit/segments/000000000000.jsonl")]
    assert segment == settings.audit_path.read_bytes()


def test_shipping_failure_does_not_fail_mint(mint: Mint) -> None:
    # A directory where the Logging backlog file belongs makes every enqueue fail.
    backlog = mint.settings.state_dir / "shipping" / "logging_ocid1_log_oc1_iad_ztmint_audit"
    Path(f"{backlog}.backlog.jsonl").mkdir()
    mint.enroll()

    index = mint.mint()

    text = mint.service.guard.metrics.render().decode()
    assert index == 1
    assert "ztmint_audit_ship_enqueue_failures_total 2.0" in text


def test_shipping_rejects_corrupt_segment_cursor(
    oci_mock: OciMock, oci_config: Path, tmp_path: Path, clock: FakeClock
) -> None:
    cursor = tmp_path / "state" / "shipping" / "segments.next"
    cursor.parent.mkdir(parents=True)
    cursor.write_text("three\n")

    with pytest.raises(ShippingStateCorrupt) as caught:
        Mint(_env(oci_mock.url, oci_config), tmp_path / "state", clock)

    assert "does not contain a segment number" in str(caught.value)


def _shipping_error(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        shipping_settings_from_env(env, SettingsError)
    return str(caught.value)


def test_shipping_settings_off_without_bucket_or_log() -> None:
    assert shipping_settings_from_env({"ZTMINT_OCI_NAMESPACE": "ns"}, SettingsError) is None


@pytest.mark.parametrize("missing", ["ZTMINT_OCI_NAMESPACE", "ZTMINT_OCI_OBJECT_STORAGE_ENDPOINT"])
def test_shipping_settings_reject_bucket_without(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in _env("http://127.0.0.1:1", tmp_path).items() if k != missing}

    assert _shipping_error(env) == f"ZTMINT_AUDIT_BUCKET is set, so {missing} is needed too; set it"


def test_shipping_settings_reject_log_without_endpoint(tmp_path: Path) -> None:
    env = _env("http://127.0.0.1:1", tmp_path)
    del env["ZTMINT_OCI_LOGGING_ENDPOINT"]

    assert "ZTMINT_OCI_LOGGING_ENDPOINT is needed too" in _shipping_error(env)


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_shipping_settings_reject_segment_size(value: str, tmp_path: Path) -> None:
    env = {**_env("http://127.0.0.1:1", tmp_path), "ZTMINT_AUDIT_SEGMENT_RECORDS": value}

    expected = f"ZTMINT_AUDIT_SEGMENT_RECORDS is {value!r}; expected a positive integer"
    assert _shipping_error(env) == expected


def test_shipping_settings_default_segment_size(tmp_path: Path) -> None:
    env: dict[str, Any] = _env("http://127.0.0.1:1", tmp_path)
    del env["ZTMINT_AUDIT_SEGMENT_RECORDS"]

    settings = shipping_settings_from_env(env, SettingsError)

    assert settings is not None
    assert settings.segment_records == 1000
