"""Parsing of the ATTESTATION_REPORT structure and of TCB_VERSION values."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from actors.attestation.encode import attach_signature, encode_signed_part
from actors.attestation.errors import (
    ReportMalformed,
    ReportVersionUnsupported,
    SignatureAlgorithmUnsupported,
    WrongProduct,
)
from actors.attestation.report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    GuestPolicy,
    SigningKey,
    parse_report,
)
from actors.attestation.tcb import Product, TcbVersion, product_from_cpuid, product_from_name

from .conftest import RealVector, load_real_vector


def _with_bytes(data: bytes, offset: int, value: bytes) -> bytes:
    changed = bytearray(data)
    changed[offset : offset + len(value)] = value
    return bytes(changed)


def _tcb_fields(tcb: TcbVersion) -> dict[str, object]:
    return {
        "bl": tcb.boot_loader,
        "tee": tcb.tee,
        "snp": tcb.snp,
        "ucode": tcb.microcode,
        "raw": f"{tcb.raw:#018x}",
    }


def test_parse_report_matches_expected_fields(real_vector: RealVector) -> None:
    report = parse_report(real_vector.report, Product.MILAN)
    expected = real_vector.expected["parsed_fields"]
    actual = {
        "version": report.version,
        "guest_svn": report.guest_svn,
        "policy": hex(report.policy.raw),
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "current_tcb": _tcb_fields(report.current_tcb),
        "platform_info": hex(report.platform_info.raw),
        "flags_0x48": hex(
            int(report.author_key_en)
            | int(report.mask_chip_key) << 1
            | int(report.signing_key) << 2
        ),
        "report_data": report.report_data.hex(),
        "measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "reported_tcb": _tcb_fields(report.reported_tcb),
        "cpuid_fam_mod_step": real_vector.report[0x188:0x18B].hex(),
        "chip_id": report.chip_id.hex(),
        "committed_tcb": _tcb_fields(report.committed_tcb),
        "current_build_minor_major": [
            report.current_build,
            report.current_minor,
            report.current_major,
        ],
        "committed_build_minor_major": [
            report.committed_build,
            report.committed_minor,
            report.committed_major,
        ],
        "launch_tcb": _tcb_fields(report.launch_tcb),
        "signing_key_sel": int(report.signing_key),
    }
    for name, value in expected.items():
        assert actual[name] == value, f"{real_vector.name}: field {name}"


def test_parse_report_version_2_lacks_cpuid(real_vector: RealVector) -> None:
    report = parse_report(real_vector.report, Product.MILAN)
    assert (report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step) == (None, None, None)
    assert (report.launch_mit_vector, report.current_mit_vector) == (None, None)


def test_parse_report_source_stated_values() -> None:
    vector = load_real_vector("go-sev-guest")
    stated = vector.expected["source_stated"]
    report = parse_report(vector.report, Product.MILAN)
    assert report.measurement.hex() == stated["measurement"]
    assert report.chip_id.hex() == stated["chip_id"]
    assert report.reported_tcb.raw == stated["reported_tcb_u64"]
    assert report.policy.debug
    assert report.policy.smt
    assert (report.current_major, report.current_minor) == (1, 49)


def test_encode_signed_part_reproduces_signed_bytes(real_vector: RealVector) -> None:
    report = parse_report(real_vector.report, Product.MILAN)
    assert encode_signed_part(report) == real_vector.report[:SIGNED_SIZE]


def test_attach_signature_round_trips(real_vector: RealVector) -> None:
    report = parse_report(real_vector.report, Product.MILAN)
    rebuilt = attach_signature(encode_signed_part(report), report.signature_r, report.signature_s)
    assert rebuilt == real_vector.report


def test_report_repr_omits_raw_bytes(real_vector: RealVector) -> None:
    report = parse_report(real_vector.report, Product.MILAN)
    assert "raw=b" not in repr(report)


@pytest.mark.parametrize("size", [0, REPORT_SIZE - 1, REPORT_SIZE + 1])
def test_parse_report_rejects_wrong_length(size: int) -> None:
    with pytest.raises(ReportMalformed, match="1184"):
        parse_report(bytes(size), Product.MILAN)


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_parse_report_rejects_unknown_version(version: int) -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, 0, struct.pack("<I", version))
    with pytest.raises(ReportVersionUnsupported, match=f"VERSION is {version}"):
        parse_report(data, Product.MILAN)


@pytest.mark.parametrize("algorithm", [0, 2, 0xFFFFFFFF])
def test_parse_report_rejects_signature_algorithm(algorithm: int) -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, 0x34, struct.pack("<I", algorithm))
    with pytest.raises(SignatureAlgorithmUnsupported, match="ECDSA P-384"):
        parse_report(data, Product.MILAN)


@pytest.mark.parametrize(
    "offset",
    [0x04C, 0x04F, 0x188, 0x19F, 0x1EB, 0x1EF, 0x1F8, 0x207, 0x208, 0x29F, 0x330, 0x49F],
)
def test_parse_report_rejects_non_zero_reserved_byte(offset: int) -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, offset, b"\x01")
    with pytest.raises(ReportMalformed, match="reserved bytes"):
        parse_report(data, Product.MILAN)


@pytest.mark.parametrize("offset", [0x03A, 0x03D, 0x182, 0x185, 0x1E2, 0x1F5])
def test_parse_report_rejects_tcb_reserved_byte(offset: int) -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, offset, b"\x01")
    with pytest.raises(ReportMalformed, match="non-zero reserved bytes for Milan"):
        parse_report(data, Product.MILAN)


def test_parse_report_rejects_policy_bit_17_clear() -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, 0x08, struct.pack("<Q", 0x10000))
    with pytest.raises(ReportMalformed, match="bit 17"):
        parse_report(data, Product.MILAN)


def test_parse_report_rejects_reserved_policy_bits() -> None:
    policy = 0x30000 | 1 << 26
    data = _with_bytes(load_real_vector("virtee-sev").report, 0x08, struct.pack("<Q", policy))
    with pytest.raises(ReportMalformed, match="63:26"):
        parse_report(data, Product.MILAN)


def test_parse_report_rejects_reserved_key_bits() -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, 0x48, struct.pack("<I", 1 << 5))
    with pytest.raises(ReportMalformed, match="31:5"):
        parse_report(data, Product.MILAN)


@pytest.mark.parametrize("selection", [2, 3, 6])
def test_parse_report_rejects_undefined_signing_key(selection: int) -> None:
    data = _with_bytes(
        load_real_vector("virtee-sev").report, 0x48, struct.pack("<I", selection << 2)
    )
    with pytest.raises(ReportMalformed, match=f"SIGNING_KEY is {selection}"):
        parse_report(data, Product.MILAN)


def test_parse_report_decodes_key_selection_bits() -> None:
    data = _with_bytes(load_real_vector("virtee-sev").report, 0x48, struct.pack("<I", 0b111))
    report = parse_report(data, Product.MILAN)
    assert report.author_key_en
    assert report.mask_chip_key
    assert report.signing_key is SigningKey.VLEK


def test_parse_report_rejects_version_2_without_product() -> None:
    with pytest.raises(ValueError, match="no CPUID"):
        parse_report(load_real_vector("virtee-sev").report)


def _as_version(data: bytes, version: int, cpuid: bytes) -> bytes:
    return _with_bytes(_with_bytes(data, 0, struct.pack("<I", version)), 0x188, cpuid)


def test_parse_report_takes_product_from_cpuid() -> None:
    data = _as_version(load_real_vector("virtee-sev").report, 3, bytes([0x19, 0x01, 0x01]))
    report = parse_report(data)
    assert report.product is Product.MILAN
    assert (report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step) == (0x19, 0x01, 0x01)


def test_parse_report_rejects_cpuid_of_other_product() -> None:
    data = _as_version(load_real_vector("virtee-sev").report, 3, bytes([0x19, 0x11, 0x01]))
    with pytest.raises(WrongProduct, match="names Genoa but Milan"):
        parse_report(data, Product.MILAN)


def test_parse_report_rejects_unknown_cpuid() -> None:
    data = _as_version(load_real_vector("virtee-sev").report, 3, bytes([0x17, 0x31, 0x00]))
    with pytest.raises(WrongProduct, match="family 0x17"):
        parse_report(data)


def test_parse_report_reads_version_5_mitigation_vectors() -> None:
    data = _as_version(load_real_vector("virtee-sev").report, 5, bytes([0x19, 0x01, 0x01]))
    data = _with_bytes(data, 0x1F8, struct.pack("<QQ", 5, 7))
    report = parse_report(data)
    assert report.launch_mit_vector == 5
    assert report.current_mit_vector == 7


def test_encode_signed_part_writes_version_5_fields() -> None:
    data = _as_version(load_real_vector("virtee-sev").report, 5, bytes([0x19, 0x01, 0x01]))
    data = _with_bytes(data, 0x1F8, struct.pack("<QQ", 5, 7))
    assert encode_signed_part(parse_report(data)) == data[:SIGNED_SIZE]


def test_encode_signed_part_rejects_wrong_field_size() -> None:
    report = parse_report(load_real_vector("virtee-sev").report, Product.MILAN)
    with pytest.raises(ValueError, match="measurement must be 48 bytes"):
        encode_signed_part(replace(report, measurement=bytes(47)))


def test_guest_policy_decodes_each_bit() -> None:
    names = [
        (16, "smt"),
        (18, "migrate_ma"),
        (19, "debug"),
        (20, "single_socket"),
        (21, "cxl_allow"),
        (22, "mem_aes_256_xts"),
        (23, "rapl_dis"),
        (24, "ciphertext_hiding"),
        (25, "page_swap_disable"),
    ]
    for bit, name in names:
        policy = GuestPolicy.decode(1 << 17 | 1 << bit)
        set_flags = [other for _, other in names if getattr(policy, other)]
        assert set_flags == [name], f"bit {bit}"


def test_guest_policy_decodes_abi_version() -> None:
    policy = GuestPolicy.decode(0x3051F)
    assert (policy.abi_major, policy.abi_minor) == (0x05, 0x1F)


def test_tcb_decode_uses_turin_layout() -> None:
    tcb = TcbVersion.decode(
        int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 0, 5]), "little"), Product.TURIN
    )
    assert tcb.components() == {"boot_loader": 2, "tee": 3, "snp": 4, "microcode": 5, "fmc": 1}


def test_tcb_decode_uses_milan_layout() -> None:
    tcb = TcbVersion.decode(
        int.from_bytes(bytes([1, 2, 0, 0, 0, 0, 3, 4]), "little"), Product.GENOA
    )
    assert tcb.components() == {"boot_loader": 1, "tee": 2, "snp": 3, "microcode": 4}


def test_tcb_decode_rejects_turin_reserved_byte() -> None:
    raw = int.from_bytes(bytes([1, 2, 3, 4, 0, 9, 0, 5]), "little")
    with pytest.raises(ReportMalformed, match="reserved bytes for Turin"):
        TcbVersion.decode(raw, Product.TURIN)


@pytest.mark.parametrize("product", list(Product))
def test_tcb_encode_round_trips(product: Product) -> None:
    fmc = 7 if product is Product.TURIN else None
    tcb = TcbVersion.encode(product, boot_loader=1, tee=2, snp=3, microcode=200, fmc=fmc)
    assert TcbVersion.decode(tcb.raw, product) == tcb


def test_tcb_encode_rejects_fmc_on_milan() -> None:
    with pytest.raises(ValueError, match="no fmc"):
        TcbVersion.encode(Product.MILAN, boot_loader=1, tee=2, snp=3, microcode=4, fmc=1)


def test_tcb_encode_rejects_missing_fmc_on_turin() -> None:
    with pytest.raises(ValueError, match="needs an fmc"):
        TcbVersion.encode(Product.TURIN, boot_loader=1, tee=2, snp=3, microcode=4)


def test_tcb_encode_rejects_out_of_range_component() -> None:
    with pytest.raises(ValueError, match="0-255"):
        TcbVersion.encode(Product.MILAN, boot_loader=256, tee=0, snp=0, microcode=0)


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, Product.MILAN),
        (0x19, 0x11, Product.GENOA),
        (0x19, 0xA0, Product.GENOA),
        (0x1A, 0x02, Product.TURIN),
        (0x1A, 0x11, Product.TURIN),
    ],
)
def test_product_from_cpuid_maps_known_models(family: int, model: int, product: Product) -> None:
    assert product_from_cpuid(family, model) is product


@pytest.mark.parametrize(
    ("name", "product"), [("Milan-B0", Product.MILAN), ("Turin", Product.TURIN)]
)
def test_product_from_name_maps_certificate_names(name: str, product: Product) -> None:
    assert product_from_name(name) is product


def test_product_from_name_rejects_unknown_name() -> None:
    with pytest.raises(WrongProduct, match="Rome-B0"):
        product_from_name("Rome-B0")
