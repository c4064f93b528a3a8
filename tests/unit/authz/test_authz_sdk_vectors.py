"""The shared SDK vectors (``sdk/vectors/tokens.json``) through the Python verifier.

The Go and Node SDKs run the same file, so a case that passes here and fails there (or the
reverse) shows that two verifiers disagree about a token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from authz.errors import AuthzError
from authz.keys import KeySetError, key_set_from_jwks
from authz.verify import verify_receipt, verify_token

VECTOR_FILE = Path(__file__).resolve().parents[3] / "sdk" / "vectors" / "tokens.json"

if not VECTOR_FILE.exists():
    pytest.skip(f"{VECTOR_FILE} is not in this checkout", allow_module_level=True)
VECTORS: dict[str, Any] = json.loads(VECTOR_FILE.read_text())
PARAMS = VECTORS["params"]
KEYS = key_set_from_jwks(VECTORS["jwks"])


def _cases(kind: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in VECTORS[kind]]


def _expected(case: dict[str, Any]) -> str:
    expect = case["expect"]
    return "ok" if expect["result"] == "ok" else expect["reason"]


def _verify(case: dict[str, Any], token: str) -> Any:
    now = case.get("now", PARAMS["now"])
    return verify_token(
        token, KEYS, now, PARAMS["audience"], PARAMS["issuer"], PARAMS["max_ttl"], PARAMS["leeway"]
    )


@pytest.mark.parametrize("case", _cases("token_cases"))
def test_verify_token_matches_sdk_vector(case: dict[str, Any]) -> None:
    try:
        verified = _verify(case, case["token"])
        outcome = "ok"
    except AuthzError as exc:
        outcome = exc.reason.value

    assert outcome == _expected(case)
    if outcome == "ok":
        assert verified.sub == case["expect"]["sub"]
        assert " ".join(verified.scopes) == case["expect"]["scope"]
        assert verified.jti == case["expect"]["jti"]


@pytest.mark.parametrize("case", _cases("receipt_cases"))
def test_verify_receipt_matches_sdk_vector(case: dict[str, Any]) -> None:
    token = _verify(case, case["token"])
    try:
        receipt = verify_receipt(case["receipt"], token, KEYS, case.get("now", PARAMS["now"]))
        outcome = "ok"
    except AuthzError as exc:
        outcome = exc.reason.value

    assert outcome == _expected(case)
    if outcome == "ok":
        assert receipt.token_jti == case["expect"]["token_jti"]


@pytest.mark.parametrize("case", _cases("key_cases"))
def test_key_set_from_jwks_matches_sdk_vector(case: dict[str, Any]) -> None:
    try:
        key_set_from_jwks(case["jwks"])
        outcome = "ok"
    except KeySetError:
        outcome = "error"

    assert outcome == case["expect"]["result"]
