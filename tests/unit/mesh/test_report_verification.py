"""Attestation configuration of the mesh and the coordinator's report verifier."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mesh_unit_support import build_mesh, development_provider, report_verifier

from actors.attestation.policy import MinimumTcb, production_policy
from actors.errors import ReportRejected
from actors.report_verification import (
    AttestationMode,
    AttestationSettings,
    ReportVerifier,
    policy_for,
    report_provider_for,
    startup_report_data,
)


def test_production_policy_rejects_development_chain() -> None:
    measurement = development_provider().settings.measurement
    policy = production_policy("prod", frozenset({measurement}), MinimumTcb())
    verifier = ReportVerifier(policy, lambda: datetime.now(UTC))
    evidence = development_provider().get_report(bytes(64))

    with pytest.raises(ReportRejected, match="untrusted_root") as caught:
        verifier.verify(1, evidence, bytes(64))

    assert caught.value.reason == "untrusted_root"
    assert caught.value.signer == 1


def test_verifier_rejects_report_for_other_data() -> None:
    evidence = development_provider().get_report(bytes(64))

    with pytest.raises(ReportRejected) as caught:
        report_verifier().verify(2, evidence, b"\x01" * 64)

    assert caught.value.reason == "report_data_mismatch"


def test_verifier_remembers_last_report() -> None:
    verifier = report_verifier()
    verifier.verify(3, development_provider().get_report(b"\x02" * 64), b"\x02" * 64)

    last = verifier.last(3)

    assert last is not None
    assert last.evidence.policy_id == "ztmint-development"


def test_evidence_digest_rejects_unattested_signer() -> None:
    with pytest.raises(ReportRejected, match="signer 4 has no verified attestation report"):
        report_verifier().evidence_digest_of([4])


def test_policy_for_off_warns_and_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        policy = policy_for(AttestationSettings(mode=AttestationMode.OFF), tmp_path)

    assert policy is None
    assert "switched off" in caplog.text


def test_policy_for_development_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        policy = policy_for(AttestationSettings(), tmp_path)

    assert policy is not None
    assert "development SEV-SNP chain trusted" in caplog.text


def test_policy_for_production_rejects_missing_measurements(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one allowed measurement"):
        policy_for(AttestationSettings(mode=AttestationMode.PRODUCTION), tmp_path)


def test_report_provider_for_off_is_none(tmp_path: Path) -> None:
    settings = AttestationSettings(mode=AttestationMode.OFF)

    assert report_provider_for(settings, tmp_path, 1) is None


def test_startup_report_data_binds_each_field() -> None:
    base = startup_report_data(b"c" * 32, 1, "epoch", b"v" * 32, None)

    assert startup_report_data(b"d" * 32, 1, "epoch", b"v" * 32, None) != base
    assert startup_report_data(b"c" * 32, 2, "epoch", b"v" * 32, None) != base
    assert startup_report_data(b"c" * 32, 1, "other", b"v" * 32, None) != base
    assert startup_report_data(b"c" * 32, 1, "epoch", b"w" * 32, None) != base
    assert startup_report_data(b"c" * 32, 1, "epoch", b"v" * 32, b"k" * 32) != base


class RecordingMetrics:
    """Collects what the coordinator records."""

    def __init__(self) -> None:
        self.failures: list[tuple[int, str]] = []
        self.up: dict[int, bool] = {}
        self.durations: list[float] = []

    def pool_depth(self, signer: int, depth: int) -> None:
        pass

    def signer_up(self, signer: int, fault_domain: str | None, up: bool) -> None:
        self.up[signer] = up

    def signing_seconds(self, seconds: float) -> None:
        self.durations.append(seconds)

    def signer_failure(self, signer: int, reason: str) -> None:
        self.failures.append((signer, reason))


def test_coordinator_records_failures_and_signing_time(tmp_path: Path) -> None:
    mesh = build_mesh(tmp_path)
    metrics = RecordingMetrics()
    mesh.coordinator._metrics = metrics
    mesh.transport.rewrites[("sign", 1)] = lambda _reply: TimeoutError("timed out")

    mesh.sign_token()

    assert metrics.failures == [(1, "timeout")]
    assert metrics.up[1] is False
    assert len(metrics.durations) == 1
