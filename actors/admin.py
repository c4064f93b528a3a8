"""Operator commands for the key lifecycle: ``ztmint signers init|refresh|repair|escrow|restore``
and ``ztmint guardian decrypt``.

``signers init`` is the key generation ceremony: a thin wrapper over ``actors.mesh.start_mesh``
with detached actors, run once as a Ray Job (or any driver) connected to the cluster.

The ``signers`` commands connect to the Ray cluster (``actors.mesh.connect``) and call the
coordinator actor ``ztmint-coordinator``, which relays each step to the signers. ``guardian
decrypt`` runs offline on a guardian's machine and needs no Ray.

Escrow restore, step by step: ``signers escrow`` writes one bundle per signer (ciphertext and
public values only). When a signer loses its share, each of t_g guardians runs ``guardian
decrypt`` with their own key and hands the piece file to the operator. ``signers restore``
then seals every piece to an X25519 key that the restored signer draws for this restore, so the
coordinator relays ciphertext only.

Security:
    A piece file is secret: t_g of them are one signer's signing share. ``guardian decrypt``
    writes it with mode 0600 and never overwrites a file; delete the piece files once the
    restore succeeded. The ``signers restore`` process keeps the pieces in memory while it runs.

Limitations:
    Only software guardian keys (an unencrypted PKCS#8 PEM file) are read here. A YubiKey PIV
    key (``actors.lifecycle.guardian_keys.PivGuardianKey``) needs the ``yubikey-manager``
    package, which this project does not install. The coordinator's lifecycle methods are
    open to any Ray driver of the cluster, as ``dkg_round1`` is; Ray's mTLS is what keeps
    other machines out.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

CALL_TIMEOUT_SECONDS = 300.0
PIECE_FORMAT_VERSION = 1
_SESSION_ID_BYTES = 12

Progress = Callable[[str], None]


class AdminError(Exception):
    """A lifecycle command failed; the message names the signer and the next step."""


# Pure helpers (no Ray), also used by the tests.


def new_session_id(prefix: str) -> str:
    """Return a fresh session id such as ``refresh-3f9a...`` (24 random hex digits)."""
    return f"{prefix}-{secrets.token_hex(_SESSION_ID_BYTES)}"


def load_guardian_public_key(path: Path) -> bytes:
    """Read a guardian's P-256 public key (PEM) and return it X9.62 uncompressed (65 bytes).

    Raises:
        AdminError: the file is missing, not PEM, or not a P-256 public key.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AdminError(
            f"guardian key {path} could not be read as a PEM public key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AdminError(f"guardian key {path} is not a P-256 public key")
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def load_guardian_private_key(path: Path) -> Any:
    """Read a guardian's unencrypted P-256 private key (PKCS#8 PEM) as a software key.

    Raises:
        AdminError: the file is missing, not PEM, encrypted, or not P-256.
    """
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from actors.lifecycle.guardian_keys import SoftwareGuardianKey

    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AdminError(
            f"guardian key {path} could not be read as an unencrypted PEM private key: {exc}"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AdminError(f"guardian key {path} is not a P-256 private key")
    return SoftwareGuardianKey(key)


def piece_to_json(bundle: Any, piece: Any) -> bytes:
    """Serialise a decrypted piece with the escrow id and signer it belongs to."""
    from authz.jose import b64url_encode, json_dumps_compact

    return json_dumps_compact(
        {
            "v": PIECE_FORMAT_VERSION,
            "escrow_id": bundle.escrow_id,
            "signer": bundle.signer,
            "guardian_index": piece.guardian_index,
            "value": b64url_encode(piece.value),
        }
    )


def piece_from_json(data: bytes, bundle: Any, source: str) -> Any:
    """Parse a piece file and check it belongs to ``bundle``.

    Raises:
        AdminError: the file does not parse or is of another escrow or signer.
    """
    from actors.lifecycle.escrow import EscrowPiece
    from authz.errors import AuthzError
    from authz.jose import b64url_decode

    try:
        document = json.loads(data.decode("utf-8"))
        if document["v"] != PIECE_FORMAT_VERSION:
            raise ValueError(f"version {document['v']!r}, expected {PIECE_FORMAT_VERSION}")
        piece = EscrowPiece(int(document["guardian_index"]), b64url_decode(document["value"]))
        escrow_id, signer = document["escrow_id"], int(document["signer"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AuthzError) as exc:
        raise AdminError(f"piece file {source} does not parse: {exc}") from exc
    if (escrow_id, signer) != (bundle.escrow_id, bundle.signer):
        raise AdminError(
            f"piece file {source} is of escrow {escrow_id} signer {signer}, the bundle is "
            f"escrow {bundle.escrow_id} signer {bundle.signer}: use pieces of this bundle"
        )
    return piece


def seal_pieces(
    request: Any, pieces: Mapping[int, Any], rng: Callable[[int], bytes] = os.urandom
) -> tuple[bytes, dict[int, Any]]:
    """Seal each decrypted piece to the restored signer's X25519 key of ``request``.

    Returns:
        The sender's X25519 public key and the sealed pieces by guardian index.
    """
    from actors.lifecycle.channel import new_box_key, seal_scalar
    from actors.signer_lifecycle import RESTORE_PURPOSE

    box_key = new_box_key(rng)
    sealed = {
        index: seal_scalar(
            box_key,
            request.box_public_key,
            purpose=RESTORE_PURPOSE,
            session_id=request.session_id,
            sender=index,
            recipient=request.signer,
            scalar=piece.value,
            rng=rng,
        )
        for index, piece in pieces.items()
    }
    return bytes(box_key.public_key), sealed


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; an existing file is never replaced.

    Raises:
        AdminError: the file exists or cannot be created.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise AdminError(f"cannot create {path}: {exc}; pick a new file name") from exc
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


# Operations on a coordinator handle.


def refresh(
    coordinator: Any, progress: Progress, resume: bool = False, skip: Sequence[int] = ()
) -> bytes:
    """Refresh every signing share (or resume an incomplete commit); return the group key."""
    import ray

    if resume:
        progress(f"resuming the refresh commit, skipping signers {list(skip)}")
        call = coordinator.resume_refresh.remote(list(skip))
    else:
        session_id = new_session_id("refresh")
        progress(f"refresh {session_id}: every signer takes part; signing pauses during commit")
        call = coordinator.run_refresh.remote(session_id)
    package, lines = ray.get(call, timeout=CALL_TIMEOUT_SECONDS)
    for line in lines:
        progress(line)
    return bytes(package.group_public_key)


def repair(
    coordinator: Any, signer: int, helpers: Sequence[int] | None, progress: Progress
) -> None:
    """Rebuild the lost share of ``signer`` from ``helpers`` (default: t signers that are up)."""
    import ray

    session_id = new_session_id("repair")
    progress(f"repair {session_id} of signer {signer}")
    call = coordinator.run_repair.remote(session_id, signer, list(helpers) if helpers else None)
    _, lines = ray.get(call, timeout=CALL_TIMEOUT_SECONDS)
    for line in lines:
        progress(line)


def escrow(
    coordinator: Any,
    guardian_keys: Sequence[bytes],
    threshold: int,
    out_dir: Path,
    progress: Progress,
) -> list[Path]:
    """Create one escrow bundle per signer and write ``<out_dir>/<escrow id>-signer-<n>.json``."""
    import ray

    escrow_id = new_session_id("escrow")
    progress(f"escrow {escrow_id}: asking every signer for a bundle")
    bundles = ray.get(
        coordinator.run_escrow.remote(escrow_id, list(guardian_keys), threshold),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for identifier, bundle in sorted(bundles.items()):
        path = out_dir / f"{escrow_id}-signer-{identifier}.json"
        write_secret_file(path, bundle.to_json())
        written.append(path)
        progress(f"wrote {path}")
    return written


def restore(coordinator: Any, signer: int, bundle: Any, pieces: Mapping[int, Any]) -> bytes:
    """Restore ``signer`` from its bundle and decrypted pieces; return the group key."""
    import ray

    if bundle.signer != signer:
        raise AdminError(
            f"bundle {bundle.escrow_id} is of signer {bundle.signer}, not signer {signer}"
        )
    request = ray.get(
        coordinator.begin_restore.remote(signer, new_session_id("restore")),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    sender, sealed = seal_pieces(request, pieces)
    package = ray.get(
        coordinator.finish_restore.remote(signer, bundle, sender, sealed),
        timeout=CALL_TIMEOUT_SECONDS,
    )
    return bytes(package.group_public_key)


# Command-line shell.


def add_signer_lifecycle_parsers(signer_commands: Any) -> None:
    """Add ``init``, ``refresh``, ``repair``, ``escrow`` and ``restore`` to ``ztmint signers``."""
    init_parser = signer_commands.add_parser(
        "init", help="create the coordinator and signers; run key generation if no share exists"
    )
    init_parser.add_argument("--signers", type=int, required=True, help="number of signers n")
    init_parser.add_argument(
        "--threshold", type=int, required=True, help="signers needed per signature t"
    )
    init_parser.add_argument(
        "--state-dir",
        default="/var/lib/ztmint",
        help="signers' state folder, on each signer's node (default /var/lib/ztmint)",
    )
    init_parser.add_argument(
        "--coordinator-state-dir",
        default=None,
        help="coordinator's state folder, on its node (default: the --state-dir path)",
    )
    init_parser.add_argument(
        "--attestation",
        choices=["production", "development", "off"],
        default="development",
        help="attestation mode of the signers and the coordinator (default development)",
    )
    init_parser.add_argument(
        "--measurement",
        action="append",
        default=[],
        help="with --attestation production: an allowed MEASUREMENT (96 hex digits); repeatable",
    )
    init_parser.set_defaults(handler=run_init)

    refresh_parser = signer_commands.add_parser(
        "refresh", help="refresh every signing share, keeping the group key"
    )
    refresh_parser.add_argument(
        "--resume", action="store_true", help="repeat an incomplete refresh commit"
    )
    refresh_parser.add_argument(
        "--skip",
        type=_identifier_list,
        default=[],
        help="with --resume: signers whose sealed share was deleted, to repair afterwards",
    )
    refresh_parser.set_defaults(handler=run_refresh)

    repair_parser = signer_commands.add_parser(
        "repair", help="rebuild a signer's lost signing share from t other signers"
    )
    repair_parser.add_argument("--signer", type=int, required=True, help="signer to rebuild")
    repair_parser.add_argument(
        "--helpers", type=_identifier_list, default=None, help="helpers, e.g. 1,3 (default: t up)"
    )
    repair_parser.set_defaults(handler=run_repair)

    escrow_parser = signer_commands.add_parser(
        "escrow", help="write one guardian escrow bundle per signer"
    )
    escrow_parser.add_argument(
        "--guardian-key",
        type=Path,
        nargs="+",
        required=True,
        help="each guardian's P-256 public key (PEM), in guardian index order 1..n",
    )
    escrow_parser.add_argument(
        "--threshold", type=int, required=True, help="guardians needed to restore a share"
    )
    escrow_parser.add_argument("--out", type=Path, required=True, help="folder for the bundles")
    escrow_parser.set_defaults(handler=run_escrow)

    restore_parser = signer_commands.add_parser(
        "restore", help="restore a signer without a share from its escrow bundle"
    )
    restore_parser.add_argument("--signer", type=int, required=True, help="signer to restore")
    restore_parser.add_argument("--bundle", type=Path, required=True, help="its bundle file")
    restore_parser.add_argument(
        "--piece", type=Path, nargs="+", required=True, help="decrypted guardian piece files"
    )
    restore_parser.set_defaults(handler=run_restore)

    for parser in (init_parser, refresh_parser, repair_parser, escrow_parser, restore_parser):
        parser.add_argument(
            "--address",
            default=os.environ.get("RAY_ADDRESS", "auto"),
            help="Ray cluster address (default $RAY_ADDRESS or auto: the local cluster)",
        )


def add_guardian_parser(commands: Any) -> None:
    """Add ``ztmint guardian decrypt``."""
    guardian = commands.add_parser("guardian", help="offline tools for escrow guardians")
    guardian_commands = guardian.add_subparsers(dest="guardian_command", required=True)
    decrypt = guardian_commands.add_parser(
        "decrypt", help="decrypt this guardian's piece of an escrow bundle"
    )
    decrypt.add_argument(
        "--key", type=Path, required=True, help="guardian P-256 private key (PKCS#8 PEM)"
    )
    decrypt.add_argument("--bundle", type=Path, required=True, help="escrow bundle file")
    decrypt.add_argument("--index", type=int, required=True, help="this guardian's index (1..n)")
    decrypt.add_argument("--out", type=Path, required=True, help="piece file to create (0600)")
    decrypt.set_defaults(handler=run_guardian_decrypt)


def run_guardian_decrypt(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Decrypt one guardian's piece, check it against the bundle and write it (mode 0600)."""
    from actors.lifecycle.errors import LifecycleError
    from actors.lifecycle.escrow import decrypt_piece

    try:
        bundle = _load_bundle(args.bundle)
        piece = decrypt_piece(bundle, args.index, load_guardian_private_key(args.key))
        write_secret_file(args.out, piece_to_json(bundle, piece))
    except (AdminError, LifecycleError) as exc:
        return _fail("guardian decrypt", exc)
    print(
        f"wrote piece {args.index} of escrow {bundle.escrow_id} (signer {bundle.signer}) to "
        f"{args.out}; hand it to the operator and delete it after the restore",
        file=out,
    )
    return 0


def run_init(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``ztmint signers init --signers N --threshold T [--address ...]``."""
    import ray

    from actors.errors import MeshError
    from actors.mesh import start_mesh
    from actors.report_verification import AttestationMode, AttestationSettings
    from actors.signer import NAMESPACE

    try:
        measurements = frozenset(bytes.fromhex(value) for value in args.measurement)
    except ValueError as exc:
        return _fail("signers init", AdminError(f"invalid --measurement: {exc}: expected hex"))
    attestation = AttestationSettings(
        mode=AttestationMode(args.attestation), measurements=measurements
    )

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    address = getattr(args, "address", None) or "auto"
    try:
        if not ray.is_initialized():
            ray.init(address=address, namespace=NAMESPACE)
        start_mesh(
            args.state_dir,
            args.signers,
            args.threshold,
            progress=progress,
            attestation=attestation,
            detached=True,
            timeout=CALL_TIMEOUT_SECONDS,
            coordinator_state_dir=args.coordinator_state_dir,
        )
    except (ValueError, ConnectionError, MeshError, TimeoutError) as exc:
        return _fail("signers init", exc)
    except Exception as exc:  # noqa: BLE001 -- Ray errors: report them with their cause
        cause = getattr(exc, "cause", None)
        return _fail("signers init", cause if isinstance(cause, BaseException) else exc)
    return 0


def run_refresh(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``ztmint signers refresh [--resume]``."""
    return _with_coordinator(
        "signers refresh",
        args,
        out,
        lambda coordinator, progress: progress(
            "group key unchanged: "
            + refresh(coordinator, progress, args.resume, getattr(args, "skip", [])).hex()
        ),
    )


def run_repair(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``ztmint signers repair --signer N [--helpers 1,3]``."""
    return _with_coordinator(
        "signers repair",
        args,
        out,
        lambda coordinator, progress: repair(coordinator, args.signer, args.helpers, progress),
    )


def run_escrow(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``ztmint signers escrow --guardian-key PEM... --threshold K --out DIR``."""
    try:
        keys = [load_guardian_public_key(path) for path in args.guardian_key]
    except AdminError as exc:
        return _fail("signers escrow", exc)
    return _with_coordinator(
        "signers escrow",
        args,
        out,
        lambda coordinator, progress: escrow(coordinator, keys, args.threshold, args.out, progress),
    )


def run_restore(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``ztmint signers restore --signer N --bundle FILE --piece FILE...``."""
    try:
        bundle = _load_bundle(args.bundle)
        pieces = {}
        for path in args.piece:
            piece = piece_from_json(_read(path), bundle, str(path))
            pieces[piece.guardian_index] = piece
    except AdminError as exc:
        return _fail("signers restore", exc)

    def operation(coordinator: Any, progress: Progress) -> None:
        progress(f"restoring signer {args.signer} from {len(pieces)} guardian pieces")
        group_key = restore(coordinator, args.signer, bundle, pieces)
        progress(f"signer {args.signer} restored under group key {group_key.hex()}")

    return _with_coordinator("signers restore", args, out, operation)


def _with_coordinator(
    name: str,
    args: argparse.Namespace,
    out: TextIO,
    operation: Callable[[Any, Progress], object],
) -> int:
    from actors.errors import MeshError
    from actors.lifecycle.errors import LifecycleError
    from actors.mesh import connect

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    address = getattr(args, "address", None) or "auto"
    try:
        coordinator = connect(address)
    except (ValueError, ConnectionError) as exc:
        return _fail(name, AdminError(f"no coordinator in the Ray cluster at {address}: {exc}"))
    try:
        operation(coordinator, progress)
    except (AdminError, MeshError, LifecycleError, TimeoutError) as exc:
        return _fail(name, exc)
    except Exception as exc:  # noqa: BLE001 -- Ray errors: report them with their cause
        cause = getattr(exc, "cause", None)
        return _fail(name, cause if isinstance(cause, BaseException) else exc)
    return 0


def _fail(name: str, error: BaseException) -> int:
    cause = getattr(error, "cause", None)
    shown = cause if isinstance(cause, BaseException) else error
    text = str(shown).strip().splitlines()[-1] if str(shown).strip() else type(shown).__name__
    print(f"ztmint {name}: {type(shown).__name__}: {text}", file=sys.stderr)
    return 1


def _load_bundle(path: Path) -> Any:
    from actors.lifecycle.errors import EscrowBundleInvalid
    from actors.lifecycle.escrow import EscrowBundle

    try:
        return EscrowBundle.from_json(_read(path))
    except EscrowBundleInvalid as exc:
        raise AdminError(f"bundle {path} is invalid: {exc}") from exc


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminError(f"cannot read {path}: {exc}") from exc


def _identifier_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"invalid signer list {text!r}: expected identifiers like 1,3"
        ) from exc
    if not values:
        raise argparse.ArgumentTypeError("empty signer list: expected identifiers like 1,3")
    return values
