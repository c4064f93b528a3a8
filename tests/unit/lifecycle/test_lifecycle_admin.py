"""The offline parts of the lifecycle commands: guardian keys, piece files and the parser."""

from __future__ import annotations

import argparse
import io
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from actors import admin
from actors.frost import dkg
from actors.lifecycle.escrow import EscrowBundle, create_escrow
from mint.cli import build_parser


def _guardian(tmp_path: Path, index: int) -> tuple[Path, Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    private_path = tmp_path / f"guardian-{index}.key.pem"
    public_path = tmp_path / f"guardian-{index}.pub.pem"
    private_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public_path.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path, key


def _bundle(tmp_path: Path, guardian_count: int = 3) -> tuple[Path, list[Path]]:
    """Write the escrow bundle of signer 1 of a fresh 2-of-2 key for ``guardian_count`` keys."""
    round1 = {i: dkg.part1(i, 2, 2) for i in (1, 2)}
    round2 = {i: dkg.part2(round1[i][0], {3 - i: round1[3 - i][1]}) for i in (1, 2)}
    key_package, _ = dkg.part3(round2[1][0], {2: round1[2][1]}, {2: round2[2][1][1]})
    guardians = [_guardian(tmp_path, i) for i in range(1, guardian_count + 1)]
    bundle = create_escrow("escrow-0001", key_package, [g[2].public_key() for g in guardians], 2)
    path = tmp_path / "bundle.json"
    path.write_bytes(bundle.to_json())
    return path, [g[0] for g in guardians]


def _decrypt_args(key: Path, bundle: Path, index: int, out: Path) -> argparse.Namespace:
    return argparse.Namespace(key=key, bundle=bundle, index=index, out=out)


def test_guardian_decrypt_writes_private_piece(tmp_path: Path) -> None:
    bundle_path, keys = _bundle(tmp_path)
    out = tmp_path / "piece-2.json"

    code = admin.run_guardian_decrypt(_decrypt_args(keys[1], bundle_path, 2, out), io.StringIO())

    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    bundle = EscrowBundle.from_json(bundle_path.read_bytes())
    assert admin.piece_from_json(out.read_bytes(), bundle, "piece").guardian_index == 2


def test_guardian_decrypt_rejects_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle_path, keys = _bundle(tmp_path)
    out = tmp_path / "piece-1.json"
    out.write_bytes(b"keep me")

    code = admin.run_guardian_decrypt(_decrypt_args(keys[0], bundle_path, 1, out), io.StringIO())

    assert code == 1
    assert out.read_bytes() == b"keep me"
    assert "pick a new file name" in capsys.readouterr().err


def test_guardian_decrypt_rejects_other_guardians_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle_path, keys = _bundle(tmp_path)
    out = tmp_path / "piece-1.json"

    code = admin.run_guardian_decrypt(_decrypt_args(keys[2], bundle_path, 1, out), io.StringIO())

    assert code == 1
    assert not out.exists()
    assert "EscrowPieceInvalid" in capsys.readouterr().err


def test_load_guardian_public_key_rejects_p384(tmp_path: Path) -> None:
    path = tmp_path / "p384.pem"
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))

    with pytest.raises(admin.AdminError, match="not a P-256 public key"):
        admin.load_guardian_public_key(path)


def test_load_guardian_public_key_returns_x962_point(tmp_path: Path) -> None:
    _, public_path, key = _guardian(tmp_path, 1)

    encoded = admin.load_guardian_public_key(public_path)

    assert encoded == key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_piece_from_json_rejects_piece_of_other_escrow(tmp_path: Path) -> None:
    bundle_path, keys = _bundle(tmp_path)
    out = tmp_path / "piece-1.json"
    admin.run_guardian_decrypt(_decrypt_args(keys[0], bundle_path, 1, out), io.StringIO())
    bundle = EscrowBundle.from_json(bundle_path.read_bytes())
    other = EscrowBundle(**{**bundle.__dict__, "escrow_id": "escrow-0002"})

    with pytest.raises(admin.AdminError, match="escrow escrow-0001"):
        admin.piece_from_json(out.read_bytes(), other, "piece-1.json")


def test_parser_registers_lifecycle_commands() -> None:
    parser = build_parser()

    repair = parser.parse_args(["signers", "repair", "--signer", "2", "--helpers", "1,3"])
    decrypt = parser.parse_args(
        ["guardian", "decrypt", "--key", "k", "--bundle", "b", "--index", "1", "--out", "o"]
    )

    assert repair.handler is admin.run_repair
    assert repair.helpers == [1, 3]
    assert decrypt.handler is admin.run_guardian_decrypt


def test_parser_rejects_invalid_helper_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["signers", "repair", "--signer", "2", "--helpers", "1,x"])
    assert "expected identifiers like 1,3" in capsys.readouterr().err
