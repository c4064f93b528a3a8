"""Serialize SEV-SNP ATTESTATION_REPORTs, for the development provider and for tests.

The layout is the one ``report.parse_report`` reads (AMD SEV-SNP Firmware ABI
Specification, publication 56860, table "ATTESTATION_REPORT Structure").
"""

from __future__ import annotations

import struct

from actors.attestation.report import (
    REPORT_SIZE,
    SIGNATURE_COMPONENT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
)


def encode_signed_part(report: AttestationReport) -> bytes:
    """Serialize bytes 0x000-0x29F of ``report`` (the part the signature covers).

    Used by the development provider to produce real-format reports. Reserved bytes are
    written as zero, so for a report parsed from firmware output the result equals
    ``report.signed_bytes``.
    """
    out = bytearray(SIGNED_SIZE)
    key_info = (
        int(report.author_key_en) | int(report.mask_chip_key) << 1 | int(report.signing_key) << 2
    )
    struct.pack_into("<IIQ", out, 0x000, report.version, report.guest_svn, report.policy.raw)
    out[0x010:0x020] = _exact(report.family_id, 16, "family_id")
    out[0x020:0x030] = _exact(report.image_id, 16, "image_id")
    struct.pack_into(
        "<IIQQI",
        out,
        0x030,
        report.vmpl,
        report.signature_algo,
        report.current_tcb.raw,
        report.platform_info.raw,
        key_info,
    )
    out[0x050:0x090] = _exact(report.report_data, 64, "report_data")
    out[0x090:0x0C0] = _exact(report.measurement, 48, "measurement")
    out[0x0C0:0x0E0] = _exact(report.host_data, 32, "host_data")
    out[0x0E0:0x110] = _exact(report.id_key_digest, 48, "id_key_digest")
    out[0x110:0x140] = _exact(report.author_key_digest, 48, "author_key_digest")
    out[0x140:0x160] = _exact(report.report_id, 32, "report_id")
    out[0x160:0x180] = _exact(report.report_id_ma, 32, "report_id_ma")
    struct.pack_into("<Q", out, 0x180, report.reported_tcb.raw)
    if report.version >= 3:
        out[0x188:0x18B] = bytes(
            [report.cpuid_fam_id or 0, report.cpuid_mod_id or 0, report.cpuid_step or 0]
        )
    out[0x1A0:0x1E0] = _exact(report.chip_id, 64, "chip_id")
    struct.pack_into("<Q", out, 0x1E0, report.committed_tcb.raw)
    out[0x1E8:0x1EB] = bytes([report.current_build, report.current_minor, report.current_major])
    out[0x1EC:0x1EF] = bytes(
        [report.committed_build, report.committed_minor, report.committed_major]
    )
    struct.pack_into("<Q", out, 0x1F0, report.launch_tcb.raw)
    if report.version >= 5:
        struct.pack_into(
            "<QQ", out, 0x1F8, report.launch_mit_vector or 0, report.current_mit_vector or 0
        )
    return bytes(out)


def attach_signature(signed_part: bytes, r: int, s: int) -> bytes:
    """Append the 512-byte signature area (r and s little-endian, rest zero) to a report."""
    if len(signed_part) != SIGNED_SIZE:
        raise ValueError(f"signed part is {len(signed_part)} bytes; expected {SIGNED_SIZE}")
    signature = bytearray(REPORT_SIZE - SIGNED_SIZE)
    signature[0:SIGNATURE_COMPONENT_SIZE] = r.to_bytes(SIGNATURE_COMPONENT_SIZE, "little")
    signature[SIGNATURE_COMPONENT_SIZE : 2 * SIGNATURE_COMPONENT_SIZE] = s.to_bytes(
        SIGNATURE_COMPONENT_SIZE, "little"
    )
    return signed_part + bytes(signature)


def _exact(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return value
