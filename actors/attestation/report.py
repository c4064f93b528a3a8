"""Parse the SEV-SNP ATTESTATION_REPORT structure (report versions 2 to 5).

Source: AMD "SEV Secure Nested Paging Firmware ABI Specification" (publication 56860),
table "ATTESTATION_REPORT Structure". The report is 1184 (0x4A0) bytes, little-endian.
Bytes 0x000-0x29F are signed; bytes 0x2A0-0x49F hold the signature (ECDSA P-384 r and s
as 72-byte little-endian integers, then reserved bytes).

Version differences handled here:

* version 3 added CPUID_FAM_ID, CPUID_MOD_ID and CPUID_STEP at 0x188-0x18A; version 2
  keeps 0x188-0x19F reserved, so its product must come from the certificate chain.
* version 5 added LAUNCH_MIT_VECTOR (0x1F8) and CURRENT_MIT_VECTOR (0x200).

Security:
    ``parse_report`` only checks the structure. Nothing in an ``AttestationReport`` may be
    trusted until ``actors.attestation.verify.verify_evidence`` has checked its signature
    and certificate chain.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from actors.attestation.errors import (
    ReportMalformed,
    ReportVersionUnsupported,
    SignatureAlgorithmUnsupported,
    WrongProduct,
)
from actors.attestation.tcb import Product, TcbVersion, product_from_cpuid

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
SIGNATURE_R_OFFSET = 0x2A0
SIGNATURE_S_OFFSET = 0x2E8
SIGNATURE_COMPONENT_SIZE = 72
SUPPORTED_VERSIONS = range(2, 6)
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1

# Byte ranges [start, end) that the specification marks reserved, per report version.
# The signature area after S is reserved too, although it is not signed.
_RESERVED_COMMON: tuple[tuple[int, int], ...] = (
    (0x04C, 0x050),
    (0x1EB, 0x1EC),
    (0x1EF, 0x1F0),
    (0x208, 0x2A0),
    (SIGNATURE_S_OFFSET + SIGNATURE_COMPONENT_SIZE, REPORT_SIZE),
)
_RESERVED_CPUID_V2 = (0x188, 0x1A0)
_RESERVED_CPUID_V3 = (0x18B, 0x1A0)
_RESERVED_MIT_VECTORS = (0x1F8, 0x208)

_KEY_INFO_RESERVED_MASK = 0xFFFF_FFE0
_POLICY_RESERVED_MASK = ~((1 << 26) - 1) & 0xFFFF_FFFF_FFFF_FFFF
_POLICY_MUST_BE_ONE = 1 << 17


class SigningKey(IntEnum):
    """SIGNING_KEY selection (bits 4:2 of the word at 0x48)."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class GuestPolicy:
    """The guest POLICY (ABI spec table "Guest Policy Structure"), decoded bit by bit.

    Attributes:
        raw: the 64-bit POLICY value.
        abi_minor: minimum ABI minor version the guest accepts (bits 7:0).
        abi_major: minimum ABI major version the guest accepts (bits 15:8).
        smt: SMT may be enabled on the host (bit 16).
        migrate_ma: a migration agent may be associated with the guest (bit 18).
        debug: the host may debug the guest, which exposes its memory (bit 19).
        single_socket: the guest may run on one socket only (bit 20).
        cxl_allow: CXL may be populated with devices or memory (bit 21).
        mem_aes_256_xts: AES-256-XTS memory encryption is required (bit 22).
        rapl_dis: running average power limit must be disabled (bit 23).
        ciphertext_hiding: ciphertext hiding must be enabled (bit 24).
        page_swap_disable: guest page swap commands are disabled (bit 25).
    """

    raw: int
    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool
    debug: bool
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool

    @classmethod
    def decode(cls, raw: int) -> GuestPolicy:
        """Decode POLICY; bit 17 must be one and bits 63:26 must be zero.

        Raises:
            ReportMalformed: a reserved bit has the wrong value.
        """
        if not raw & _POLICY_MUST_BE_ONE:
            raise ReportMalformed(f"POLICY {raw:#x} has reserved bit 17 clear; it must be one")
        if raw & _POLICY_RESERVED_MASK:
            raise ReportMalformed(f"POLICY {raw:#x} sets reserved bits 63:26; they must be zero")
        return cls(
            raw=raw,
            abi_minor=raw & 0xFF,
            abi_major=(raw >> 8) & 0xFF,
            smt=bool(raw >> 16 & 1),
            migrate_ma=bool(raw >> 18 & 1),
            debug=bool(raw >> 19 & 1),
            single_socket=bool(raw >> 20 & 1),
            cxl_allow=bool(raw >> 21 & 1),
            mem_aes_256_xts=bool(raw >> 22 & 1),
            rapl_dis=bool(raw >> 23 & 1),
            ciphertext_hiding=bool(raw >> 24 & 1),
            page_swap_disable=bool(raw >> 25 & 1),
        )


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_INFO: the platform state when the report was generated.

    Attributes:
        raw: the 64-bit value; bits not decoded below are kept here.
        smt_en: SMT is enabled (bit 0).
        tsme_en: transparent SME is enabled (bit 1).
        ecc_en: the platform uses error-correcting memory (bit 2).
        rapl_dis: running average power limit is disabled (bit 3).
        ciphertext_hiding_en: ciphertext hiding is enabled (bit 4).
        alias_check_complete: the firmware's memory alias check completed (bit 5).

    Limitations:
        Newer firmware defines further bits; they are kept in ``raw`` and not rejected.
    """

    raw: int
    smt_en: bool
    tsme_en: bool
    ecc_en: bool
    rapl_dis: bool
    ciphertext_hiding_en: bool
    alias_check_complete: bool

    @classmethod
    def decode(cls, raw: int) -> PlatformInfo:
        """Decode PLATFORM_INFO."""
        return cls(
            raw=raw,
            smt_en=bool(raw & 1),
            tsme_en=bool(raw >> 1 & 1),
            ecc_en=bool(raw >> 2 & 1),
            rapl_dis=bool(raw >> 3 & 1),
            ciphertext_hiding_en=bool(raw >> 4 & 1),
            alias_check_complete=bool(raw >> 5 & 1),
        )


@dataclass(frozen=True)
class AttestationReport:
    """An SEV-SNP ATTESTATION_REPORT, every field named as in the ABI specification.

    Byte strings are kept in wire order. ``cpuid_*`` are ``None`` before version 3 and the
    mitigation vectors are ``None`` before version 5. ``signature_r`` and ``signature_s``
    are the integers decoded from their 72-byte little-endian fields. ``raw`` contains the
    1184 bytes the report was parsed from; the signature is checked over ``raw``, never
    over a re-encoding.
    """

    product: Product
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    author_key_en: bool
    mask_chip_key: bool
    signing_key: SigningKey
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000-0x29F of ``raw``, the part the signature covers."""
        return self.raw[:SIGNED_SIZE]


def _u8(data: bytes, offset: int) -> int:
    return data[offset]


def _u32(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<I", data, offset)[0])


def _u64(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<Q", data, offset)[0])


def report_version_unverified(data: bytes) -> int:
    """Return the VERSION field after checking only the length (for routing, not for trust)."""
    if len(data) != REPORT_SIZE:
        raise ReportMalformed(f"report is {len(data)} bytes; an ATTESTATION_REPORT is 1184")
    return _u32(data, 0x000)


def _reserved_ranges(version: int) -> list[tuple[int, int]]:
    ranges = list(_RESERVED_COMMON)
    ranges.append(_RESERVED_CPUID_V2 if version == 2 else _RESERVED_CPUID_V3)
    if version in (2, 3):
        ranges.append(_RESERVED_MIT_VECTORS)
    # NOTE: report version 4 is not described separately here. Some firmware releases
    # fill 0x1F8-0x207 in version 4 reports, so that range is left unchecked for it.
    return ranges


def _check_reserved(data: bytes, version: int) -> None:
    for start, end in _reserved_ranges(version):
        if any(data[start:end]):
            raise ReportMalformed(
                f"reserved bytes {start:#05x}-{end - 1:#05x} are not zero in a version "
                f"{version} report; the report is corrupt or from an unsupported firmware"
            )


def _resolve_product(data: bytes, version: int, product: Product | None) -> Product:
    if version == 2:
        if product is None:
            raise ValueError(
                "report version 2 carries no CPUID; pass the product taken from the "
                "certificate chain"
            )
        return product
    from_cpuid = product_from_cpuid(_u8(data, 0x188), _u8(data, 0x189))
    if product is not None and product is not from_cpuid:
        raise WrongProduct(
            f"report CPUID names {from_cpuid.value} but {product.value} was expected; "
            "use the certificate chain of the product that produced the report"
        )
    return from_cpuid


def parse_report(data: bytes, product: Product | None = None) -> AttestationReport:
    """Parse a 1184-byte ATTESTATION_REPORT and check its structure (not its signature).

    Args:
        data: the report bytes as returned by the firmware.
        product: the product the report is expected from. Required for version 2
            reports, which carry no CPUID; for version 3 and later it must match CPUID.

    Returns:
        The parsed report; TCB fields are decoded with the product's byte layout.

    Raises:
        ReportMalformed: wrong length, a reserved field is not zero, or a TCB value does
            not fit the product's layout.
        ReportVersionUnsupported: VERSION is not 2, 3, 4 or 5.
        SignatureAlgorithmUnsupported: SIGNATURE_ALGO is not 1 (ECDSA P-384, SHA-384).
        WrongProduct: CPUID names another product than ``product``, or no known one.
        ValueError: a version 2 report was passed without ``product``.

    Security:
        The result is unverified. Check it with ``verify_evidence`` before use.
    """
    version = report_version_unverified(data)
    if version not in SUPPORTED_VERSIONS:
        raise ReportVersionUnsupported(
            f"report VERSION is {version}; this parser supports versions 2 to 5"
        )
    signature_algo = _u32(data, 0x034)
    if signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise SignatureAlgorithmUnsupported(
            f"SIGNATURE_ALGO is {signature_algo}; only 1 (ECDSA P-384 with SHA-384) is defined"
        )
    key_info = _u32(data, 0x048)
    if key_info & _KEY_INFO_RESERVED_MASK:
        raise ReportMalformed(f"word 0x048 is {key_info:#x}; its bits 31:5 must be zero")
    signing_key_value = key_info >> 2 & 0b111
    try:
        signing_key = SigningKey(signing_key_value)
    except ValueError:
        raise ReportMalformed(
            f"SIGNING_KEY is {signing_key_value}; defined values are 0 (VCEK), 1 (VLEK), 7 (none)"
        ) from None
    _check_reserved(data, version)
    resolved = _resolve_product(data, version, product)

    def tcb(offset: int, name: str) -> TcbVersion:
        return TcbVersion.decode(_u64(data, offset), resolved, name)

    has_cpuid = version >= 3
    has_mit_vectors = version >= 5
    return AttestationReport(
        product=resolved,
        version=version,
        guest_svn=_u32(data, 0x004),
        policy=GuestPolicy.decode(_u64(data, 0x008)),
        family_id=data[0x010:0x020],
        image_id=data[0x020:0x030],
        vmpl=_u32(data, 0x030),
        signature_algo=signature_algo,
        current_tcb=tcb(0x038, "CURRENT_TCB"),
        platform_info=PlatformInfo.decode(_u64(data, 0x040)),
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=signing_key,
        report_data=data[0x050:0x090],
        measurement=data[0x090:0x0C0],
        host_data=data[0x0C0:0x0E0],
        id_key_digest=data[0x0E0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcb(0x180, "REPORTED_TCB"),
        cpuid_fam_id=_u8(data, 0x188) if has_cpuid else None,
        cpuid_mod_id=_u8(data, 0x189) if has_cpuid else None,
        cpuid_step=_u8(data, 0x18A) if has_cpuid else None,
        chip_id=data[0x1A0:0x1E0],
        committed_tcb=tcb(0x1E0, "COMMITTED_TCB"),
        current_build=_u8(data, 0x1E8),
        current_minor=_u8(data, 0x1E9),
        current_major=_u8(data, 0x1EA),
        committed_build=_u8(data, 0x1EC),
        committed_minor=_u8(data, 0x1ED),
        committed_major=_u8(data, 0x1EE),
        launch_tcb=tcb(0x1F0, "LAUNCH_TCB"),
        launch_mit_vector=_u64(data, 0x1F8) if has_mit_vectors else None,
        current_mit_vector=_u64(data, 0x200) if has_mit_vectors else None,
        signature_r=int.from_bytes(
            data[SIGNATURE_R_OFFSET : SIGNATURE_R_OFFSET + SIGNATURE_COMPONENT_SIZE], "little"
        ),
        signature_s=int.from_bytes(
            data[SIGNATURE_S_OFFSET : SIGNATURE_S_OFFSET + SIGNATURE_COMPONENT_SIZE], "little"
        ),
        raw=bytes(data),
    )
