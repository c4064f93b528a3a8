"""REPORT_DATA binding of a signature share and the token's evidence digest."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

import pytest

from actors.attestation.binding import evidence_digest, report_data_for
from actors.attestation.evidence import VerifiedEvidence
from actors.attestation.report import parse_report
from actors.attestation.tcb import Product

from .conftest import REPORT_NAMES, load_real_vector

_MINT = hashlib.sha256(b"mint").digest()
_SHARE = b"\x05" * 32


def _verified(name: str, policy_id: str = "production") -> VerifiedEvidence:
    report = parse_report(load_real_vector(name).report, Product.MILAN)
    return VerifiedEvidence(
        report=report, policy_id=policy_id, ark_fingerprint="ark", signer_fingerprint="vcek"
    )


def test_report_data_for_follows_documented_encoding() -> None:
    domain = b"ztmint/sev-snp/report-data/v1"
    encoded = (
        len(domain).to_bytes(4, "big")
        + domain
        + len(_MINT).to_bytes(4, "big")
        + _MINT
        + len(_SHARE).to_bytes(4, "big")
        + _SHARE
        + (3).to_bytes(2, "big")
    )
    assert report_data_for(_MINT, _SHARE, 3) == hashlib.sha512(encoded).digest()


def test_report_data_for_changes_with_each_input() -> None:
    base = report_data_for(_MINT, _SHARE, 1)
    assert report_data_for(hashlib.sha256(b"other").digest(), _SHARE, 1) != base
    assert report_data_for(_MINT, b"\x06" * 32, 1) != base
    assert report_data_for(_MINT, _SHARE, 2) != base


@pytest.mark.parametrize(
    ("mint_digest", "share", "identifier", "message"),
    [
        (bytes(31), _SHARE, 1, "mint_digest"),
        (_MINT, b"", 1, "signature_share"),
        (_MINT, _SHARE, 0, "signer_identifier"),
        (_MINT, _SHARE, 65536, "signer_identifier"),
    ],
)
def test_report_data_for_rejects_bad_input(
    mint_digest: bytes, share: bytes, identifier: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        report_data_for(mint_digest, share, identifier)


def test_evidence_digest_ignores_order() -> None:
    items = [_verified(name) for name in REPORT_NAMES]
    assert evidence_digest(items) == evidence_digest(list(reversed(items)))


def test_evidence_digest_is_unpadded_base64url_sha256() -> None:
    digest = evidence_digest([_verified("trustee")])
    assert len(base64.urlsafe_b64decode(digest + "=")) == 32
    assert "=" not in digest


def test_evidence_digest_changes_with_policy_id() -> None:
    assert evidence_digest([_verified("trustee")]) != evidence_digest(
        [_verified("trustee", "development")]
    )


def test_evidence_digest_changes_with_measurement() -> None:
    item = _verified("trustee")
    changed = replace(item, report=replace(item.report, measurement=bytes(48)))
    assert evidence_digest([item]) != evidence_digest([changed])


def test_evidence_digest_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        evidence_digest([])
