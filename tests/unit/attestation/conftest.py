"""Shared data for the SEV-SNP tests: the real reports, their chains and a fixed time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from actors.attestation.development import DevelopmentProvider
from actors.attestation.evidence import Evidence

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "sev-snp"
# Inside the validity period of every VCEK, ASK and ARK in the vectors folder.
NOW = datetime(2026, 1, 1, tzinfo=UTC)
REPORT_NAMES = ("go-sev-guest", "virtee-sev", "trustee")


def read_vector(name: str) -> bytes:
    """Return the bytes of a file in tests/vectors/sev-snp."""
    return (VECTORS / name).read_bytes()


def ca_bundle(name: str) -> list[bytes]:
    """Return the DER certificates (ASK or ASVK, then ARK) of an ``amd-ask-ark-*.pem`` bundle."""
    certificates = x509.load_pem_x509_certificates(read_vector(f"amd-ask-ark-{name}.pem"))
    return [certificate.public_bytes(Encoding.DER) for certificate in certificates]


@dataclass(frozen=True)
class RealVector:
    """One real report with its VCEK and the expected fields of expected-fields.json."""

    name: str
    report: bytes
    vcek: bytes
    expected: dict[str, Any]

    def evidence(self, bundle: str = "milan") -> Evidence:
        """Return the report with the VCEK and the named AMD bundle."""
        return Evidence(self.report, [self.vcek, *ca_bundle(bundle)])


def load_real_vector(name: str) -> RealVector:
    """Load a real report by its source name (``go-sev-guest``, ``virtee-sev``, ``trustee``)."""
    document = json.loads(read_vector("expected-fields.json"))
    report_file = f"{name}-milan-attestation.bin"
    (expected,) = [entry for entry in document["reports"] if entry["report"] == report_file]
    return RealVector(
        name=name,
        report=read_vector(report_file),
        vcek=read_vector(expected["signer"]),
        expected=expected,
    )


@pytest.fixture(params=REPORT_NAMES)
def real_vector(request: pytest.FixtureRequest) -> RealVector:
    """Each real report in turn."""
    return load_real_vector(request.param)


@pytest.fixture(scope="session")
def development_provider(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentProvider:
    """A development provider whose chain is generated once per test session."""
    return DevelopmentProvider(tmp_path_factory.mktemp("sev-snp-dev") / "state", clock=lambda: NOW)
