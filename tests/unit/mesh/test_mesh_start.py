"""start_mesh's check of the sealed shares found at start-up, without Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
from mesh_unit_support import build_mesh

from actors.errors import MeshError
from actors.mesh import _check_sealed_shares
from actors.messages import SignerInfo


def _infos(tmp_path: Path, with_share: set[int]) -> list[SignerInfo]:
    mesh = build_mesh(tmp_path)
    infos = [signer.describe() for signer in mesh.signers.values()]
    return [
        info if info.identifier in with_share else SignerInfo(info.identifier, info.epoch, None, 0)
        for info in infos
    ]


def test_check_sealed_shares_returns_signers_with_share(tmp_path: Path) -> None:
    assert _check_sealed_shares(_infos(tmp_path, {1, 3}), t=2) == [1, 3]


def test_check_sealed_shares_returns_empty_without_shares(tmp_path: Path) -> None:
    assert _check_sealed_shares(_infos(tmp_path, set()), t=2) == []


def test_check_sealed_shares_rejects_too_few(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="only signers \\[2\\] have sealed shares, 2 are needed"):
        _check_sealed_shares(_infos(tmp_path, {2}), t=2)


def test_check_sealed_shares_rejects_other_threshold(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="threshold \\[2\\], start_mesh was called with t=3"):
        _check_sealed_shares(_infos(tmp_path, {1, 2, 3}), t=3)


def test_status_table_lists_each_signer() -> None:
    from actors.status import format_table

    rows = [
        {"identifier": 1, "actor_name": "ztmint-signer-1", "node_id": "ab" * 28, "state": "up",
         "fault_domain": "fd-1", "attestation": "verified", "pool_depth": 32},
        {"identifier": 2, "actor_name": "ztmint-signer-2", "node_id": None, "state": "down",
         "last_error": "timed out"},
    ]  # fmt: skip

    lines = format_table(rows).splitlines()

    assert lines[0].split()[:3] == ["ID", "ACTOR", "NODE"]
    assert lines[1].split()[:5] == ["1", "ztmint-signer-1", "ab" * 6, "fd-1", "up"]
    assert lines[2].split()[:5] == ["2", "ztmint-signer-2", "-", "-", "down"]
    assert lines[2].endswith("timed out")
