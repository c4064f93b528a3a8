#!/usr/bin/env python3
"""Measure how long ``AuditLog`` takes to open (verify and rebuild its tree) a large log.

Usage: ``.venv/bin/python scripts/audit-rebuild-bench.py [RECORDS]`` (default 100000), run
from the repository root. The log is written without fsync into a temporary folder, with
records shaped like ``token_minted`` records, then opened three times. The script prints
the file size and the best and worst open times in seconds.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from mint.audit import GENESIS_HASH, AuditLog, canonical_json, record_hash

RUNS = 3


def write_log(path: Path, count: int) -> None:
    """Write ``count`` chained records shaped like ``token_minted`` records to ``path``."""
    prev = GENESIS_HASH
    with path.open("wb") as handle:
        for index in range(count):
            record = {
                "index": index,
                "time": 1_767_225_600 + index,
                "event": "token_minted",
                "fields": {
                    "aud": "payments",
                    "scopes": ["payments:read"],
                    "ttl": 900,
                    "sub": f"user-{index % 500}",
                    "jti": f"{index:022d}",
                    "token_sha256": f"{index:043d}",
                    "signers": [1, 2],
                    "amr": ["hwk", "user"],
                },
                "prev": prev,
            }
            record["hash"] = record_hash(record)
            prev = record["hash"]
            handle.write(canonical_json(record) + b"\n")


def main() -> int:
    """Write the log, open it ``RUNS`` times and print the timings."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit.jsonl"
        write_log(path, count)
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            log = AuditLog(path, time.time)
            timings.append(time.perf_counter() - started)
        assert log.size == count
        megabytes = path.stat().st_size / 1e6
    print(f"records={count} file_mb={megabytes:.1f} open_s_best={min(timings):.2f}", end=" ")
    print(f"open_s_worst={max(timings):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
