"""Ship the audit log to OCI: sealed segments and checkpoints to Object Storage, events to Logging.

The local audit log is always written first, by ``mint.audit``; this module only copies what
is already on disk. A ``Shipper`` keeps a durable backlog of pending items for one sink and
uploads them in order:

- ``enqueue`` appends the item to ``<state>/<name>.backlog.jsonl`` and fsyncs before it
  returns, so an item accepted by the shipper survives a crash.
- ``ship_pending`` delivers items from the front. On the first failure it stops, keeps that
  item at the front and waits with capped exponential backoff, so items are never dropped
  or reordered.
- The number of delivered items is kept in ``<state>/<name>.cursor``, replaced atomically
  after each delivery. A crash between a delivery and the cursor update repeats that one
  delivery, which is why both sinks are idempotent.

Sinks:
    ``ObjectStorageSink`` puts each item as one object named by its segment index, with
    ``If-None-Match: *`` and ``Content-MD5``. When the object already exists with the same
    MD5 the delivery counts as done; a different MD5 is a conflict that stays in the backlog.
    ``LoggingSink`` sends each item as a Logging Ingestion ``PutLogs`` batch of one entry whose
    ``id`` is the item's key, so a repeated delivery carries the same id.

Limitations:
    Pending items, payloads included, live in the backlog file until every item before them is
    delivered, so a long outage grows that file by the size of the segments written meanwhile.
    The backlog is compacted only when it is fully drained. One process may own a backlog
    at a time, because there is no file lock across processes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import oci
from prometheus_client import CollectorRegistry, Counter, Gauge

from mint.kms_oci import OciAuth

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = (3.0, 30.0)
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0

_TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    oci.exceptions.ServiceError,
    oci.exceptions.ClientError,
    oci.exceptions.RequestException,
    oci.exceptions.ConnectTimeout,
)


class ShipError(Exception):
    """An item could not be delivered; it stays in the backlog."""


class ShipConflict(ShipError):
    """The destination already contains different content under the item's name."""


class BacklogCorrupt(ShipError):
    """The backlog file cannot be read back; it is left untouched for an operator."""


@dataclass(frozen=True)
class ShipItem:
    """One unit to deliver: a unique key, the payload bytes and string attributes.

    Attributes:
        key: the object name or log entry id; unique per sink.
        payload: the bytes to deliver.
        attributes: sink-specific metadata, for example the event type of a log entry.
    """

    key: str
    payload: bytes
    attributes: dict[str, str]

    def to_line(self) -> bytes:
        """Serialise as one JSON line for the backlog file."""
        value = {
            "key": self.key,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "attributes": self.attributes,
        }
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8") + b"\n"

    @staticmethod
    def from_line(line: bytes) -> ShipItem:
        """Parse a line written by ``to_line``; raise ValueError when it is not one."""
        value = json.loads(line)
        return ShipItem(
            key=value["key"],
            payload=base64.b64decode(value["payload"], validate=True),
            attributes=dict(value["attributes"]),
        )


class Sink(Protocol):
    """A destination that delivers one item or raises ``ShipError``; delivery is idempotent."""

    name: str

    def deliver(self, item: ShipItem) -> None:
        """Deliver ``item``, or raise ``ShipError`` and leave nothing half-done."""
        ...


def segment_item(index: int, payload: bytes, prefix: str = "audit/segments/") -> ShipItem:
    """Build the item of a sealed audit log segment, named by its zero-padded index."""
    return ShipItem(key=f"{prefix}{index:012d}.jsonl", payload=payload, attributes={})


def checkpoint_item(size: int, text: str, prefix: str = "audit/checkpoints/") -> ShipItem:
    """Build the item of a checkpoint, named by the tree size it commits to."""
    return ShipItem(key=f"{prefix}{size:012d}.txt", payload=text.encode("utf-8"), attributes={})


def event_item(index: int, event: str, record: dict[str, Any]) -> ShipItem:
    """Build the log entry item of one audit record, keyed by its log index."""
    payload = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return ShipItem(key=f"audit-{index}", payload=payload, attributes={"event": event})


def backoff_delay(failures: int, draw: Callable[[], float]) -> float:
    """Return the wait after ``failures`` consecutive failures: capped exponential, full jitter.

    Args:
        failures: consecutive failed attempts, at least 1.
        draw: returns a uniform number in [0, 1), for example ``random.random``.
    """
    ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(failures - 1, 30))
    return max(BACKOFF_BASE_SECONDS / 2, ceiling * draw())


class ObjectStorageSink:
    """Puts items as objects in an OCI Object Storage bucket (API ``PutObject``).

    Args:
        client: an ``oci.object_storage.ObjectStorageClient``.
        namespace: the Object Storage namespace.
        bucket: the bucket, which should carry a retention rule so objects cannot be changed.
    """

    def __init__(self, client: Any, namespace: str, bucket: str) -> None:
        self.name = f"objectstorage:{bucket}"
        self._client = client
        self._namespace = namespace
        self._bucket = bucket

    @staticmethod
    def connect(
        auth: OciAuth,
        endpoint: str,
        namespace: str,
        bucket: str,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    ) -> ObjectStorageSink:
        """Build the SDK client without SDK retries; the ``Shipper`` does the retrying."""
        client = oci.object_storage.ObjectStorageClient(
            auth.config, service_endpoint=endpoint, **auth.client_kwargs(timeout)
        )
        return ObjectStorageSink(client, namespace, bucket)

    def deliver(self, item: ShipItem) -> None:
        """Put ``item`` unless an identical object exists.

        Raises:
            ShipConflict: when an object with that name but other content exists.
            ShipError: when the call fails.
        """
        md5 = base64.b64encode(hashlib.md5(item.payload, usedforsecurity=False).digest()).decode()
        try:
            self._client.put_object(
                self._namespace,
                self._bucket,
                item.key,
                item.payload,
                content_md5=md5,
                if_none_match="*",
            )
            return
        except oci.exceptions.ServiceError as error:
            if error.status != 412:
                raise ShipError(_describe("put_object", item.key, error)) from error
        except _TRANSPORT_ERRORS as error:
            raise ShipError(_describe("put_object", item.key, error)) from error

        # If-None-Match failed: the object exists, maybe from a delivery whose cursor update
        # was lost. It counts as delivered only if its content is the same.
        try:
            head = self._client.head_object(self._namespace, self._bucket, item.key)
        except _TRANSPORT_ERRORS as error:
            raise ShipError(_describe("head_object", item.key, error)) from error
        stored_md5 = head.headers.get("opc-content-md5")
        if stored_md5 != md5:
            raise ShipConflict(
                f"object {item.key} in bucket {self._bucket} exists with MD5 {stored_md5}, "
                f"expected {md5}; compare it with the local segment before anything else"
            )

    def retention_rules(self) -> list[Any]:
        """List the bucket's retention rules (API ``ListRetentionRules``).

        Raises:
            ShipError: when the call fails.
        """
        try:
            response = self._client.list_retention_rules(self._namespace, self._bucket)
        except _TRANSPORT_ERRORS as error:
            raise ShipError(_describe("list_retention_rules", self._bucket, error)) from error
        return list(response.data.items or [])


class LoggingSink:
    """Sends items as entries to an OCI Logging custom log (API ``PutLogs``).

    Args:
        client: an ``oci.loggingingestion.LoggingClient``.
        log_id: the OCID of the custom log.
        source: the ``source`` of each batch, for example the mint's host name.
        clock: returns the current time, seconds since the epoch.
    """

    def __init__(self, client: Any, log_id: str, source: str, clock: Callable[[], float]) -> None:
        self.name = f"logging:{log_id}"
        self._client = client
        self._log_id = log_id
        self._source = source
        self._clock = clock

    @staticmethod
    def connect(
        auth: OciAuth,
        endpoint: str,
        log_id: str,
        source: str,
        clock: Callable[[], float],
        timeout: tuple[float, float] = DEFAULT_TIMEOUT_SECONDS,
    ) -> LoggingSink:
        """Build the SDK client without SDK retries; the ``Shipper`` does the retrying."""
        client = oci.loggingingestion.LoggingClient(
            auth.config, service_endpoint=endpoint, **auth.client_kwargs(timeout)
        )
        return LoggingSink(client, log_id, source, clock)

    def deliver(self, item: ShipItem) -> None:
        """Send ``item`` as one entry of type ``ztmint.<event>``.

        Raises:
            ShipError: when the call fails.
        """
        now = datetime.fromtimestamp(self._clock(), tz=UTC)
        entry = oci.loggingingestion.models.LogEntry(
            data=item.payload.decode("utf-8"), id=item.key, time=now
        )
        batch = oci.loggingingestion.models.LogEntryBatch(
            entries=[entry],
            source=self._source,
            type=f"ztmint.{item.attributes.get('event', 'audit')}",
            defaultlogentrytime=now,
        )
        details = oci.loggingingestion.models.PutLogsDetails(
            specversion="1.0", log_entry_batches=[batch]
        )
        try:
            self._client.put_logs(self._log_id, details)
        except _TRANSPORT_ERRORS as error:
            raise ShipError(_describe("put_logs", item.key, error)) from error


class Shipper:
    """Durable, ordered delivery of items to one sink, with backoff on failure.

    Args:
        sink: the destination.
        state_dir: folder of the backlog and cursor files.
        clock: returns the current time, seconds since the epoch.
        registry: the Prometheus registry for the metrics; a private one when None.
        draw: returns a uniform number in [0, 1) for backoff jitter.
    """

    def __init__(
        self,
        sink: Sink,
        state_dir: Path,
        clock: Callable[[], float],
        registry: CollectorRegistry | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._draw = draw
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._next_attempt_at = 0.0
        safe_name = "".join(c if c.isalnum() or c in "-_" else "_" for c in sink.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        self._backlog_path = state_dir / f"{safe_name}.backlog.jsonl"
        self._cursor_path = state_dir / f"{safe_name}.cursor"
        self._items = self._load_backlog()
        self._delivered = self._load_cursor()

        self.registry = registry if registry is not None else CollectorRegistry()
        self._depth = Gauge(
            "ztmint_ship_backlog_items",
            "Items waiting to be delivered to the sink.",
            ["sink"],
            registry=self.registry,
        ).labels(sink=sink.name)
        self._errors = Counter(
            "ztmint_ship_failures",
            "Failed delivery attempts.",
            ["sink"],
            registry=self.registry,
        ).labels(sink=sink.name)
        self._depth.set(self.depth)

    @property
    def depth(self) -> int:
        """The number of items not yet delivered."""
        return len(self._items) - self._delivered

    def pending(self) -> list[ShipItem]:
        """Return the undelivered items, oldest first."""
        with self._lock:
            return self._items[self._delivered :]

    def enqueue(self, item: ShipItem) -> None:
        """Append ``item`` to the backlog and fsync it before returning."""
        with self._lock:
            fd = os.open(self._backlog_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, item.to_line())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._items.append(item)
            self._depth.set(self.depth)
        self._wake.set()

    def ship_pending(self) -> int:
        """Deliver pending items in order until one fails or the backlog is empty.

        Does nothing while a backoff is running. Returns the number of items delivered.
        """
        with self._lock:
            if self._clock() < self._next_attempt_at:
                return 0
            delivered = 0
            while self._delivered < len(self._items):
                item = self._items[self._delivered]
                try:
                    self._sink.deliver(item)
                except ShipError as error:
                    self._record_failure(item, error)
                    return delivered
                self._delivered += 1
                delivered += 1
                self._failures = 0
                self._write_cursor()
                self._depth.set(self.depth)
            if delivered and self._delivered == len(self._items):
                self._compact()
            return delivered

    def start(self) -> None:
        """Ship in a background thread, woken by ``enqueue`` or when a backoff ends."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"shipper-{self._sink.name}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread; pending items stay in the backlog."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.ship_pending()
            wait = max(0.0, self._next_attempt_at - self._clock()) if self.depth else None
            self._wake.wait(wait)
            self._wake.clear()

    def _record_failure(self, item: ShipItem, error: ShipError) -> None:
        self._failures += 1
        self._errors.inc()
        delay = backoff_delay(self._failures, self._draw)
        self._next_attempt_at = self._clock() + delay
        logger.warning(
            "ship_failed",
            extra={
                "sink": self._sink.name,
                "key": item.key,
                "failures": self._failures,
                "retry_in_seconds": round(delay, 1),
                "backlog": self.depth,
                "error": str(error),
            },
        )

    def _load_backlog(self) -> list[ShipItem]:
        try:
            data = self._backlog_path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        # A crash during enqueue can leave a torn last line; enqueue had not returned for it,
        # so the caller never relied on that item, and the tail is cut off.
        if lines[-1]:
            torn = len(lines[-1])
            logger.warning("ship_backlog_torn_line", extra={"bytes": torn})
            os.truncate(self._backlog_path, len(data) - torn)
        items = []
        for number, line in enumerate(lines[:-1], start=1):
            try:
                items.append(ShipItem.from_line(line))
            except (ValueError, KeyError, TypeError) as error:
                raise BacklogCorrupt(
                    f"line {number} of {self._backlog_path} is not a backlog item ({error}); "
                    "move the file aside and re-enqueue from the local audit log"
                ) from error
        return items

    def _load_cursor(self) -> int:
        try:
            value = int(self._cursor_path.read_text().strip())
        except FileNotFoundError:
            return 0
        except ValueError as error:
            raise BacklogCorrupt(f"{self._cursor_path} does not hold an item count") from error
        if not 0 <= value <= len(self._items):
            raise BacklogCorrupt(
                f"{self._cursor_path} records {value} items as delivered, but the backlog "
                f"contains {len(self._items)}; remove the cursor to deliver everything again"
            )
        return value

    def _write_cursor(self) -> None:
        _replace_file(self._cursor_path, f"{self._delivered}\n".encode("ascii"))

    def _compact(self) -> None:
        # Reset the cursor before emptying the backlog: a crash between the two steps then
        # delivers the drained items again, which the idempotent sinks absorb, instead of
        # leaving a cursor that points past the end of the backlog.
        _replace_file(self._cursor_path, b"0\n")
        self._delivered = 0
        _replace_file(self._backlog_path, b"")
        self._items = []


def _replace_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _describe(operation: str, key: str, error: Exception) -> str:
    if isinstance(error, oci.exceptions.ServiceError):
        return f"{operation} {key} failed with HTTP {error.status} {error.code}"
    return f"{operation} {key} failed: {type(error).__name__}: {error}"
