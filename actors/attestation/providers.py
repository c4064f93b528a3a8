"""Report providers: where a signer gets its SEV-SNP attestation report and certificates.

``ReportProvider`` is the interface. ``ConfigfsTsmProvider`` talks to the Linux
configfs-tsm report interface of a confidential VM (Documentation/ABI/testing/
configfs-tsm in the Linux tree). ``DevelopmentProvider`` (in ``development.py``) signs
real-format reports with a locally generated chain for machines without SEV-SNP.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from actors.attestation.development import DevelopmentProvider
from actors.attestation.errors import ProviderError, ReportMalformed
from actors.attestation.evidence import Evidence
from actors.attestation.report import REPORT_SIZE, SigningKey, report_version_unverified

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "ConfigfsTsmProvider",
    "DevelopmentProvider",
    "ReportProvider",
    "VCEK_GUID",
    "VLEK_GUID",
    "VcekCache",
    "encode_certificate_table",
    "parse_certificate_table",
]

# GUIDs of the SEV-SNP certificate table (GHCB specification, publication 56421,
# "SNP Extended Guest Request"). On the wire a GUID is its 16 bytes in RFC 4122 order.
VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
_ENTRY = struct.Struct("<16sII")
_REPORT_DATA_SIZE = 64
_SEV_GUEST_PROVIDER = "sev_guest"


class ReportProvider(Protocol):
    """Produces an attestation report whose REPORT_DATA is the caller's 64 bytes."""

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a fresh report over ``report_data`` with its (signer, ASK, ARK) chain."""
        ...


def parse_certificate_table(table: bytes) -> dict[uuid.UUID, bytes]:
    """Split a certificate table into ``{GUID: certificate bytes}``.

    The table is a list of 24-byte entries: a 16-byte GUID, then the offset of the
    certificate from the start of the table and its length, both little-endian u32. An
    all-zero entry ends the list, and the certificates follow it.

    Raises:
        ReportMalformed: an entry is cut short, points outside the table, or repeats a GUID.
    """
    entries: dict[uuid.UUID, bytes] = {}
    position = 0
    while True:
        if position + _ENTRY.size > len(table):
            raise ReportMalformed("certificate table ends before its all-zero terminator entry")
        guid_bytes, offset, length = _ENTRY.unpack_from(table, position)
        position += _ENTRY.size
        if guid_bytes == bytes(16) and offset == 0 and length == 0:
            return entries
        guid = uuid.UUID(bytes=guid_bytes)
        if offset + length > len(table) or offset < position:
            raise ReportMalformed(
                f"certificate table entry {guid} points at bytes {offset}-{offset + length}, "
                f"outside the {len(table)}-byte table"
            )
        if guid in entries:
            raise ReportMalformed(f"certificate table lists {guid} twice")
        entries[guid] = table[offset : offset + length]


def encode_certificate_table(certificates: Mapping[uuid.UUID, bytes]) -> bytes:
    """Build a certificate table in the layout ``parse_certificate_table`` reads."""
    header_size = _ENTRY.size * (len(certificates) + 1)
    header = bytearray()
    body = bytearray()
    for guid, der in certificates.items():
        header += _ENTRY.pack(guid.bytes, header_size + len(body), len(der))
        body += der
    header += _ENTRY.pack(bytes(16), 0, 0)
    return bytes(header + body)


class VcekCache:
    """A folder of VCEKs keyed by chip id and reported TCB, plus the ASK and ARK.

    Hosts often return no certificates with the report, so signers keep the VCEK (fetched
    from AMD's KDS by an operator, or seen in an earlier certificate table) here. Layout:
    ``vcek-<chip_id hex>-<reported_tcb as 16 hex digits>.der``, ``ask.der``, ``ark.der``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def _vcek_path(self, chip_id: bytes, reported_tcb: int) -> Path:
        return self.folder / f"vcek-{chip_id.hex()}-{reported_tcb:016x}.der"

    def lookup(self, chip_id: bytes, reported_tcb: int) -> tuple[bytes, bytes, bytes] | None:
        """Return (VCEK, ASK, ARK) DER for the chip and TCB, or ``None`` if any is missing."""
        paths = (
            self._vcek_path(chip_id, reported_tcb),
            self.folder / "ask.der",
            self.folder / "ark.der",
        )
        if not all(path.is_file() for path in paths):
            return None
        vcek, ask, ark = (path.read_bytes() for path in paths)
        return vcek, ask, ark

    def store(self, chip_id: bytes, reported_tcb: int, chain: tuple[bytes, bytes, bytes]) -> None:
        """Store a (VCEK, ASK, ARK) chain, replacing files atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        targets = (
            self._vcek_path(chip_id, reported_tcb),
            self.folder / "ask.der",
            self.folder / "ark.der",
        )
        for target, der in zip(targets, chain, strict=True):
            temporary = target.with_suffix(".tmp")
            temporary.write_bytes(der)
            os.replace(temporary, target)


class ConfigfsTsmProvider:
    """Get reports through configfs-tsm (``/sys/kernel/config/tsm/report``).

    A report entry is a folder that the kernel fills with files when it is created with
    ``mkdir``. This class writes ``inblob`` (the 64 bytes of REPORT_DATA) and optionally
    ``privlevel`` (the VMPL to request). It reads ``outblob`` (the report), ``auxblob``
    (the certificate table, possibly empty) and ``provider`` (``sev_guest`` on SEV-SNP).
    ``generation`` is a counter the kernel increments on every write, so a changed value
    reveals another writer.

    If ``auxblob`` contains no VCEK, the chain comes from ``cache``. A VCEK found in
    ``auxblob`` is written to the cache for later use.

    Limitations:
        Only VCEK chains can come from the cache; a VLEK must arrive in ``auxblob``.
        This class cannot run on a machine without SEV-SNP; its tests use a folder with
        the same files and real report and certificate bytes.
    """

    def __init__(
        self,
        cache: VcekCache,
        root: Path = Path("/sys/kernel/config/tsm/report"),
        entry_name: str = "ztmint",
        privlevel: int | None = None,
    ) -> None:
        self.cache = cache
        self.entry = Path(root) / entry_name
        self.privlevel = privlevel

    def _read(self, name: str) -> bytes:
        try:
            return (self.entry / name).read_bytes()
        except OSError as exc:
            raise ProviderError(f"cannot read {self.entry / name}: {exc}") from exc

    def _write(self, name: str, data: bytes) -> None:
        try:
            (self.entry / name).write_bytes(data)
        except OSError as exc:
            raise ProviderError(f"cannot write {self.entry / name}: {exc}") from exc

    def get_report(self, report_data: bytes) -> Evidence:
        """Request a report over ``report_data`` and collect its certificate chain.

        Raises:
            ValueError: ``report_data`` is not 64 bytes.
            ProviderError: the interface is missing, not SEV-SNP, changed by another
                process during the request, or no certificate chain is available.
            ReportMalformed: the report or the certificate table is malformed.
        """
        if len(report_data) != _REPORT_DATA_SIZE:
            raise ValueError(f"report_data must be 64 bytes, got {len(report_data)}")
        try:
            self.entry.mkdir(exist_ok=True)
        except OSError as exc:
            raise ProviderError(
                f"cannot create {self.entry}: {exc}; is configfs mounted and the guest "
                "an SEV-SNP VM with the sev-guest driver?"
            ) from exc
        provider = self._read("provider").decode("ascii", "replace").strip()
        if provider != _SEV_GUEST_PROVIDER:
            raise ProviderError(f"configfs-tsm provider is {provider!r}; expected 'sev_guest'")

        if self.privlevel is not None:
            self._write("privlevel", str(self.privlevel).encode("ascii"))
        self._write("inblob", report_data)
        generation = self._read("generation").strip()
        report = self._read("outblob")
        auxblob = self._read("auxblob") if (self.entry / "auxblob").exists() else b""
        if self._read("generation").strip() != generation:
            raise ProviderError(
                f"{self.entry} was written by another process during the request; "
                "retry, and give each process its own entry_name"
            )

        if len(report) != REPORT_SIZE:
            raise ReportMalformed(f"outblob is {len(report)} bytes; expected {REPORT_SIZE}")
        report_version_unverified(report)
        return Evidence(report=report, cert_chain=self._chain_for(report, auxblob))

    def _chain_for(self, report: bytes, auxblob: bytes) -> tuple[bytes, bytes, bytes]:
        # Routing only: the chip id and TCB choose a cache file, and verification later
        # checks that the certificate really belongs to them.
        chip_id = report[0x1A0:0x1E0]
        reported_tcb = struct.unpack_from("<Q", report, 0x180)[0]
        signing_key = struct.unpack_from("<I", report, 0x48)[0] >> 2 & 0b111
        table = parse_certificate_table(auxblob) if auxblob.strip(b"\0") else {}
        signer_guid = VLEK_GUID if signing_key == SigningKey.VLEK else VCEK_GUID
        if all(guid in table for guid in (signer_guid, ASK_GUID, ARK_GUID)):
            chain = (table[signer_guid], table[ASK_GUID], table[ARK_GUID])
            if signer_guid == VCEK_GUID:
                self.cache.store(chip_id, reported_tcb, chain)
            return chain
        cached = self.cache.lookup(chip_id, reported_tcb)
        if cached is None or signer_guid == VLEK_GUID:
            raise ProviderError(
                f"no certificate chain for chip {chip_id.hex()[:16]}... at TCB "
                f"{reported_tcb:#018x}: auxblob lacks it and {self.cache.folder} has no VCEK; "
                "fetch the VCEK from AMD's KDS into the cache"
            )
        return cached
