"""Errors raised while reading, verifying and judging SEV-SNP attestation reports.

Every subclass of ``AttestationError`` carries a stable ``reason`` string. The coordinator
passes the reason outward (metrics, the mint refusal) and keeps the message for its log.
Add new reasons freely, but never rename or reuse one: dashboards and alerts match on them.
"""

from __future__ import annotations


class AttestationError(Exception):
    """Base class: an attestation report or its certificate chain was rejected.

    Attributes:
        reason: stable, public reason code of the subclass.
        detail: what exactly failed and what to do about it, for the log.
    """

    reason = "attestation_invalid"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.reason}: {detail}")
        self.detail = detail


class ReportMalformed(AttestationError):
    """The report bytes do not follow the ATTESTATION_REPORT layout."""

    reason = "report_malformed"


class ReportVersionUnsupported(AttestationError):
    """The report VERSION field is not one this parser supports (2 to 5)."""

    reason = "report_version_unsupported"


class SignatureAlgorithmUnsupported(AttestationError):
    """SIGNATURE_ALGO is not 1 (ECDSA P-384 with SHA-384)."""

    reason = "signature_algorithm_unsupported"


class ReportUnsigned(AttestationError):
    """The firmware left the report unsigned (MASK_CHIP_KEY set or SIGNING_KEY = none)."""

    reason = "report_unsigned"


class SignatureInvalid(AttestationError):
    """The ECDSA P-384 signature over bytes 0x000-0x29F does not verify."""

    reason = "signature_invalid"


class CertificateMalformed(AttestationError):
    """A certificate of the chain cannot be parsed or lacks a required AMD extension."""

    reason = "certificate_malformed"


class ChainInvalid(AttestationError):
    """A certificate of the VCEK/VLEK -> ASK/ASVK -> ARK chain is not signed by its issuer."""

    reason = "chain_invalid"


class CertificateExpired(AttestationError):
    """A certificate of the chain is not valid at the verification time."""

    reason = "certificate_expired"


class UntrustedRoot(AttestationError):
    """The ARK of the chain is not one of the pinned, trusted ARK fingerprints."""

    reason = "untrusted_root"


class WrongProduct(AttestationError):
    """The report, the certificates and the pinned ARK name different AMD products."""

    reason = "wrong_product"


class TcbMismatch(AttestationError):
    """The TCB extensions of the VCEK/VLEK differ from the report's REPORTED_TCB."""

    reason = "tcb_mismatch"


class ChipIdMismatch(AttestationError):
    """The hwID extension of the VCEK differs from the report's CHIP_ID."""

    reason = "chip_id_mismatch"


class ReportDataMismatch(AttestationError):
    """REPORT_DATA is not the value the verifier expected for this request."""

    reason = "report_data_mismatch"


class MeasurementNotAllowed(AttestationError):
    """MEASUREMENT is not in the policy's allow-list."""

    reason = "measurement_not_allowed"


class DebugEnabled(AttestationError):
    """The guest policy allows debugging, which exposes guest memory to the host."""

    reason = "debug_enabled"


class MigrationAgentNotAllowed(AttestationError):
    """The guest policy allows a migration agent, and the attestation policy forbids one."""

    reason = "migration_agent_not_allowed"


class VmplTooHigh(AttestationError):
    """The report was requested from a VMPL above the policy's maximum."""

    reason = "vmpl_too_high"


class TcbTooLow(AttestationError):
    """A TCB component is below the policy's minimum for that component."""

    reason = "tcb_too_low"


class SigningKeyNotAllowed(AttestationError):
    """The report is signed by a key kind (VCEK or VLEK) the policy does not accept."""

    reason = "signing_key_not_allowed"


class ProviderError(AttestationError):
    """A report provider could not produce evidence (interface missing, busy or broken)."""

    reason = "provider_failed"
