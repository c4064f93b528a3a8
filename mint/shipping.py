"""Copy the mint's audit log to OCI: records to Logging, checkpoints and segments to Object Storage.

The local audit log (``mint.audit``) is always written and fsynced first. ``AuditShipping`` is
called back by ``AuditLog`` after each append, under the log's lock, and only enqueues: it
appends the item to a ``mint.oci_sinks.Shipper`` backlog on local disk, and a background
thread per sink uploads in order, retrying with backoff. So a slow or unreachable OCI never
delays or fails a mint. What is enqueued:

- every record, as one Logging entry keyed ``audit-<index>`` (``event_item``);
- every signed checkpoint, as the object ``audit/checkpoints/<size>.txt``;
- every sealed segment: after each ``segment_records`` records, the object
  ``audit/segments/<segment>.jsonl`` holding those record lines, byte for byte as in the log.

Variables (shipping is off unless ``ZTMINT_AUDIT_BUCKET`` or ``ZTMINT_OCI_LOG_ID`` is set):

- ``ZTMINT_AUDIT_BUCKET``, ``ZTMINT_OCI_NAMESPACE``, ``ZTMINT_OCI_OBJECT_STORAGE_ENDPOINT``:
  the Object Storage bucket for checkpoints and segments, its namespace and the endpoint URL.
- ``ZTMINT_OCI_LOG_ID``, ``ZTMINT_OCI_LOGGING_ENDPOINT``: the custom log for records and the
  Logging Ingestion endpoint URL.
- ``ZTMINT_AUDIT_SEGMENT_RECORDS``: records per segment, default 1000.
- ``ZTMINT_AUDIT_SOURCE``: the ``source`` of Logging batches, default the host name.
- ``ZTMINT_OCI_AUTH``, ``ZTMINT_OCI_CONFIG_FILE``, ``ZTMINT_OCI_PROFILE``: the credentials,
  shared with the OCI KMS backend (``mint.kms_select``).

The backlogs live in ``<state>/shipping``. The number of sealed segments already enqueued is
kept in ``<state>/shipping/segments.next``, so a segment whose last record was written just
before a crash is enqueued when the mint starts again.

Limitations:
    A record written just before a crash, whose callback did not run, is in the local log
    and in its segment but never reaches Logging. Checkpoints are shipped only as they are
    signed. Only records appended by this process are shipped one by one. When several
    processes append to one log, the others' records reach Object Storage in segments
    only, and each process would upload the same segments, so run one shipping process per
    log.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric

from mint.kms_select import ErrorFactory, OciAuthSettings, oci_auth_settings_from_env

if TYPE_CHECKING:
    from mint.oci_sinks import Shipper

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_RECORDS = 1000
SHIPPING_DIR = "shipping"
_SEGMENT_CURSOR_FILE = "segments.next"


class ShippingStateCorrupt(ValueError):
    """The segment cursor file cannot be read back; it is left untouched for an operator."""


@dataclass(frozen=True)
class ShippingSettings:
    """Destinations of the audit log copies in OCI; a sink whose name is None is off.

    Attributes:
        auth: the OCI credentials.
        bucket: Object Storage bucket for checkpoints and segments.
        namespace: the bucket's Object Storage namespace.
        object_storage_endpoint: the Object Storage endpoint URL.
        log_id: OCID of the Logging custom log for records.
        logging_endpoint: the Logging Ingestion endpoint URL.
        segment_records: records per sealed segment.
        source: ``source`` of each Logging batch.
    """

    auth: OciAuthSettings
    bucket: str | None = None
    namespace: str | None = None
    object_storage_endpoint: str | None = None
    log_id: str | None = None
    logging_endpoint: str | None = None
    segment_records: int = DEFAULT_SEGMENT_RECORDS
    source: str = "ztmint-mint"


def shipping_settings_from_env(
    env: Mapping[str, str], error: ErrorFactory
) -> ShippingSettings | None:
    """Read the shipping variables; return None when neither sink is configured.

    Raises:
        Exception: built by ``error``, naming the missing or invalid variable.
    """
    bucket = env.get("ZTMINT_AUDIT_BUCKET") or None
    log_id = env.get("ZTMINT_OCI_LOG_ID") or None
    if bucket is None and log_id is None:
        return None
    settings = ShippingSettings(
        auth=oci_auth_settings_from_env(env, error),
        bucket=bucket,
        namespace=env.get("ZTMINT_OCI_NAMESPACE") or None,
        object_storage_endpoint=env.get("ZTMINT_OCI_OBJECT_STORAGE_ENDPOINT") or None,
        log_id=log_id,
        logging_endpoint=env.get("ZTMINT_OCI_LOGGING_ENDPOINT") or None,
        segment_records=_parse_segment_records(env.get("ZTMINT_AUDIT_SEGMENT_RECORDS"), error),
        source=env.get("ZTMINT_AUDIT_SOURCE") or socket.gethostname(),
    )
    if bucket is not None:
        for name, value in (
            ("ZTMINT_OCI_NAMESPACE", settings.namespace),
            ("ZTMINT_OCI_OBJECT_STORAGE_ENDPOINT", settings.object_storage_endpoint),
        ):
            if value is None:
                raise error(f"ZTMINT_AUDIT_BUCKET is set, so {name} is needed too; set it")
    if log_id is not None and settings.logging_endpoint is None:
        raise error(
            "ZTMINT_OCI_LOG_ID is set, so ZTMINT_OCI_LOGGING_ENDPOINT is needed too; set it"
        )
    return settings


def _parse_segment_records(text: str | None, error: ErrorFactory) -> int:
    if text is None:
        return DEFAULT_SEGMENT_RECORDS
    if not text.isdigit() or int(text) < 1:
        raise error(f"ZTMINT_AUDIT_SEGMENT_RECORDS is {text!r}; expected a positive integer")
    return int(text)


class AuditShipping:
    """Enqueue audit records, checkpoints and sealed segments to the OCI shippers.

    Build it with ``open``. Pass ``record_appended`` to ``AuditLog`` as ``on_append``.

    Args:
        objects: the shipper to Object Storage, or None.
        events: the shipper to Logging, or None.
        audit_path: the audit log file, read at start for the open segment.
        state_dir: the folder of the segment cursor.
        segment_records: records per segment.
    """

    def __init__(
        self,
        *,
        objects: Shipper | None,
        events: Shipper | None,
        audit_path: Path,
        state_dir: Path,
        segment_records: int,
    ) -> None:
        self._objects = objects
        self._events = events
        self._audit_path = audit_path
        self._cursor_path = state_dir / _SEGMENT_CURSOR_FILE
        self._segment_records = segment_records
        self._enqueue_failures = 0
        self._open_segment: list[bytes] = []
        self._next_index = 0
        state_dir.mkdir(parents=True, exist_ok=True)
        self._catch_up()

    @staticmethod
    def open(
        settings: ShippingSettings,
        state_dir: Path,
        audit_path: Path,
        clock: Callable[[], float],
    ) -> AuditShipping:
        """Connect the configured sinks and load their backlogs from ``state_dir/shipping``.

        Raises:
            KmsError: when the OCI credentials cannot be loaded.
            BacklogCorrupt: when a backlog file cannot be read back.
        """
        from mint.oci_sinks import LoggingSink, ObjectStorageSink, Shipper

        auth = settings.auth.open()
        folder = state_dir / SHIPPING_DIR
        objects = events = None
        if settings.bucket and settings.namespace and settings.object_storage_endpoint:
            object_sink = ObjectStorageSink.connect(
                auth, settings.object_storage_endpoint, settings.namespace, settings.bucket
            )
            objects = Shipper(object_sink, folder, clock)
        if settings.log_id and settings.logging_endpoint:
            log_sink = LoggingSink.connect(
                auth, settings.logging_endpoint, settings.log_id, settings.source, clock
            )
            events = Shipper(log_sink, folder, clock)
        return AuditShipping(
            objects=objects,
            events=events,
            audit_path=audit_path,
            state_dir=folder,
            segment_records=settings.segment_records,
        )

    def __repr__(self) -> str:
        return f"AuditShipping(sinks={len(self.shippers)}, depth={self.depth})"

    @property
    def shippers(self) -> list[Shipper]:
        """The configured shippers: Object Storage first, then Logging."""
        return [shipper for shipper in (self._objects, self._events) if shipper is not None]

    @property
    def depth(self) -> int:
        """Items not yet delivered, over all sinks."""
        return sum(shipper.depth for shipper in self.shippers)

    def record_appended(self, index: int, line: bytes, checkpoint: str | None) -> None:
        """Enqueue one appended record, its checkpoint, and the segment it seals.

        Called by ``AuditLog`` under its lock, after the record is on disk. A backlog write
        that fails with ``OSError``, or a record that cannot be parsed, is logged and counted
        instead of raised, because the record is already in the local log and the mint must
        still return its token.
        """
        from mint.oci_sinks import checkpoint_item, event_item

        try:
            if index != self._next_index:
                # Another process appended in between: rebuild the open segment from the file.
                self._catch_up()
            if self._events is not None:
                record = json.loads(line)
                self._events.enqueue(event_item(index, str(record["event"]), record))
            if index == self._next_index:
                self._open_segment.append(line)
                self._next_index = index + 1
                if len(self._open_segment) == self._segment_records:
                    self._seal(index // self._segment_records, self._open_segment)
                    self._open_segment = []
            if checkpoint is not None and self._objects is not None:
                self._objects.enqueue(checkpoint_item(index + 1, checkpoint))
        except (OSError, ValueError, KeyError) as error:
            self._enqueue_failures += 1
            log.error(
                "event=audit_ship_enqueue_failed index=%d error=%s; the record is in the "
                "local log, ship it by hand",
                index,
                error,
            )

    def ship_pending(self) -> int:
        """Deliver what each shipper can now, oldest first; return the items delivered."""
        return sum(shipper.ship_pending() for shipper in self.shippers)

    def start(self) -> None:
        """Start one background delivery thread per sink."""
        for shipper in self.shippers:
            shipper.start()

    def stop(self) -> None:
        """Stop the delivery threads; undelivered items stay in the backlogs on disk."""
        for shipper in self.shippers:
            shipper.stop()

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Expose the backlog gauge and failure counters in ``registry`` (the mint's /metrics)."""
        registry.register(_ShippingCollector(self))

    def collect(self) -> Iterator[Metric]:
        """Yield the shippers' metric families, merged by name, and the enqueue failures."""
        merged: dict[str, Metric] = {}
        for shipper in self.shippers:
            for family in shipper.registry.collect():
                if family.name not in merged:
                    merged[family.name] = Metric(family.name, family.documentation, family.type)
                merged[family.name].samples.extend(family.samples)
        yield from merged.values()
        failures = CounterMetricFamily(
            "ztmint_audit_ship_enqueue_failures",
            "Audit records whose shipping backlog could not be written.",
        )
        failures.add_metric([], self._enqueue_failures)
        yield failures

    def _seal(self, segment: int, lines: list[bytes]) -> None:
        from mint.oci_sinks import segment_item

        if self._objects is not None:
            self._objects.enqueue(segment_item(segment, b"".join(line + b"\n" for line in lines)))
        _replace_file(self._cursor_path, f"{segment + 1}\n".encode("ascii"))

    def _catch_up(self) -> None:
        """Enqueue segments sealed but not yet enqueued, and load the open segment."""
        lines = _complete_lines(self._audit_path)
        sealed = len(lines) // self._segment_records
        for segment in range(self._read_cursor(), sealed):
            start = segment * self._segment_records
            log.info("event=audit_segment_caught_up segment=%d", segment)
            self._seal(segment, lines[start : start + self._segment_records])
        self._open_segment = lines[sealed * self._segment_records :]
        self._next_index = len(lines)

    def _read_cursor(self) -> int:
        try:
            text = self._cursor_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise ShippingStateCorrupt(
                f"{self._cursor_path} does not contain a segment number; write the number of "
                "segments already uploaded into it, or remove it to upload every segment again"
            )
        return int(text)


class _ShippingCollector:
    def __init__(self, shipping: AuditShipping) -> None:
        self._shipping = shipping

    def collect(self) -> Iterator[Metric]:
        return self._shipping.collect()


def _complete_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data.split(b"\n")[:-1]


def _replace_file(path: Path, data: bytes) -> None:
    temporary = path.with_name(f"{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
