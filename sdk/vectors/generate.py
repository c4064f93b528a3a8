"""Generate sdk/vectors/tokens.json, the vectors that the Python, Go and Node verifiers share.

Every key comes from a fixed seed and every ECDSA signature is deterministic (RFC 6979), so
running this twice gives the same bytes. The committed file is the contract: a test checks that
regenerating it changes nothing.

Usage (from the repository root):
    .venv/bin/python sdk/vectors/generate.py [--output PATH]

The cases are built in token_cases.py and receipt_cases.py from the keys and helpers in
fixtures.py. crafting.py makes the signatures that a normal signing library does not.

Each case is a single fault on top of a valid token or receipt. Its expected reason then does
not depend on the order of a verifier's checks. README.md in this folder lists the exceptions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The case modules sit beside this script, and authz is at the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[2]))

from fixtures import (  # noqa: E402
    AUDIENCE,
    GROUP_JWK,
    GROUP_KID,
    ISSUER,
    LEEWAY,
    MAX_TTL,
    NOW,
    RECEIPT_JWK,
    RECEIPT_KID,
)
from receipt_cases import key_cases, receipt_cases  # noqa: E402
from token_cases import token_cases  # noqa: E402

from authz.jwk import PublishedKey, jwks_document  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "tokens.json"


def build_document() -> dict:
    """Assemble the whole vector document."""
    jwks = jwks_document(
        [PublishedKey(GROUP_KID, GROUP_JWK)], [PublishedKey(RECEIPT_KID, RECEIPT_JWK)]
    )
    return {
        "format": "ztmint-sdk-vectors/1",
        "generator": "sdk/vectors/generate.py",
        "jwks": jwks,
        "params": {
            "now": NOW,
            "audience": AUDIENCE,
            "issuer": ISSUER,
            "max_ttl": MAX_TTL,
            "leeway": LEEWAY,
        },
        "token_cases": token_cases(),
        "receipt_cases": receipt_cases(),
        "key_cases": key_cases(),
    }


def render(document: dict) -> str:
    """Serialise the document the same way every time."""
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


def main() -> None:
    """Write the vectors to --output, tokens.json beside this script by default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write")
    arguments = parser.parse_args()
    arguments.output.write_text(render(build_document()), encoding="utf-8")


if __name__ == "__main__":
    main()
