"""Attestation policy: which verified SEV-SNP reports a coordinator accepts.

``check`` runs the signature and chain verification of ``verify.py`` with the policy's
pinned ARKs, then the policy's own checks in a fixed order, and returns
``VerifiedEvidence`` or raises the ``AttestationError`` subclass of the first failed check.
The functions take the time as ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from actors.attestation.errors import (
    DebugEnabled,
    MeasurementNotAllowed,
    MigrationAgentNotAllowed,
    ReportDataMismatch,
    SigningKeyNotAllowed,
    TcbTooLow,
    VmplTooHigh,
    WrongProduct,
)
from actors.attestation.evidence import Evidence, VerifiedEvidence
from actors.attestation.report import AttestationReport, SigningKey
from actors.attestation.tcb import Product, TcbVersion
from actors.attestation.verify import AMD_ARK_FINGERPRINTS, ChainVerifier, verify_evidence


@dataclass(frozen=True)
class MinimumTcb:
    """Lowest acceptable SPL of each TCB component, compared component by component.

    A TCB_VERSION is not compared as one integer: a higher microcode SPL must not make up
    for an older SNP firmware. ``fmc`` applies to Turin only.
    """

    boot_loader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0
    fmc: int = 0

    def shortfalls(self, tcb: TcbVersion) -> list[str]:
        """Return ``component actual<minimum`` for each component of ``tcb`` below minimum."""
        minimums = {
            "boot_loader": self.boot_loader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
            "fmc": self.fmc,
        }
        return [
            f"{name} {value}<{minimums[name]}"
            for name, value in tcb.components().items()
            if value < minimums[name]
        ]


@dataclass(frozen=True)
class AttestationPolicy:
    """Requirements a verified report must meet to be accepted.

    Attributes:
        policy_id: stable name of this policy; it goes into the token's evidence digest.
        trusted_arks: hex SHA-256 of each trusted ARK DER -> its product.
        allowed_products: products whose reports are accepted.
        measurements: allowed MEASUREMENT values (48 bytes each); empty accepts none.
        report_data: the REPORT_DATA expected for this request, or ``None`` before it
            is known; ``check`` rejects every report while it is ``None``.
        allow_debug: accept guests whose POLICY allows debugging. Never in production.
        allow_migration_agent: accept guests whose POLICY allows a migration agent.
        max_vmpl: highest VMPL the report may come from.
        minimum_tcb: lowest SPLs accepted, checked on CURRENT, COMMITTED and REPORTED TCB.
        signing_keys: accepted signing key kinds (VCEK, VLEK).
    """

    policy_id: str
    trusted_arks: Mapping[str, Product]
    allowed_products: frozenset[Product]
    measurements: frozenset[bytes]
    report_data: bytes | None = field(default=None, repr=False)
    allow_debug: bool = False
    allow_migration_agent: bool = False
    max_vmpl: int = 0
    minimum_tcb: MinimumTcb = MinimumTcb()
    signing_keys: frozenset[SigningKey] = frozenset({SigningKey.VCEK, SigningKey.VLEK})

    def __post_init__(self) -> None:
        for measurement in self.measurements:
            if len(measurement) != 48:
                raise ValueError(
                    f"allowed measurement {measurement.hex()} is {len(measurement)} bytes; "
                    "SEV-SNP measurements are 48 bytes"
                )
        if self.report_data is not None and len(self.report_data) != 64:
            raise ValueError(f"report_data must be 64 bytes, got {len(self.report_data)}")

    def expecting(self, report_data: bytes) -> AttestationPolicy:
        """Return a copy of this policy that expects ``report_data`` (64 bytes)."""
        return replace(self, report_data=bytes(report_data))


def production_policy(
    policy_id: str,
    measurements: frozenset[bytes],
    minimum_tcb: MinimumTcb,
    allowed_products: frozenset[Product] = frozenset(Product),
) -> AttestationPolicy:
    """Build a policy that trusts only AMD's pinned ARKs, with debugging refused."""
    return AttestationPolicy(
        policy_id=policy_id,
        trusted_arks=AMD_ARK_FINGERPRINTS,
        allowed_products=allowed_products,
        measurements=measurements,
        minimum_tcb=minimum_tcb,
    )


def development_policy(
    policy_id: str,
    ark_fingerprint: str,
    product: Product,
    measurements: frozenset[bytes],
) -> AttestationPolicy:
    """Build a policy that trusts one locally generated ARK, named explicitly.

    Security:
        A development ARK key lives on the developer's disk; anyone who reads it can
        produce reports this policy accepts. Never deploy a development policy.
    """
    return AttestationPolicy(
        policy_id=policy_id,
        trusted_arks={ark_fingerprint: product},
        allowed_products=frozenset({product}),
        measurements=measurements,
    )


def check_report(report: AttestationReport, policy: AttestationPolicy) -> None:
    """Apply the policy to a report whose signature and chain were already verified.

    Raises:
        WrongProduct, SigningKeyNotAllowed, ReportDataMismatch, MeasurementNotAllowed,
        DebugEnabled, MigrationAgentNotAllowed, VmplTooHigh, TcbTooLow: the first
        failed check, in that order.
    """
    if report.product not in policy.allowed_products:
        allowed = ", ".join(sorted(product.value for product in policy.allowed_products))
        raise WrongProduct(
            f"report is from {report.product.value}; policy {policy.policy_id} allows {allowed}"
        )
    if report.signing_key not in policy.signing_keys:
        raise SigningKeyNotAllowed(
            f"report is signed by a {report.signing_key.name}; policy {policy.policy_id} "
            "does not accept that key kind"
        )
    if policy.report_data is None:
        raise ReportDataMismatch(
            "no expected REPORT_DATA was set; call policy.expecting(report_data) first"
        )
    if not hmac.compare_digest(report.report_data, policy.report_data):
        raise ReportDataMismatch(
            "REPORT_DATA is not the value bound to this request; the report was made for "
            "another request or replayed"
        )
    if report.measurement not in policy.measurements:
        raise MeasurementNotAllowed(
            f"MEASUREMENT {report.measurement.hex()} is not allowed by policy "
            f"{policy.policy_id}; add it to the allow-list if this guest image is trusted"
        )
    if report.policy.debug and not policy.allow_debug:
        raise DebugEnabled(
            "guest POLICY allows debugging (bit 19), so the host can read guest memory; "
            "launch the guest with debugging disabled"
        )
    if report.policy.migrate_ma and not policy.allow_migration_agent:
        raise MigrationAgentNotAllowed(
            "guest POLICY allows a migration agent (bit 18); launch the guest without one"
        )
    if report.vmpl > policy.max_vmpl:
        raise VmplTooHigh(
            f"report comes from VMPL {report.vmpl}; policy {policy.policy_id} allows at "
            f"most VMPL {policy.max_vmpl}"
        )
    for name, tcb in (
        ("CURRENT_TCB", report.current_tcb),
        ("COMMITTED_TCB", report.committed_tcb),
        ("REPORTED_TCB", report.reported_tcb),
    ):
        shortfalls = policy.minimum_tcb.shortfalls(tcb)
        if shortfalls:
            raise TcbTooLow(
                f"{name} is below the minimum: {', '.join(shortfalls)}; update the host "
                "firmware and microcode"
            )


def check(
    evidence: Evidence,
    policy: AttestationPolicy,
    now: datetime,
    verifier: ChainVerifier | None = None,
) -> VerifiedEvidence:
    """Verify evidence against the policy's pinned roots, then apply the policy.

    Args:
        evidence: the report and its certificate chain, as a provider returned them.
        policy: the policy, with ``report_data`` set for this request.
        now: the time at which certificate validity is checked (timezone-aware).
        verifier: a ``ChainVerifier`` to reuse its cache; it must pin the same ARKs as
            ``policy``. A new one is made when omitted.

    Returns:
        The verified evidence.

    Raises:
        AttestationError: the subclass of the first failed check.
        ValueError: ``verifier`` pins other ARKs than ``policy``.
    """
    if verifier is None:
        verifier = ChainVerifier(policy.trusted_arks)
    elif not verifier.pins(policy.trusted_arks):
        raise ValueError(f"the chain verifier pins other ARKs than policy {policy.policy_id}")
    verified = verify_evidence(evidence, verifier, now)
    check_report(verified.report, policy)
    return VerifiedEvidence(
        report=verified.report,
        policy_id=policy.policy_id,
        ark_fingerprint=verified.chain.ark_fingerprint,
        signer_fingerprint=verified.chain.signer_fingerprint,
    )
