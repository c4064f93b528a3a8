"""SEV-SNP attestation reports in the mesh: which provider a signer uses, and how the
coordinator verifies reports and remembers what each signer last proved.

Two kinds of report exist. At start-up (and after every restart) a signer attests once with
REPORT_DATA from ``startup_report_data``, which binds a fresh coordinator challenge, the
signer's identifier and epoch, its verifying share and, during key generation, its X25519
key. With every signature share it returns a report whose REPORT_DATA is
``actors.attestation.binding.report_data_for(SHA-256(signing input), share, identifier)``.
The coordinator verifies both kinds with ``actors.attestation.policy.check`` before it uses
anything the signer sent. The AMD SEV-SNP ABI (publication 56860, MSG_REPORT_REQ) defines
REPORT_DATA as 64 bytes of guest-chosen data.

Configuration picks one of three modes. In ``production``, signers use configfs-tsm and the
policy pins AMD's ARKs. In ``development``, signers use the local development chain and
the policy trusts its ARK, and the coordinator logs a warning saying so. In ``off``, no
reports are made or checked (for benchmarks), tokens carry no ``ztm.evidence``, and the
coordinator logs a warning at start-up and shows the mode in its status.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from actors.attestation.binding import evidence_digest, report_data_for
from actors.attestation.development import DevelopmentProvider
from actors.attestation.errors import AttestationError
from actors.attestation.evidence import Evidence, VerifiedEvidence
from actors.attestation.policy import (
    AttestationPolicy,
    MinimumTcb,
    check,
    development_policy,
    production_policy,
)
from actors.attestation.providers import ConfigfsTsmProvider, ReportProvider, VcekCache
from actors.attestation.verify import ChainVerifier
from actors.errors import ReportRejected

logger = logging.getLogger(__name__)

STARTUP_REPORT_DOMAIN = b"ztmint/sev-snp/signer-startup/v1"
DEVELOPMENT_POLICY_ID = "ztmint-development"
DEVELOPMENT_WARNING = "development SEV-SNP chain trusted: reports prove nothing about the hardware"
OFF_WARNING = (
    "per-mint attestation reports are switched off: tokens carry no evidence and signers "
    "are not checked for their measurement"
)


class AttestationMode(enum.StrEnum):
    """Attestation mode: the report source of the signers and the roots the coordinator trusts."""

    PRODUCTION = "production"
    DEVELOPMENT = "development"
    OFF = "off"


@dataclass(frozen=True)
class AttestationSettings:
    """Attestation configuration shared by the signers and the coordinator.

    Attributes:
        mode: production, development or off.
        policy_id: name of the production policy; it goes into the token's evidence digest.
        measurements: allowed MEASUREMENT values in production (48 bytes each).
        minimum_tcb: lowest TCB accepted in production.
    """

    mode: AttestationMode = AttestationMode.DEVELOPMENT
    policy_id: str = "ztmint-production"
    measurements: frozenset[bytes] = frozenset()
    minimum_tcb: MinimumTcb = field(default_factory=MinimumTcb)


def development_folder(state_dir: str | Path) -> Path:
    """Return the folder of the development SEV-SNP chain under ``state_dir``."""
    return Path(state_dir) / "sev-snp-dev"


def report_provider_for(
    settings: AttestationSettings, state_dir: str | Path, identifier: int
) -> ReportProvider | None:
    """Return the report provider a signer uses, or None when attestation is off."""
    if settings.mode is AttestationMode.OFF:
        return None
    if settings.mode is AttestationMode.DEVELOPMENT:
        return DevelopmentProvider(development_folder(state_dir))
    return ConfigfsTsmProvider(
        VcekCache(Path(state_dir) / "vcek-cache"), entry_name=f"ztmint-signer-{identifier}"
    )


def policy_for(settings: AttestationSettings, state_dir: str | Path) -> AttestationPolicy | None:
    """Return the policy the coordinator applies, or None when attestation is off.

    In development mode this creates the development chain if the state folder has none,
    and logs ``DEVELOPMENT_WARNING``.
    """
    if settings.mode is AttestationMode.OFF:
        logger.warning(OFF_WARNING)
        return None
    if settings.mode is AttestationMode.DEVELOPMENT:
        provider = DevelopmentProvider(development_folder(state_dir))
        logger.warning(DEVELOPMENT_WARNING, extra={"ark": provider.ark_fingerprint[:16]})
        return development_policy(
            DEVELOPMENT_POLICY_ID,
            provider.ark_fingerprint,
            provider.settings.product,
            frozenset({provider.settings.measurement}),
        )
    if not settings.measurements:
        raise ValueError(
            "production attestation needs at least one allowed measurement: set "
            "AttestationSettings.measurements to the MEASUREMENT of the signer image"
        )
    return production_policy(settings.policy_id, settings.measurements, settings.minimum_tcb)


def startup_report_data(
    challenge: bytes,
    identifier: int,
    epoch: str,
    verifying_share: bytes | None,
    box_public_key: bytes | None,
) -> bytes:
    """Compute REPORT_DATA of a signer's start-up report: SHA-512 of a length-prefixed encoding.

    The encoding is the domain string, the coordinator's challenge, the identifier (2 bytes
    big-endian), the epoch, the verifying share and the DKG X25519 public key, each value
    prefixed with its 4-byte big-endian length. An absent key is encoded as empty.
    """
    parts = [
        STARTUP_REPORT_DOMAIN,
        challenge,
        struct.pack(">H", identifier),
        epoch.encode("ascii"),
        verifying_share or b"",
        box_public_key or b"",
    ]
    return hashlib.sha512(b"".join(struct.pack(">I", len(p)) + p for p in parts)).digest()


def mint_report_data(signing_input: bytes, share_value: bytes, identifier: int) -> bytes:
    """Compute REPORT_DATA of the report returned with a signature share."""
    return report_data_for(hashlib.sha256(signing_input).digest(), share_value, identifier)


@dataclass(frozen=True)
class SignerAttestation:
    """The last verified attestation report of one signer.

    Attributes:
        evidence: the verified report.
        verified_at: when it was verified.
    """

    evidence: VerifiedEvidence
    verified_at: datetime


class ReportVerifier:
    """Verifies signers' reports with one policy and remembers each signer's last result.

    The ``ChainVerifier`` is kept for the coordinator's lifetime, so the certificate chain
    signatures are checked once per chain and only the validity periods on every call.

    Args:
        policy: the attestation policy (``policy_for``).
        clock: returns the current time (timezone-aware).
    """

    def __init__(self, policy: AttestationPolicy, clock: Callable[[], datetime]) -> None:
        self.policy = policy
        self._verifier = ChainVerifier(policy.trusted_arks)
        self._clock = clock
        self._last: dict[int, SignerAttestation] = {}

    def verify(self, identifier: int, evidence: object, report_data: bytes) -> VerifiedEvidence:
        """Verify ``evidence`` of signer ``identifier`` against ``report_data`` and remember it.

        Raises:
            ReportRejected: the evidence is missing or fails verification; ``reason`` is the
                attestation reason code.
        """
        if not isinstance(evidence, Evidence):
            raise ReportRejected(
                f"signer {identifier} sent no attestation report: expected SEV-SNP evidence "
                "with its signature share",
                signer=identifier,
                reason="report_missing",
            )
        now = self._clock()
        try:
            verified = check(evidence, self.policy.expecting(report_data), now, self._verifier)
        except AttestationError as exc:
            raise ReportRejected(
                f"attestation report of signer {identifier} rejected: {exc}",
                signer=identifier,
                reason=exc.reason,
            ) from exc
        self._last[identifier] = SignerAttestation(verified, now)
        return verified

    def last(self, identifier: int) -> SignerAttestation | None:
        """Return the last verified report of signer ``identifier``, or None."""
        return self._last.get(identifier)

    def forget(self, identifier: int) -> None:
        """Drop what was verified about signer ``identifier`` (it restarted or failed)."""
        self._last.pop(identifier, None)

    def evidence_digest_of(self, identifiers: Sequence[int]) -> str:
        """Return the ``ztm.evidence`` digest of the signers' last verified reports.

        Raises:
            ReportRejected: a signer has no verified report yet.
        """
        verified = []
        for identifier in identifiers:
            last = self._last.get(identifier)
            if last is None:
                raise ReportRejected(
                    f"signer {identifier} has no verified attestation report yet",
                    signer=identifier,
                    reason="report_missing",
                )
            verified.append(last.evidence)
        return evidence_digest(verified)
