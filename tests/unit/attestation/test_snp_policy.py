"""Attestation policy checks over real and development reports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from actors.attestation import errors
from actors.attestation.development import DevelopmentProvider, DevelopmentSettings
from actors.attestation.errors import (
    AttestationError,
    DebugEnabled,
    MeasurementNotAllowed,
    MigrationAgentNotAllowed,
    ReportDataMismatch,
    SigningKeyNotAllowed,
    TcbTooLow,
    UntrustedRoot,
    VmplTooHigh,
    WrongProduct,
)
from actors.attestation.policy import (
    AttestationPolicy,
    MinimumTcb,
    check,
    development_policy,
    production_policy,
)
from actors.attestation.report import SigningKey
from actors.attestation.tcb import Product
from actors.attestation.verify import AMD_ARK_FINGERPRINTS, ChainVerifier

from .conftest import NOW, RealVector, load_real_vector

_VIRTEE_MINIMUM = MinimumTcb(boot_loader=3, tee=0, snp=8, microcode=115)


def _policy_for(vector: RealVector, **changes: object) -> AttestationPolicy:
    fields = vector.expected["parsed_fields"]
    policy = production_policy(
        "production-test",
        measurements=frozenset({bytes.fromhex(fields["measurement"])}),
        minimum_tcb=MinimumTcb(),
    ).expecting(bytes.fromhex(fields["report_data"]))
    return replace(policy, **changes)


def test_check_accepts_real_report_under_production_policy() -> None:
    vector = load_real_vector("virtee-sev")
    verified = check(vector.evidence(), _policy_for(vector, minimum_tcb=_VIRTEE_MINIMUM), NOW)
    assert verified.policy_id == "production-test"
    assert verified.measurement.hex() == vector.expected["parsed_fields"]["measurement"]
    assert verified.ark_fingerprint in AMD_ARK_FINGERPRINTS


def test_check_rejects_debug_policy() -> None:
    vector = load_real_vector("go-sev-guest")
    with pytest.raises(DebugEnabled, match="bit 19"):
        check(vector.evidence(), _policy_for(vector), NOW)


def test_check_accepts_debug_when_policy_allows() -> None:
    vector = load_real_vector("go-sev-guest")
    verified = check(vector.evidence(), _policy_for(vector, allow_debug=True), NOW)
    assert verified.report.policy.debug


def test_check_rejects_other_report_data() -> None:
    vector = load_real_vector("virtee-sev")
    policy = _policy_for(vector).expecting(bytes(64))
    with pytest.raises(ReportDataMismatch, match="another request"):
        check(vector.evidence(), policy, NOW)


def test_check_rejects_missing_expected_report_data() -> None:
    vector = load_real_vector("virtee-sev")
    with pytest.raises(ReportDataMismatch, match="expecting"):
        check(vector.evidence(), _policy_for(vector, report_data=None), NOW)


def test_check_rejects_measurement_not_allowed() -> None:
    vector = load_real_vector("virtee-sev")
    policy = _policy_for(vector, measurements=frozenset({bytes(48)}))
    with pytest.raises(MeasurementNotAllowed, match="7a1e5c26"):
        check(vector.evidence(), policy, NOW)


def test_check_rejects_disallowed_product() -> None:
    vector = load_real_vector("virtee-sev")
    policy = _policy_for(vector, allowed_products=frozenset({Product.GENOA}))
    with pytest.raises(WrongProduct, match="allows Genoa"):
        check(vector.evidence(), policy, NOW)


def test_check_rejects_disallowed_signing_key() -> None:
    vector = load_real_vector("virtee-sev")
    policy = _policy_for(vector, signing_keys=frozenset({SigningKey.VLEK}))
    with pytest.raises(SigningKeyNotAllowed, match="VCEK"):
        check(vector.evidence(), policy, NOW)


@pytest.mark.parametrize(
    ("minimum", "shortfall"),
    [
        (MinimumTcb(boot_loader=4), "boot_loader 3<4"),
        (MinimumTcb(tee=1), "tee 0<1"),
        (MinimumTcb(snp=9), "snp 8<9"),
        (MinimumTcb(microcode=116), "microcode 115<116"),
    ],
)
def test_check_rejects_tcb_below_minimum(minimum: MinimumTcb, shortfall: str) -> None:
    vector = load_real_vector("virtee-sev")
    with pytest.raises(TcbTooLow, match=shortfall):
        check(vector.evidence(), _policy_for(vector, minimum_tcb=minimum), NOW)


def test_check_compares_tcb_per_component() -> None:
    # As one integer the report's TCB (microcode 115 in the top byte) exceeds this minimum.
    vector = load_real_vector("virtee-sev")
    minimum = MinimumTcb(boot_loader=0, tee=0, snp=9, microcode=0)
    with pytest.raises(TcbTooLow, match="snp 8<9"):
        check(vector.evidence(), _policy_for(vector, minimum_tcb=minimum), NOW)


def test_check_rejects_committed_tcb_below_minimum() -> None:
    # trustee's CURRENT_TCB has microcode 206, but COMMITTED_TCB and REPORTED_TCB have 115.
    vector = load_real_vector("trustee")
    with pytest.raises(TcbTooLow, match="COMMITTED_TCB is below the minimum: microcode 115<200"):
        check(vector.evidence(), _policy_for(vector, minimum_tcb=MinimumTcb(microcode=200)), NOW)


def test_check_rejects_verifier_with_other_pins() -> None:
    vector = load_real_vector("virtee-sev")
    with pytest.raises(ValueError, match="other ARKs"):
        check(vector.evidence(), _policy_for(vector), NOW, ChainVerifier({}))


def test_check_reuses_given_verifier() -> None:
    vector = load_real_vector("virtee-sev")
    verifier = ChainVerifier(AMD_ARK_FINGERPRINTS)
    verified = check(vector.evidence(), _policy_for(vector), NOW, verifier)
    assert (
        verified.signer_fingerprint
        == verifier.verify_chain(vector.evidence().cert_chain, NOW).signer_fingerprint
    )


def _dev_policy(provider: DevelopmentProvider, report_data: bytes) -> AttestationPolicy:
    return development_policy(
        "development-test",
        provider.ark_fingerprint,
        provider.settings.product,
        frozenset({provider.settings.measurement}),
    ).expecting(report_data)


def test_check_accepts_development_report_under_development_policy(
    development_provider: DevelopmentProvider,
) -> None:
    report_data = bytes(range(64))
    evidence = development_provider.get_report(report_data)
    verified = check(evidence, _dev_policy(development_provider, report_data), NOW)
    assert verified.report.report_data == report_data


def test_production_policy_rejects_development_chain(
    development_provider: DevelopmentProvider,
) -> None:
    report_data = bytes(range(64))
    policy = production_policy("production-test", frozenset({bytes(48)}), MinimumTcb()).expecting(
        report_data
    )
    with pytest.raises(UntrustedRoot):
        check(development_provider.get_report(report_data), policy, NOW)


def test_check_rejects_vmpl_above_maximum(tmp_path: Path) -> None:
    provider = DevelopmentProvider(tmp_path / "state", DevelopmentSettings(vmpl=2), lambda: NOW)
    report_data = bytes(64)
    policy = replace(_dev_policy(provider, report_data), max_vmpl=1)
    with pytest.raises(VmplTooHigh, match="VMPL 2"):
        check(provider.get_report(report_data), policy, NOW)


def test_check_rejects_migration_agent(tmp_path: Path) -> None:
    settings = DevelopmentSettings(guest_policy=0x30000 | 1 << 18)
    provider = DevelopmentProvider(tmp_path / "state", settings, lambda: NOW)
    report_data = bytes(64)
    with pytest.raises(MigrationAgentNotAllowed, match="bit 18"):
        check(provider.get_report(report_data), _dev_policy(provider, report_data), NOW)


def test_attestation_policy_rejects_wrong_measurement_size() -> None:
    with pytest.raises(ValueError, match="48 bytes"):
        production_policy("p", frozenset({bytes(32)}), MinimumTcb())


def test_attestation_policy_rejects_wrong_report_data_size() -> None:
    policy = production_policy("p", frozenset(), MinimumTcb())
    with pytest.raises(ValueError, match="64 bytes"):
        policy.expecting(bytes(32))


def _error_classes() -> list[type[AttestationError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, AttestationError)
    ]


def test_attestation_errors_have_unique_reasons() -> None:
    reasons = [cls.reason for cls in _error_classes()]
    assert len(reasons) == len(set(reasons))


@pytest.mark.parametrize("error_class", _error_classes())
def test_attestation_error_message_carries_reason(error_class: type[AttestationError]) -> None:
    error = error_class("what failed; what to do")
    assert str(error) == f"{error_class.reason}: what failed; what to do"
    assert error.detail == "what failed; what to do"
