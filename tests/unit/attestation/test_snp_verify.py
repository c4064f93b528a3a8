"""Signature and certificate chain verification against the real AMD-signed reports."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from actors.attestation.errors import (
    AttestationError,
    CertificateExpired,
    ChainInvalid,
    ChipIdMismatch,
    ReportUnsigned,
    SignatureInvalid,
    TcbMismatch,
    UntrustedRoot,
    WrongProduct,
)
from actors.attestation.evidence import Evidence
from actors.attestation.report import SIGNED_SIZE, SigningKey, parse_report
from actors.attestation.tcb import Product, TcbVersion
from actors.attestation.verify import (
    AMD_ARK_FINGERPRINTS,
    ChainVerifier,
    check_certificate_binding,
    fingerprint,
    verify_evidence,
    verify_report_signature,
)

from .conftest import NOW, RealVector, ca_bundle, load_real_vector, read_vector

# Offsets [start, end) of bytes that must be zero in a version 2 Milan report (reserved
# fields and the reserved bytes of each TCB_VERSION). A flipped bit there is a structure
# error found before the signature is checked.
_MALFORMED_WHEN_FLIPPED = [
    (0x00C, 0x010),  # POLICY bits 63:32
    (0x03A, 0x03E),  # CURRENT_TCB reserved bytes
    (0x049, 0x050),  # bits 31:8 of the key selection word and the reserved word
    (0x182, 0x186),  # REPORTED_TCB reserved bytes
    (0x188, 0x1A0),  # reserved in version 2 (CPUID fields from version 3)
    (0x1E2, 0x1E6),  # COMMITTED_TCB reserved bytes
    (0x1EB, 0x1EC),
    (0x1EF, 0x1F0),
    (0x1F2, 0x1F6),  # LAUNCH_TCB reserved bytes
    (0x1F8, 0x2A0),
]


def _expected_reason_for_low_bit_flip(offset: int) -> str:
    """Reason expected when bit 0 of the byte at ``offset`` of a v2 Milan report flips."""
    if offset == 0x000:
        return "wrong_product"  # VERSION becomes 3; CPUID 0/0 names no product
    if 0x001 <= offset < 0x004:
        return "report_version_unsupported"
    if 0x034 <= offset < 0x038:
        return "signature_algorithm_unsupported"
    if any(start <= offset < end for start, end in _MALFORMED_WHEN_FLIPPED):
        return "report_malformed"
    return "signature_invalid"


def _flip(data: bytes, offset: int, mask: int) -> bytes:
    changed = bytearray(data)
    changed[offset] ^= mask
    return bytes(changed)


def _reason_of(evidence: Evidence, verifier: ChainVerifier) -> str:
    try:
        verify_evidence(evidence, verifier, NOW)
    except AttestationError as exc:
        return exc.reason
    return "accepted"


def test_verify_evidence_accepts_real_reports(real_vector: RealVector) -> None:
    verified = verify_evidence(real_vector.evidence(), ChainVerifier(AMD_ARK_FINGERPRINTS), NOW)
    assert verified.report.product is Product.MILAN
    assert verified.chain.ark_fingerprint == fingerprint(ca_bundle("milan")[1])
    assert verified.report.measurement.hex() == real_vector.expected["parsed_fields"]["measurement"]


def test_verify_evidence_rejects_every_flipped_signed_byte(real_vector: RealVector) -> None:
    verifier = ChainVerifier(AMD_ARK_FINGERPRINTS)
    chain = real_vector.evidence().cert_chain
    mismatches = []
    for offset in range(SIGNED_SIZE):
        evidence = Evidence(_flip(real_vector.report, offset, 0x01), chain)
        actual = _reason_of(evidence, verifier)
        expected = _expected_reason_for_low_bit_flip(offset)
        if actual != expected:
            mismatches.append((hex(offset), expected, actual))
    assert mismatches == []


@pytest.mark.parametrize("offset", [0x2A0, 0x2C7, 0x2E7, 0x2E8, 0x30F, 0x32F])
def test_verify_evidence_rejects_changed_signature(offset: int) -> None:
    vector = load_real_vector("trustee")
    evidence = Evidence(_flip(vector.report, offset, 0x01), vector.evidence().cert_chain)
    with pytest.raises(SignatureInvalid):
        verify_evidence(evidence, ChainVerifier(AMD_ARK_FINGERPRINTS), NOW)


def test_verify_evidence_rejects_virtee_stated_bit_flip() -> None:
    vector = load_real_vector("virtee-sev")
    evidence = Evidence(_flip(vector.report, 21, 0x80), vector.evidence().cert_chain)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_evidence(evidence, ChainVerifier(AMD_ARK_FINGERPRINTS), NOW)


@pytest.mark.parametrize("offset", [42, 384])
def test_verify_evidence_rejects_trustee_stated_increments(offset: int) -> None:
    vector = load_real_vector("trustee")
    changed = bytearray(vector.report)
    changed[offset] += 1
    evidence = Evidence(bytes(changed), vector.evidence().cert_chain)
    with pytest.raises(SignatureInvalid):
        verify_evidence(evidence, ChainVerifier(AMD_ARK_FINGERPRINTS), NOW)


def test_verify_evidence_rejects_report_of_other_chip() -> None:
    go_sev_guest = load_real_vector("go-sev-guest")
    virtee = load_real_vector("virtee-sev")
    evidence = Evidence(go_sev_guest.report, virtee.evidence().cert_chain)
    with pytest.raises(SignatureInvalid):
        verify_evidence(evidence, ChainVerifier(AMD_ARK_FINGERPRINTS), NOW)


def test_check_certificate_binding_rejects_other_chip_id() -> None:
    # The virtee and trustee VCEKs have the same TCB but belong to different chips.
    trustee = load_real_vector("trustee")
    chain = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(
        load_real_vector("virtee-sev").evidence().cert_chain, NOW
    )
    report = parse_report(trustee.report, Product.MILAN)
    with pytest.raises(ChipIdMismatch, match="hwID d49554ec"):
        check_certificate_binding(report, chain)


@pytest.mark.parametrize("component", ["boot_loader", "tee", "snp", "microcode"])
def test_check_certificate_binding_rejects_tcb_mismatch(component: str) -> None:
    vector = load_real_vector("trustee")
    chain = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(vector.evidence().cert_chain, NOW)
    report = parse_report(vector.report, Product.MILAN)
    parts = report.reported_tcb.components()
    parts[component] += 1
    changed = replace(report, reported_tcb=TcbVersion.encode(Product.MILAN, **parts))
    with pytest.raises(TcbMismatch, match=f"{component} SPL"):
        check_certificate_binding(changed, chain)


def test_check_certificate_binding_rejects_vlek_selection_with_vcek() -> None:
    vector = load_real_vector("virtee-sev")
    chain = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(vector.evidence().cert_chain, NOW)
    report = replace(parse_report(vector.report, Product.MILAN), signing_key=SigningKey.VLEK)
    with pytest.raises(ChainInvalid, match="SIGNING_KEY is VLEK"):
        check_certificate_binding(report, chain)


@pytest.mark.parametrize("changes", [{"mask_chip_key": True}, {"signing_key": SigningKey.NONE}])
def test_verify_report_signature_rejects_unsigned_report(changes: dict[str, object]) -> None:
    vector = load_real_vector("virtee-sev")
    chain = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(vector.evidence().cert_chain, NOW)
    report = replace(parse_report(vector.report, Product.MILAN), **changes)
    with pytest.raises(ReportUnsigned):
        verify_report_signature(report, chain.signer)


@pytest.mark.parametrize("field_name", ["signature_r", "signature_s"])
def test_verify_report_signature_rejects_out_of_range_component(field_name: str) -> None:
    vector = load_real_vector("virtee-sev")
    chain = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(vector.evidence().cert_chain, NOW)
    report = replace(parse_report(vector.report, Product.MILAN), **{field_name: 1 << 384})
    with pytest.raises(SignatureInvalid, match="outside"):
        verify_report_signature(report, chain.signer)


def test_verify_chain_rejects_milan_vcek_under_genoa_chain() -> None:
    evidence = load_real_vector("virtee-sev").evidence("genoa")
    with pytest.raises(ChainInvalid, match="VCEK/VLEK certificate issuer"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(evidence.cert_chain, NOW)


def test_verify_chain_rejects_turin_vcek_under_milan_chain() -> None:
    chain = [read_vector("virtee-sev-turin-vcek.der"), *ca_bundle("milan")]
    with pytest.raises(ChainInvalid):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, NOW)


def test_verify_chain_rejects_vcek_under_asvk() -> None:
    evidence = load_real_vector("virtee-sev").evidence("milan_vlek")
    with pytest.raises(ChainInvalid):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(evidence.cert_chain, NOW)


def test_verify_chain_rejects_ark_pinned_for_other_product() -> None:
    milan_ark = fingerprint(ca_bundle("milan")[1])
    verifier = ChainVerifier({milan_ark: Product.GENOA})
    evidence = load_real_vector("virtee-sev").evidence()
    with pytest.raises(WrongProduct, match="VCEK/VLEK is for Milan"):
        verifier.verify_chain(evidence.cert_chain, NOW)


def test_verify_chain_accepts_turin_vcek() -> None:
    chain = [read_vector("virtee-sev-turin-vcek.der"), *ca_bundle("turin_vcek")]
    verified = ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, NOW)
    assert verified.product is Product.TURIN
    assert verified.signer_is_vcek


@pytest.mark.parametrize("offset", [100, 500, -10])
def test_verify_chain_rejects_tampered_ark(offset: int) -> None:
    chain = list(load_real_vector("virtee-sev").evidence().cert_chain)
    chain[2] = _flip(chain[2], offset % len(chain[2]), 0x01)
    with pytest.raises(UntrustedRoot, match="is not pinned"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, NOW)


def test_verify_chain_rejects_unpinned_ark() -> None:
    chain = load_real_vector("virtee-sev").evidence().cert_chain
    with pytest.raises(UntrustedRoot):
        ChainVerifier({}).verify_chain(chain, NOW)


def test_verify_chain_rejects_tampered_ask() -> None:
    chain = list(load_real_vector("virtee-sev").evidence().cert_chain)
    chain[1] = _flip(chain[1], len(chain[1]) - 10, 0x01)
    with pytest.raises(ChainInvalid, match="ASK/ASVK certificate signature"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, NOW)


@pytest.mark.parametrize("count", [0, 2, 4])
def test_verify_chain_rejects_wrong_certificate_count(count: int) -> None:
    chain = list(load_real_vector("virtee-sev").evidence().cert_chain) * 2
    with pytest.raises(ChainInvalid, match=f"has {count} certificates"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain[:count], NOW)


@pytest.mark.parametrize(
    "when", [datetime(2023, 4, 3, tzinfo=UTC), datetime(2030, 4, 4, tzinfo=UTC)]
)
def test_verify_chain_rejects_time_outside_validity(when: datetime) -> None:
    chain = load_real_vector("virtee-sev").evidence().cert_chain
    with pytest.raises(CertificateExpired, match="VCEK/VLEK certificate is valid from"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, when)


def test_verify_chain_caches_signature_checks() -> None:
    verifier = ChainVerifier(AMD_ARK_FINGERPRINTS)
    chain = load_real_vector("virtee-sev").evidence().cert_chain
    assert verifier.verify_chain(chain, NOW) is verifier.verify_chain(chain, NOW)


def test_verify_chain_checks_validity_on_cached_chain() -> None:
    verifier = ChainVerifier(AMD_ARK_FINGERPRINTS)
    chain = load_real_vector("virtee-sev").evidence().cert_chain
    verifier.verify_chain(chain, NOW)
    with pytest.raises(CertificateExpired):
        verifier.verify_chain(chain, datetime(2031, 1, 1, tzinfo=UTC))


def test_verify_chain_cache_is_bounded() -> None:
    verifier = ChainVerifier(AMD_ARK_FINGERPRINTS, cache_size=1)
    first = load_real_vector("virtee-sev").evidence().cert_chain
    second = load_real_vector("trustee").evidence().cert_chain
    cached = verifier.verify_chain(first, NOW)
    verifier.verify_chain(second, NOW)
    assert verifier.verify_chain(first, NOW) is not cached


def test_verify_chain_rejects_naive_time() -> None:
    chain = load_real_vector("virtee-sev").evidence().cert_chain
    with pytest.raises(ValueError, match="timezone-aware"):
        ChainVerifier(AMD_ARK_FINGERPRINTS).verify_chain(chain, datetime(2026, 1, 1))
