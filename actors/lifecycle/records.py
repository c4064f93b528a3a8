"""Conversions between FROST key packages and the signers' sealed share records."""

from __future__ import annotations

import hashlib

from actors.frost.keys import KeyPackage, PublicKeyPackage
from actors.sealing import ShareRecord
from authz.jose import b64url_encode, json_dumps_compact


def share_record(key_package: KeyPackage, public_key_package: PublicKeyPackage) -> ShareRecord:
    """Build the sealed-share record of a signer from its key package and the public one."""
    return ShareRecord(
        identifier=key_package.identifier,
        signing_share=key_package.signing_share,
        group_public_key=public_key_package.group_public_key,
        min_signers=public_key_package.min_signers,
        max_signers=len(public_key_package.verifying_shares),
        verifying_shares=dict(public_key_package.verifying_shares),
    )


def record_public_key_package(record: ShareRecord) -> PublicKeyPackage:
    """Return the public key package stored in a sealed-share record."""
    return PublicKeyPackage(
        verifying_shares=dict(record.verifying_shares),
        group_public_key=record.group_public_key,
        min_signers=record.min_signers,
    )


def record_key_package(record: ShareRecord) -> KeyPackage:
    """Return the key package stored in a sealed-share record."""
    return KeyPackage(
        identifier=record.identifier,
        signing_share=record.signing_share,
        verifying_share=record.verifying_shares[record.identifier],
        group_public_key=record.group_public_key,
        min_signers=record.min_signers,
    )


def public_key_package_digest(package: PublicKeyPackage) -> str:
    """Return the hex SHA-256 of a canonical JSON form of a public key package.

    Signers and the coordinator compare these digests to check that every signer finished a
    refresh or repair with the same group key and verifying shares.
    """
    document = {
        "group_public_key": b64url_encode(package.group_public_key),
        "min_signers": package.min_signers,
        "verifying_shares": {
            str(identifier): b64url_encode(share)
            for identifier, share in sorted(package.verifying_shares.items())
        },
    }
    return hashlib.sha256(json_dumps_compact(document)).hexdigest()
