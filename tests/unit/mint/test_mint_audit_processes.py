"""Concurrent appends from several worker processes keep one linear audit log."""

from __future__ import annotations

import json
import multiprocessing
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from mint.audit import AuditLog, checkpoint_signer, verify
from mint.audit_cli import load_checkpoint_verifier
from mint.kms import LocalKms
from mint.transparency.checkpoint import verify_checkpoint
from mint.transparency.merkle import leaf_hash, verify_inclusion

WORKERS = 4
APPENDS_PER_WORKER = 50
ORIGIN = "mint.test/audit"


def _append_many(state_dir: str, worker: int, start: Event) -> None:
    directory = Path(state_dir)
    kms = LocalKms(directory / "kms-p256.pem")
    log = AuditLog(directory / "audit.jsonl", time.time, note_signer=checkpoint_signer(kms, ORIGIN))
    start.wait()
    for number in range(APPENDS_PER_WORKER):
        evidence = log.append_with_proof("token_minted", {"worker": worker, "n": number})
        # Each worker checks its own evidence, so a proof built from a stale tree fails here.
        assert evidence.checkpoint is not None
        jwks = json.dumps({"keys": [kms.public_jwk()]}).encode()
        checkpoint = verify_checkpoint(
            evidence.checkpoint, load_checkpoint_verifier(jwks, evidence.checkpoint.encode())
        )
        verify_inclusion(
            leaf_hash(evidence.record),
            evidence.index,
            checkpoint.size,
            evidence.proof,
            checkpoint.root,
        )


def test_append_from_four_processes_keeps_one_chain(tmp_path: Path) -> None:
    LocalKms(tmp_path / "kms-p256.pem")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_append_many, args=(str(tmp_path), worker, start))
        for worker in range(WORKERS)
    ]
    for process in workers:
        process.start()
    start.set()
    for process in workers:
        process.join(timeout=120)

    assert [process.exitcode for process in workers] == [0] * WORKERS
    result = verify(tmp_path / "audit.jsonl")
    assert result.ok
    assert result.count == WORKERS * APPENDS_PER_WORKER
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [record["index"] for record in records] == list(range(WORKERS * APPENDS_PER_WORKER))
    pairs = {(record["fields"]["worker"], record["fields"]["n"]) for record in records}
    assert len(pairs) == WORKERS * APPENDS_PER_WORKER
    latest = (tmp_path / "checkpoints" / "latest.txt").read_text()
    assert latest.split("\n")[1] == str(WORKERS * APPENDS_PER_WORKER)
