"""Report providers: the development provider and configfs-tsm against a fake folder tree."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from actors.attestation.development import DevelopmentProvider, DevelopmentSettings
from actors.attestation.errors import ProviderError, ReportMalformed
from actors.attestation.evidence import Evidence
from actors.attestation.policy import MinimumTcb, check, development_policy, production_policy
from actors.attestation.providers import (
    ARK_GUID,
    ASK_GUID,
    VCEK_GUID,
    ConfigfsTsmProvider,
    VcekCache,
    encode_certificate_table,
    parse_certificate_table,
)
from actors.attestation.report import parse_report
from actors.attestation.tcb import Product, TcbVersion
from actors.attestation.verify import ChainVerifier, verify_evidence

from .conftest import NOW, RealVector, load_real_vector


def test_development_provider_round_trips(development_provider: DevelopmentProvider) -> None:
    report_data = bytes(range(64, 128))
    evidence = development_provider.get_report(report_data)
    verifier = ChainVerifier({development_provider.ark_fingerprint: Product.MILAN})
    report = verify_evidence(evidence, verifier, NOW).report
    assert len(evidence.report) == 1184
    assert report.report_data == report_data
    assert report.measurement == development_provider.settings.measurement
    assert report.reported_tcb == development_provider.settings.tcb
    assert report.product is Product.MILAN


def test_development_provider_reuses_stored_chain(tmp_path: Path) -> None:
    first = DevelopmentProvider(tmp_path / "state", clock=lambda: NOW)
    second = DevelopmentProvider(tmp_path / "state", clock=lambda: NOW)
    assert second.ark_fingerprint == first.ark_fingerprint
    assert second.get_report(bytes(64)).cert_chain == first.get_report(bytes(64)).cert_chain


def test_development_provider_stores_private_key_private(tmp_path: Path) -> None:
    DevelopmentProvider(tmp_path / "state", clock=lambda: NOW)
    assert (tmp_path / "state" / "vcek-key.pem").stat().st_mode & 0o077 == 0


def test_development_provider_imitates_turin(tmp_path: Path) -> None:
    tcb = TcbVersion.encode(Product.TURIN, boot_loader=1, tee=2, snp=3, microcode=4, fmc=5)
    settings = DevelopmentSettings(
        product=Product.TURIN, tcb=tcb, version=5, measurement=b"\x07" * 48
    )
    provider = DevelopmentProvider(tmp_path / "state", settings, lambda: NOW)
    policy = development_policy(
        "turin-development", provider.ark_fingerprint, Product.TURIN, frozenset({b"\x07" * 48})
    ).expecting(bytes(64))
    verified = check(provider.get_report(bytes(64)), policy, NOW)
    assert verified.report.reported_tcb.fmc == 5
    assert verified.report.launch_mit_vector == 0
    assert verified.report.cpuid_fam_id == 0x1A
    assert verified.report.chip_id[8:] == bytes(56)


def test_development_provider_rejects_changed_chip_id(tmp_path: Path) -> None:
    DevelopmentProvider(tmp_path / "state", DevelopmentSettings(chip_id=b"\x01" * 64))
    with pytest.raises(ValueError, match="another chip id"):
        DevelopmentProvider(tmp_path / "state", DevelopmentSettings(chip_id=b"\x02" * 64))


def test_development_provider_rejects_changed_tcb(tmp_path: Path) -> None:
    DevelopmentProvider(tmp_path / "state")
    tcb = TcbVersion.encode(Product.MILAN, boot_loader=9, tee=0, snp=8, microcode=115)
    with pytest.raises(ValueError, match="another product or TCB"):
        DevelopmentProvider(tmp_path / "state", DevelopmentSettings(tcb=tcb))


def test_development_provider_rejects_tcb_of_other_product(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="settings.product"):
        DevelopmentProvider(tmp_path / "state", DevelopmentSettings(product=Product.GENOA))


@pytest.mark.parametrize("size", [0, 63, 65])
def test_development_provider_rejects_report_data_size(
    development_provider: DevelopmentProvider, size: int
) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        development_provider.get_report(bytes(size))


def test_certificate_table_round_trips() -> None:
    certificates = {VCEK_GUID: b"vcek", ASK_GUID: b"ask-der", ARK_GUID: b"ark"}
    assert parse_certificate_table(encode_certificate_table(certificates)) == certificates


def test_certificate_table_uses_rfc_4122_guid_bytes() -> None:
    table = encode_certificate_table({VCEK_GUID: b"x"})
    assert table[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")


def test_parse_certificate_table_rejects_missing_terminator() -> None:
    table = struct.pack("<16sII", VCEK_GUID.bytes, 24, 4) + b"vcek"
    with pytest.raises(ReportMalformed, match="terminator"):
        parse_certificate_table(table)


def test_parse_certificate_table_rejects_entry_outside_table() -> None:
    table = bytearray(encode_certificate_table({VCEK_GUID: b"vcek"}))
    struct.pack_into("<I", table, 20, 1000)
    with pytest.raises(ReportMalformed, match="outside"):
        parse_certificate_table(bytes(table))


def test_parse_certificate_table_rejects_repeated_guid() -> None:
    entry = struct.pack("<16sII", VCEK_GUID.bytes, 72, 1)
    table = entry + entry + bytes(24) + b"x"
    with pytest.raises(ReportMalformed, match="twice"):
        parse_certificate_table(table)


def _fake_configfs(root: Path, vector: RealVector, auxblob: bytes) -> Path:
    """Create a report entry folder with the files the kernel's configfs-tsm provides."""
    entry = root / "ztmint"
    entry.mkdir(parents=True)
    (entry / "provider").write_bytes(b"sev_guest\n")
    (entry / "generation").write_bytes(b"1\n")
    (entry / "inblob").write_bytes(b"")
    (entry / "outblob").write_bytes(vector.report)
    (entry / "auxblob").write_bytes(auxblob)
    return entry


def _real_table(vector: RealVector) -> bytes:
    vcek, ask, ark = vector.evidence().cert_chain
    return encode_certificate_table({VCEK_GUID: vcek, ASK_GUID: ask, ARK_GUID: ark})


def _report_data(vector: RealVector) -> bytes:
    return bytes.fromhex(vector.expected["parsed_fields"]["report_data"])


def test_configfs_tsm_provider_returns_verifiable_evidence(tmp_path: Path) -> None:
    vector = load_real_vector("virtee-sev")
    entry = _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "tsm")
    evidence = provider.get_report(_report_data(vector))
    measurement = bytes.fromhex(vector.expected["parsed_fields"]["measurement"])
    policy = production_policy("p", frozenset({measurement}), MinimumTcb())
    verified = check(evidence, policy.expecting(_report_data(vector)), NOW)
    assert (entry / "inblob").read_bytes() == _report_data(vector)
    assert evidence.cert_chain == vector.evidence().cert_chain
    assert verified.report.chip_id.hex() == vector.expected["parsed_fields"]["chip_id"]


def test_configfs_tsm_provider_writes_privlevel(tmp_path: Path) -> None:
    vector = load_real_vector("virtee-sev")
    entry = _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    provider = ConfigfsTsmProvider(
        VcekCache(tmp_path / "cache"), root=tmp_path / "tsm", privlevel=0
    )
    provider.get_report(_report_data(vector))
    assert (entry / "privlevel").read_bytes() == b"0"


def test_configfs_tsm_provider_caches_vcek_from_auxblob(tmp_path: Path) -> None:
    vector = load_real_vector("trustee")
    _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    cache = VcekCache(tmp_path / "cache")
    ConfigfsTsmProvider(cache, root=tmp_path / "tsm").get_report(_report_data(vector))
    report = parse_report(vector.report, Product.MILAN)
    assert cache.lookup(report.chip_id, report.reported_tcb.raw) == vector.evidence().cert_chain


def test_configfs_tsm_provider_falls_back_to_cached_vcek(tmp_path: Path) -> None:
    vector = load_real_vector("go-sev-guest")
    _fake_configfs(tmp_path / "tsm", vector, b"")
    cache = VcekCache(tmp_path / "cache")
    report = parse_report(vector.report, Product.MILAN)
    vcek, ask, ark = vector.evidence().cert_chain
    cache.store(report.chip_id, report.reported_tcb.raw, (vcek, ask, ark))
    evidence = ConfigfsTsmProvider(cache, root=tmp_path / "tsm").get_report(_report_data(vector))
    assert evidence.cert_chain == (vcek, ask, ark)


def test_configfs_tsm_provider_rejects_missing_chain(tmp_path: Path) -> None:
    vector = load_real_vector("go-sev-guest")
    _fake_configfs(tmp_path / "tsm", vector, bytes(24))
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "tsm")
    with pytest.raises(ProviderError, match="no certificate chain"):
        provider.get_report(_report_data(vector))


def test_configfs_tsm_provider_rejects_other_provider(tmp_path: Path) -> None:
    vector = load_real_vector("go-sev-guest")
    entry = _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    (entry / "provider").write_bytes(b"tdx_guest\n")
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "tsm")
    with pytest.raises(ProviderError, match="tdx_guest"):
        provider.get_report(_report_data(vector))


def test_configfs_tsm_provider_rejects_missing_interface(tmp_path: Path) -> None:
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "absent")
    with pytest.raises(ProviderError, match="configfs mounted"):
        provider.get_report(bytes(64))


def test_configfs_tsm_provider_rejects_short_outblob(tmp_path: Path) -> None:
    vector = load_real_vector("go-sev-guest")
    entry = _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    (entry / "outblob").write_bytes(vector.report[:1000])
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "tsm")
    with pytest.raises(ReportMalformed, match="outblob is 1000 bytes"):
        provider.get_report(_report_data(vector))


class _RacingProvider(ConfigfsTsmProvider):
    """Imitates a second process writing to the entry while this one reads outblob."""

    def _read(self, name: str) -> bytes:
        data = super()._read(name)
        if name == "outblob":
            (self.entry / "generation").write_bytes(b"2\n")
        return data


def test_configfs_tsm_provider_rejects_concurrent_write(tmp_path: Path) -> None:
    vector = load_real_vector("go-sev-guest")
    _fake_configfs(tmp_path / "tsm", vector, _real_table(vector))
    provider = _RacingProvider(VcekCache(tmp_path / "cache"), root=tmp_path / "tsm")
    with pytest.raises(ProviderError, match="another process"):
        provider.get_report(_report_data(vector))


def test_configfs_tsm_provider_rejects_report_data_size(tmp_path: Path) -> None:
    provider = ConfigfsTsmProvider(VcekCache(tmp_path / "cache"), root=tmp_path)
    with pytest.raises(ValueError, match="64 bytes"):
        provider.get_report(bytes(32))


def test_evidence_repr_omits_bytes() -> None:
    evidence = Evidence(b"\x01" * 1184, [b"\x02" * 10])
    assert "x01" not in repr(evidence)
