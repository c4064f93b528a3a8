"""Evidence as a provider returns it, and evidence after verification and policy checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from actors.attestation.report import AttestationReport


@dataclass(frozen=True)
class Evidence:
    """An attestation report with the certificates that vouch for its signing key.

    Attributes:
        report: the 1184-byte ATTESTATION_REPORT.
        cert_chain: DER certificates, signer first: (VCEK or VLEK, ASK or ASVK, ARK).
    """

    report: bytes = field(repr=False)
    cert_chain: tuple[bytes, ...] = field(repr=False)

    def __init__(self, report: bytes, cert_chain: Sequence[bytes]) -> None:
        object.__setattr__(self, "report", bytes(report))
        object.__setattr__(self, "cert_chain", tuple(bytes(cert) for cert in cert_chain))


@dataclass(frozen=True)
class VerifiedEvidence:
    """A report whose signature, chain and policy checks all passed.

    Attributes:
        report: the verified report.
        policy_id: identifier of the ``AttestationPolicy`` that accepted it.
        ark_fingerprint: hex SHA-256 of the DER of the ARK the chain ends in.
        signer_fingerprint: hex SHA-256 of the DER of the VCEK or VLEK.
    """

    report: AttestationReport
    policy_id: str
    ark_fingerprint: str
    signer_fingerprint: str

    @property
    def measurement(self) -> bytes:
        """MEASUREMENT of the verified report (48 bytes)."""
        return self.report.measurement
