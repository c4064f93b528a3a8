"""Object Storage and Logging sinks behind the durable Shipper, against the OCI mock."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mint.kms_oci import OciAuth
from mint.oci_sinks import (
    BACKOFF_MAX_SECONDS,
    BacklogCorrupt,
    LoggingSink,
    ObjectStorageSink,
    ShipConflict,
    ShipItem,
    Shipper,
    backoff_delay,
    checkpoint_item,
    event_item,
    segment_item,
)
from tests.support.ocimock import Fault, OciMock

NAMESPACE = "ztmint-ns"
BUCKET = "ztmint-audit"
LOG_ID = "ocid1.log.oc1.iad.ztmint.audit"
TEST_TIMEOUT = (1.0, 1.0)


class FakeClock:
    """A clock that moves only when the test advances it."""

    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _object_sink(oci_config: Path, oci_mock: OciMock) -> ObjectStorageSink:
    auth = OciAuth.from_config_file(oci_config)
    return ObjectStorageSink.connect(auth, oci_mock.url, NAMESPACE, BUCKET, timeout=TEST_TIMEOUT)


def _shipper(sink: ObjectStorageSink | LoggingSink, state: Path, clock: FakeClock) -> Shipper:
    return Shipper(sink, state, clock, draw=lambda: 1.0)


def _gauge(shipper: Shipper, sink_name: str) -> float | None:
    return shipper.registry.get_sample_value("ztmint_ship_backlog_items", {"sink": sink_name})


def test_object_sink_uploads_signed_requests(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    sink = _object_sink(oci_config, oci_mock)
    shipper = _shipper(sink, tmp_path / "state", clock)
    shipper.enqueue(segment_item(0, b'{"index":0}\n'))
    shipper.enqueue(segment_item(1, b'{"index":1}\n'))
    shipper.enqueue(checkpoint_item(2, "ztmint checkpoint\n2\nroot\n"))

    delivered = shipper.ship_pending()

    assert delivered == 3
    assert oci_mock.state.objects[(NAMESPACE, BUCKET, "audit/segments/000000000001.jsonl")] == (
        b'{"index":1}\n'
    )
    assert (NAMESPACE, BUCKET, "audit/checkpoints/000000000002.txt") in oci_mock.state.objects
    assert all(request.authenticated for request in oci_mock.state.requests)
    assert shipper.depth == 0
    assert _gauge(shipper, sink.name) == 0


def test_shipper_keeps_backlog_while_mock_down(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    sink = _object_sink(oci_config, oci_mock)
    shipper = _shipper(sink, tmp_path / "state", clock)
    oci_mock.stop()

    for index in range(3):
        shipper.enqueue(segment_item(index, f"segment {index}\n".encode()))
    delivered = shipper.ship_pending()

    assert delivered == 0
    assert shipper.depth == 3
    assert _gauge(shipper, sink.name) == 3
    assert oci_mock.state.objects == {}


def test_shipper_drains_in_order_after_restart(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    sink = _object_sink(oci_config, oci_mock)
    oci_mock.stop()
    first = _shipper(sink, tmp_path / "state", clock)
    keys = [segment_item(index, b"x").key for index in range(4)]
    for index in range(4):
        first.enqueue(segment_item(index, f"segment {index}\n".encode()))
    first.ship_pending()

    # A new process reads the same backlog: nothing was lost while the mock was down.
    restarted = _shipper(sink, tmp_path / "state", clock)
    oci_mock.start()
    clock.advance(BACKOFF_MAX_SECONDS)
    delivered = restarted.ship_pending()

    assert [item.key for item in first.pending()] == keys
    assert delivered == 4
    uploaded = [r.path.rsplit("/o/", 1)[1] for r in oci_mock.state.requests if r.method == "PUT"]
    assert uploaded == [key.replace("/", "%2F") for key in keys]
    assert restarted.depth == 0
    assert (tmp_path / "state" / "objectstorage_ztmint-audit.backlog.jsonl").read_bytes() == b""


def test_shipper_waits_for_backoff(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    sink = _object_sink(oci_config, oci_mock)
    shipper = _shipper(sink, tmp_path / "state", clock)
    oci_mock.inject("put_object", Fault.STATUS_500)
    shipper.enqueue(segment_item(0, b"a"))

    failed = shipper.ship_pending()
    early = shipper.ship_pending()
    requests_while_waiting = len(oci_mock.state.requests)
    clock.advance(backoff_delay(1, lambda: 1.0))
    retried = shipper.ship_pending()

    assert failed == 0
    assert early == 0
    assert requests_while_waiting == 1
    assert retried == 1
    assert shipper.registry.get_sample_value("ztmint_ship_failures_total", {"sink": sink.name}) == 1


def test_shipper_resumes_after_partial_delivery(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    sink = _object_sink(oci_config, oci_mock)
    shipper = _shipper(sink, tmp_path / "state", clock)
    shipper.enqueue(segment_item(0, b"a"))
    shipper.ship_pending()
    shipper.enqueue(segment_item(1, b"b"))
    shipper.enqueue(segment_item(2, b"c"))
    oci_mock.inject("put_object", Fault.STATUS_429)
    shipper.ship_pending()

    restarted = _shipper(sink, tmp_path / "state", clock)

    assert [item.key for item in restarted.pending()] == [
        segment_item(1, b"").key,
        segment_item(2, b"").key,
    ]
    assert len(oci_mock.state.objects) == 1


def test_shipper_background_thread_ships_on_enqueue(tmp_path: Path, clock: FakeClock) -> None:
    delivered = threading.Event()

    class RecordingSink:
        name = "recording"

        def deliver(self, item: ShipItem) -> None:
            delivered.set()

    shipper = Shipper(RecordingSink(), tmp_path / "state", clock)
    shipper.start()
    try:
        shipper.enqueue(segment_item(0, b"a"))
        arrived = delivered.wait(timeout=5)
    finally:
        shipper.stop()

    assert arrived
    assert shipper.depth == 0


def test_object_sink_accepts_identical_existing_object(oci_config: Path, oci_mock: OciMock) -> None:
    sink = _object_sink(oci_config, oci_mock)
    item = segment_item(7, b"sealed segment\n")
    oci_mock.state.objects[(NAMESPACE, BUCKET, item.key)] = item.payload

    sink.deliver(item)

    assert [r.operation for r in oci_mock.state.requests] == ["put_object", "head_object"]
    assert oci_mock.state.objects[(NAMESPACE, BUCKET, item.key)] == b"sealed segment\n"


def test_object_sink_rejects_conflicting_object(oci_config: Path, oci_mock: OciMock) -> None:
    sink = _object_sink(oci_config, oci_mock)
    item = segment_item(7, b"sealed segment\n")
    oci_mock.state.objects[(NAMESPACE, BUCKET, item.key)] = b"something else\n"

    with pytest.raises(ShipConflict, match="exists with MD5"):
        sink.deliver(item)
    assert oci_mock.state.objects[(NAMESPACE, BUCKET, item.key)] == b"something else\n"


def test_object_sink_lists_retention_rules(oci_config: Path, oci_mock: OciMock) -> None:
    rule = {"id": "r1", "displayName": "audit", "duration": {"timeAmount": 400, "timeUnit": "DAYS"}}
    oci_mock.state.retention_rules[(NAMESPACE, BUCKET)] = [rule]
    sink = _object_sink(oci_config, oci_mock)

    rules = sink.retention_rules()

    assert [r.display_name for r in rules] == ["audit"]
    assert rules[0].duration.time_amount == 400


def test_logging_sink_pushes_events(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    auth = OciAuth.from_config_file(oci_config)
    sink = LoggingSink.connect(auth, oci_mock.url, LOG_ID, "mint-1", clock, timeout=TEST_TIMEOUT)
    shipper = _shipper(sink, tmp_path / "state", clock)
    shipper.enqueue(event_item(0, "token_minted", {"index": 0, "event": "token_minted"}))
    shipper.enqueue(event_item(1, "token_minted", {"index": 1, "event": "token_minted"}))

    delivered = shipper.ship_pending()

    entries = oci_mock.state.logs[LOG_ID]
    assert delivered == 2
    assert [entry["id"] for entry in entries] == ["audit-0", "audit-1"]
    assert json.loads(entries[1]["data"]) == {"event": "token_minted", "index": 1}
    assert entries[0]["type"] == "ztmint.token_minted"
    assert all(request.authenticated for request in oci_mock.state.requests)


def test_logging_sink_retries_after_slow_answer(
    oci_config: Path, oci_mock: OciMock, tmp_path: Path, clock: FakeClock
) -> None:
    auth = OciAuth.from_config_file(oci_config)
    sink = LoggingSink.connect(auth, oci_mock.url, LOG_ID, "mint-1", clock, timeout=(1.0, 0.3))
    shipper = _shipper(sink, tmp_path / "state", clock)
    oci_mock.inject("put_logs", Fault.SLOW)
    shipper.enqueue(event_item(0, "token_minted", {"index": 0}))

    first = shipper.ship_pending()
    clock.advance(BACKOFF_MAX_SECONDS)
    second = shipper.ship_pending()

    assert first == 0
    assert second == 1
    assert shipper.depth == 0


def test_shipper_cuts_torn_last_line(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "state"
    state.mkdir()
    complete = segment_item(0, b"a").to_line()
    (state / "objectstorage_b.backlog.jsonl").write_bytes(complete + b'{"key":"aud')

    shipper = _shipper(ObjectStorageSink(None, NAMESPACE, "b"), state, clock)

    assert [item.key for item in shipper.pending()] == [segment_item(0, b"").key]
    assert (state / "objectstorage_b.backlog.jsonl").read_bytes() == complete


def test_shipper_rejects_corrupt_backlog(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "objectstorage_b.backlog.jsonl").write_bytes(b"not json\n")

    with pytest.raises(BacklogCorrupt, match="line 1 .* is not a backlog item"):
        _shipper(ObjectStorageSink(None, NAMESPACE, "b"), state, clock)


def test_shipper_rejects_cursor_past_backlog(tmp_path: Path, clock: FakeClock) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "objectstorage_b.cursor").write_text("5\n")

    with pytest.raises(BacklogCorrupt, match="records 5 items as delivered"):
        _shipper(ObjectStorageSink(None, NAMESPACE, "b"), state, clock)


def test_backoff_delay_is_capped() -> None:
    assert backoff_delay(1, lambda: 1.0) == 1.0
    assert backoff_delay(4, lambda: 1.0) == 8.0
    assert backoff_delay(100, lambda: 1.0) == BACKOFF_MAX_SECONDS
    assert backoff_delay(3, lambda: 0.0) == 0.5
