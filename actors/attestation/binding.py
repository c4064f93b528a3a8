"""Bind an attestation report to one mint, and summarise verified evidence for a token.

``report_data_for`` gives the 64 bytes a signer puts into REPORT_DATA when it returns a
signature share, so a report proves that this signer, inside this guest, produced this
share for this mint. ``evidence_digest`` condenses the verified reports of one mint into
the token's ``ztm.evidence`` claim.
"""

from __future__ import annotations

import hashlib
import struct

from actors.attestation.evidence import VerifiedEvidence
from authz.jose import b64url_encode

REPORT_DATA_DOMAIN = b"ztmint/sev-snp/report-data/v1"
EVIDENCE_DIGEST_DOMAIN = b"ztmint/sev-snp/evidence-digest/v1"
MAX_SIGNER_IDENTIFIER = 0xFFFF


def _length_prefixed(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def report_data_for(mint_digest: bytes, signature_share: bytes, signer_identifier: int) -> bytes:
    """Compute REPORT_DATA for a signer's share: SHA-512 over a domain-separated encoding.

    The encoding is ``len(domain) || domain || len(mint_digest) || mint_digest ||
    len(signature_share) || signature_share || signer_identifier``, lengths as 4-byte
    big-endian integers and the identifier as 2 big-endian bytes, so no two inputs share
    an encoding.

    Args:
        mint_digest: 32-byte digest identifying the mint (the token signing input's hash).
        signature_share: the signer's serialized signature share (RFC 9591 section 5.2).
        signer_identifier: the signer's FROST identifier, 1-65535.

    Returns:
        The 64 bytes to request the report with.

    Raises:
        ValueError: an argument has the wrong size or range.
    """
    if len(mint_digest) != 32:
        raise ValueError(f"mint_digest must be 32 bytes, got {len(mint_digest)}")
    if not signature_share:
        raise ValueError("signature_share must not be empty")
    if not 1 <= signer_identifier <= MAX_SIGNER_IDENTIFIER:
        raise ValueError(f"signer_identifier must be 1-65535, got {signer_identifier}")
    encoded = (
        _length_prefixed(REPORT_DATA_DOMAIN)
        + _length_prefixed(mint_digest)
        + _length_prefixed(signature_share)
        + struct.pack(">H", signer_identifier)
    )
    return hashlib.sha512(encoded).digest()


def evidence_digest(verified: list[VerifiedEvidence]) -> str:
    """Digest the measurements and policy ids of a mint's verified reports.

    Each entry is ``len(policy_id) || policy_id || measurement``. The entries are sorted,
    so the order in which signers returned their shares does not change the digest. The
    result is the base64url (no padding) SHA-256 of the domain string and the sorted
    entries.

    Raises:
        ValueError: ``verified`` is empty.
    """
    if not verified:
        raise ValueError("evidence_digest needs at least one verified report")
    entries = sorted(
        _length_prefixed(item.policy_id.encode("utf-8")) + item.measurement for item in verified
    )
    digest = hashlib.sha256(_length_prefixed(EVIDENCE_DIGEST_DOMAIN))
    for entry in entries:
        digest.update(_length_prefixed(entry))
    return b64url_encode(digest.digest())
