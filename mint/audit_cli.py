"""The ``ztmint audit`` commands: verify a log, and prove offline that a token is in it.

``ztmint audit verify PATH [--checkpoint FILE --key FILE]`` checks the hash chain of every
record and, with a signed checkpoint saved earlier, that the log still starts with exactly
the records that checkpoint covered (RFC 9162 section 2.1.4 consistency). This catches
edited, reordered, dropped and appended-over records, a truncated tail and a rewritten
history.

``ztmint audit prove --log PATH --checkpoint FILE --key FILE [--token-file F]`` hashes the
token, finds its ``token_minted`` record, and checks the record's inclusion proof against the
signed checkpoint (RFC 9162 section 2.1.3). The token is read from a file or from stdin,
never from the command line, where other users can read it in the process list.

The key is the mint's receipt key, as a PEM public key or as the JWKS document of
``/.well-known/jwks.json``. Its checkpoint signatures use the checkpoint's origin as key name.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authz.formats import token_sha256
from authz.jose import b64url_decode, b64url_encode
from mint.audit import AuditProblem, LogScan, VerifyResult, scan
from mint.transparency.checkpoint import (
    Checkpoint,
    EcdsaP256NoteVerifier,
    parse_checkpoint,
    verify_checkpoint,
    verify_checkpoint_extends,
)
from mint.transparency.errors import InconsistentTrees, TransparencyError
from mint.transparency.merkle import leaf_hash, verify_inclusion

EVENT_TOKEN_MINTED = "token_minted"  # noqa: S105 (an event name, not a secret)


class AuditCommandError(Exception):
    """An ``audit`` command cannot run: a file is missing or unreadable, or an input is bad."""


class TokenNotInLog(AuditCommandError):
    """No ``token_minted`` record of the log carries the token's SHA-256."""


@dataclass(frozen=True)
class TokenInclusion:
    """A token's record, proven to be in the tree of a verified checkpoint.

    Attributes:
        index: the record's 0-based index in the log.
        jti: the token's ``jti`` as written in the record.
        checkpoint: the verified checkpoint the proof leads to.
    """

    index: int
    jti: str
    checkpoint: Checkpoint


def load_checkpoint_verifier(key_data: bytes, checkpoint_text: bytes) -> EcdsaP256NoteVerifier:
    """Pick the P-256 key of ``key_data`` whose key ID signed ``checkpoint_text``.

    Args:
        key_data: a PEM public key, a JWKS document, or one JWK.
        checkpoint_text: the checkpoint, parsed here for its origin and key IDs only.

    Raises:
        AuditCommandError: no P-256 key in ``key_data`` matches a signature line.
        CheckpointMalformed: the checkpoint breaks the format.
    """
    signed = parse_checkpoint(checkpoint_text)
    key_ids = {entry.key_id for entry in signed.signatures}
    for public_key in _p256_public_keys(key_data):
        verifier = EcdsaP256NoteVerifier(public_key, signed.checkpoint.origin)
        if verifier.key_id in key_ids:
            return verifier
    raise AuditCommandError(
        f"no P-256 key in the key file matches a signature of the checkpoint for origin "
        f"{signed.checkpoint.origin!r}; pass the mint's receipt key (PEM or its JWKS)"
    )


def check_against_checkpoint(scanned: LogScan, checkpoint: Checkpoint) -> VerifyResult:
    """Check that the log still starts with the records a verified checkpoint covered.

    The consistency proof from the checkpoint's tree to the log's whole tree is computed from
    the log and checked with ``verify_checkpoint_extends`` (RFC 9162 section 2.1.4.2).

    Returns:
        ``scanned.result`` when the chain is already broken. A ``TRUNCATED`` result when the
        log has fewer records than the checkpoint covers. A ``HISTORY_REWRITTEN`` result
        when the first ``checkpoint.size`` records are not the ones it signed. Otherwise the
        intact result.
    """
    result = scanned.result
    if not result.ok:
        return result
    tree = scanned.tree
    if tree.size < checkpoint.size:
        detail = f"log has {tree.size} records; the checkpoint covers {checkpoint.size}"
        return VerifyResult(result.count, result.head, tree.size, AuditProblem.TRUNCATED, detail)
    current = Checkpoint(checkpoint.origin, tree.size, tree.root())
    proof = tree.consistency_proof(checkpoint.size) if checkpoint.size > 0 else []
    try:
        verify_checkpoint_extends(checkpoint, current, proof)
    except InconsistentTrees:
        detail = (
            f"the first {checkpoint.size} records do not have the checkpoint's root hash, "
            "so records it covered were changed, reordered or replaced"
        )
        problem = AuditProblem.HISTORY_REWRITTEN
        return VerifyResult(result.count, result.head, None, problem, detail)
    return result


def prove_token(
    scanned: LogScan, token: str, checkpoint_text: bytes, key_data: bytes
) -> TokenInclusion:
    """Prove that ``token`` has a record in the tree of a signed checkpoint.

    The steps are:

    1. verify the checkpoint's signature with the pinned key;
    2. find the ``token_minted`` record whose ``token_sha256`` is the token's SHA-256;
    3. build the record's inclusion proof from the log's tree at the checkpoint's size;
    4. verify the proof against the checkpoint's root (RFC 9162 section 2.1.3.2).

    Raises:
        AuditCommandError: the key matches no signature, the log has fewer verified
            records than the checkpoint, or the record is newer than the checkpoint.
        TokenNotInLog: no record carries the token's SHA-256.
        TransparencyError: the checkpoint is malformed or its signature is invalid, or the
            inclusion proof does not lead to its root.
    """
    verifier = load_checkpoint_verifier(key_data, checkpoint_text)
    checkpoint = verify_checkpoint(checkpoint_text, verifier)
    if scanned.tree.size < checkpoint.size:
        raise AuditCommandError(
            f"the log has {scanned.tree.size} verified records but the checkpoint covers "
            f"{checkpoint.size}; run `ztmint audit verify` on the log"
        )

    digest = b64url_encode(token_sha256(token))
    index, jti = _find_token_record(scanned.records, digest)
    if index >= checkpoint.size:
        raise AuditCommandError(
            f"the token's record {index} is newer than the checkpoint of size "
            f"{checkpoint.size}; use a later checkpoint"
        )

    proof = scanned.tree.inclusion_proof(index, checkpoint.size)
    verify_inclusion(
        leaf_hash(scanned.records[index]), index, checkpoint.size, proof, checkpoint.root
    )
    return TokenInclusion(index, jti, checkpoint)


def _find_token_record(records: list[bytes], digest: str) -> tuple[int, str]:
    for index, line in enumerate(records):
        record = json.loads(line)
        fields = record["fields"]
        if record["event"] == EVENT_TOKEN_MINTED and fields.get("token_sha256") == digest:
            return index, str(fields.get("jti", ""))
    raise TokenNotInLog(
        f"no token_minted record carries this token's SHA-256 ({digest}); the token was not "
        "issued by the mint that wrote this log, or its record was removed"
    )


def _p256_public_keys(key_data: bytes) -> list[ec.EllipticCurvePublicKey]:
    if key_data.lstrip().startswith(b"{"):
        try:
            document = json.loads(key_data)
        except ValueError as exc:
            raise AuditCommandError(f"key file is neither PEM nor valid JSON: {exc}") from exc
        jwks = document.get("keys", [document]) if isinstance(document, dict) else []
        return [key for key in (_p256_from_jwk(jwk) for jwk in jwks) if key is not None]
    try:
        key = serialization.load_pem_public_key(key_data)
    except ValueError as exc:
        raise AuditCommandError("key file is not a PEM public key or a JWKS document") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AuditCommandError("key file contains a public key that is not on P-256")
    return [key]


def _p256_from_jwk(jwk: Any) -> ec.EllipticCurvePublicKey | None:
    if not isinstance(jwk, dict) or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        return None
    try:
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(b64url_decode(jwk["x"]), "big"),
            int.from_bytes(b64url_decode(jwk["y"]), "big"),
            ec.SECP256R1(),
        )
        return numbers.public_key()
    except (KeyError, TypeError, ValueError):
        return None


def _read(path: str, role: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AuditCommandError(f"cannot read {role} {path}: {exc.strerror}") from exc


def _read_token(token_file: str | None) -> str:
    if token_file in (None, "-"):
        text = sys.stdin.read()
    else:
        text = _read(token_file, "token file").decode("utf-8", errors="replace")
    token = text.strip()
    if not token:
        raise AuditCommandError("no token given; pass --token-file FILE or the token on stdin")
    return token


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain of a log and, with ``--checkpoint``, its consistency with it."""
    try:
        scanned = scan(_read(args.path, "audit log"))
        result = scanned.result
        if args.checkpoint is not None:
            if args.key is None:
                raise AuditCommandError("--checkpoint needs --key, the mint's receipt key")
            checkpoint_text = _read(args.checkpoint, "checkpoint")
            verifier = load_checkpoint_verifier(_read(args.key, "key file"), checkpoint_text)
            checkpoint = verify_checkpoint(checkpoint_text, verifier)
            result = check_against_checkpoint(scanned, checkpoint)
    except (AuditCommandError, TransparencyError) as exc:
        print(f"ztmint: {exc}", file=sys.stderr)
        return 1

    if result.ok:
        root = scanned.tree.root().hex()
        print(f"OK: {result.count} records, head {result.head}, root {root}")
        if args.checkpoint is None:
            # The chain alone cannot show that records were cut from the end.
            print("records removed from the end are detected only with --checkpoint and --key")
        return 0
    where = "" if result.broken_index is None else f" at record {result.broken_index}"
    print(f"BROKEN{where}: {result.problem}: {result.detail}")
    print(f"{result.count} records verified before it")
    return 1


def run_prove(args: argparse.Namespace) -> int:
    """Check offline that a token's record is in the tree of a signed checkpoint."""
    try:
        token = _read_token(args.token_file)
        scanned = scan(_read(args.log, "audit log"))
        inclusion = prove_token(
            scanned, token, _read(args.checkpoint, "checkpoint"), _read(args.key, "key file")
        )
    except (AuditCommandError, TransparencyError) as exc:
        print(f"ztmint: {exc}", file=sys.stderr)
        return 1
    checkpoint = inclusion.checkpoint
    print(
        f"OK: token jti {inclusion.jti} is record {inclusion.index}, included in the tree "
        f"of size {checkpoint.size} signed for {checkpoint.origin}"
    )
    return 0


def add_audit_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``audit verify`` and ``audit prove`` to the ``ztmint`` subcommands."""
    audit_parser = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit_parser.add_subparsers(dest="audit_command", required=True)

    verify = audit_commands.add_parser("verify", help="verify an audit log")
    verify.add_argument("path", help="the audit log file (audit.jsonl)")
    verify.add_argument(
        "--checkpoint",
        help="a signed checkpoint saved earlier, to detect removed or rewritten records",
    )
    verify.add_argument("--key", help="the receipt key that signs checkpoints: PEM or JWKS file")
    verify.set_defaults(handler=run_verify)

    # No abbreviations, so that a mistyped --token never takes a token on the command line.
    prove = audit_commands.add_parser(
        "prove", help="prove that a token is in the audit log", allow_abbrev=False
    )
    prove.add_argument(
        "--token-file",
        help="file holding the token; default stdin (never pass a token as an argument)",
    )
    prove.add_argument("--log", required=True, help="the audit log file (audit.jsonl)")
    prove.add_argument("--checkpoint", required=True, help="a signed checkpoint file")
    prove.add_argument(
        "--key", required=True, help="the receipt key that signs checkpoints: PEM or JWKS file"
    )
    prove.set_defaults(handler=run_prove)
