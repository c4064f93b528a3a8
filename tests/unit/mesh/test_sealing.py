"""Sealed signing shares: round trip, tamper detection and the development key provider."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from actors.errors import SealedShareInvalid, SealingKeyMissing
from actors.sealing import FileSealingKeyProvider, ShareRecord, ShareStore, seal_share, unseal_share
from authz.jose import b64url_encode


def _record(identifier: int = 1) -> ShareRecord:
    return ShareRecord(
        identifier=identifier,
        signing_share=os.urandom(32),
        group_public_key=os.urandom(32),
        min_signers=2,
        max_signers=3,
        verifying_shares={1: os.urandom(32), 2: os.urandom(32), 3: os.urandom(32)},
    )


def _store(state_dir: Path) -> ShareStore:
    return ShareStore(state_dir, FileSealingKeyProvider(state_dir))


def test_share_store_round_trip(tmp_path: Path) -> None:
    record = _record()
    store = _store(tmp_path)

    store.save(record)

    assert store.load(1) == record


def test_share_store_load_returns_none_without_file(tmp_path: Path) -> None:
    assert _store(tmp_path).load(1) is None


def test_share_store_files_are_private(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_record())
    key_path = tmp_path / "sealing-keys" / "signer-1.key"

    assert stat.S_IMODE(store.path(1).stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_sealed_file_does_not_contain_signing_share(tmp_path: Path) -> None:
    record = _record()
    store = _store(tmp_path)
    store.save(record)
    sealed = store.path(1).read_bytes()

    assert record.signing_share not in sealed
    assert b64url_encode(record.signing_share).encode() not in sealed


def test_unseal_rejects_flipped_ciphertext_byte() -> None:
    key = os.urandom(32)
    document = json.loads(seal_share(_record(), key, os.urandom(24)))
    ciphertext = bytearray(document["ciphertext"].encode())
    ciphertext[0] = ord("A") if ciphertext[0] != ord("A") else ord("B")
    document["ciphertext"] = ciphertext.decode()

    with pytest.raises(SealedShareInvalid, match="failed authentication"):
        unseal_share(json.dumps(document).encode(), key)


def test_unseal_rejects_altered_group_key() -> None:
    key = os.urandom(32)
    document = json.loads(seal_share(_record(), key, os.urandom(24)))
    document["public"]["group_public_key"] = b64url_encode(os.urandom(32))

    with pytest.raises(SealedShareInvalid, match="failed authentication"):
        unseal_share(json.dumps(document).encode(), key)


def test_unseal_rejects_other_key() -> None:
    sealed = seal_share(_record(), os.urandom(32), os.urandom(24))

    with pytest.raises(SealedShareInvalid, match="sealed under another key"):
        unseal_share(sealed, os.urandom(32))


def test_unseal_rejects_unparsable_file() -> None:
    with pytest.raises(SealedShareInvalid, match="does not parse"):
        unseal_share(b"{}", os.urandom(32))


def test_unseal_rejects_other_format_version() -> None:
    key = os.urandom(32)
    document = json.loads(seal_share(_record(), key, os.urandom(24)))
    document["public"]["v"] = 2

    with pytest.raises(SealedShareInvalid, match="format version 2, expected 1"):
        unseal_share(json.dumps(document).encode(), key)


def test_share_store_load_rejects_file_of_other_signer(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_record(identifier=2))
    provider = FileSealingKeyProvider(tmp_path)
    # Same sealing key for both ids, so only the identifier check can catch the swap.
    (tmp_path / "sealing-keys" / "signer-1.key").write_bytes(provider.get_key(2))
    store.path(1).write_bytes(store.path(2).read_bytes())

    with pytest.raises(SealedShareInvalid, match="belongs to signer 2, expected signer 1"):
        store.load(1)


def test_share_store_load_rejects_missing_sealing_key(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_record())
    (tmp_path / "sealing-keys" / "signer-1.key").unlink()

    with pytest.raises(SealingKeyMissing, match="signer-1.key not found"):
        store.load(1)


def test_key_provider_keeps_existing_key(tmp_path: Path) -> None:
    provider = FileSealingKeyProvider(tmp_path)

    first = provider.get_or_create_key(1)

    assert provider.get_or_create_key(1) == first
    assert provider.get_or_create_key(2) != first


def test_share_record_repr_hides_signing_share() -> None:
    record = _record()

    assert record.signing_share.hex() not in repr(record)
    assert "<redacted>" in repr(record)
