"""Project Wycheproof vectors run through the verifier's own signature functions.

``verify_ed25519_strict`` and ``verify_es256_raw`` are the functions ``authz.verify`` calls, so
these vectors test the exact checks that tokens and receipts go through. Neither file uses
the "acceptable" result. The tests fail on one, so a future vector file forces a documented
choice instead of a silent one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from authz.errors import AuthzError
from authz.signatures import verify_ed25519_strict, verify_es256_raw

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "wycheproof"


def _cases(file_name: str) -> list[Any]:
    document = json.loads((VECTORS / file_name).read_text())
    cases = []
    for group in document["testGroups"]:
        for test in group["tests"]:
            cases.append(pytest.param(group["publicKey"], test, id=f"tc{test['tcId']}"))
    return cases


def _verifies(check: Any) -> bool:
    try:
        check()
    except AuthzError:
        return False
    return True


@pytest.mark.parametrize(("public_key", "test"), _cases("ed25519_test.json"))
def test_ed25519_strict_matches_wycheproof(
    public_key: dict[str, str], test: dict[str, Any]
) -> None:
    assert test["result"] in {"valid", "invalid"}, "acceptable needs a documented choice"
    key = bytes.fromhex(public_key["pk"])

    accepted = _verifies(
        lambda: verify_ed25519_strict(key, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
    )

    assert accepted == (test["result"] == "valid"), test["comment"]


@pytest.mark.parametrize(("public_key", "test"), _cases("ecdsa_secp256r1_sha256_p1363_test.json"))
def test_es256_raw_matches_wycheproof(public_key: dict[str, str], test: dict[str, Any]) -> None:
    assert test["result"] in {"valid", "invalid"}, "acceptable needs a documented choice"
    key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), bytes.fromhex(public_key["uncompressed"])
    )

    accepted = _verifies(
        lambda: verify_es256_raw(key, bytes.fromhex(test["msg"]), bytes.fromhex(test["sig"]))
    )

    assert accepted == (test["result"] == "valid"), test["comment"]
