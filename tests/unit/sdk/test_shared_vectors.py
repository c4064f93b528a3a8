"""Run the shared token and receipt vectors through the Python, Go and Node verifiers.

sdk/vectors/tokens.json is the contract between the three verifiers: every case names the
result that each of them must return. This module checks the Python verifier case by case,
checks that the committed file is what sdk/vectors/generate.py produces, and runs the Go and
Node test suites, which read the same file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from authz.errors import AuthzError, Reason

REPO_ROOT = Path(__file__).resolve().parents[3]
SDK_DIR = REPO_ROOT / "sdk"
VECTORS_PATH = SDK_DIR / "vectors" / "tokens.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
PARAMS = VECTORS["params"]
TOOLCHAIN_TIMEOUT_SECONDS = 300

verify = pytest.importorskip(
    "authz.verify", reason="authz.verify is not written yet; the Python verifier has no vectors run"
)
keys_module = pytest.importorskip("authz.keys", reason="authz.keys is not written yet")


def _python_key_set() -> Any:
    return keys_module.key_set_from_jwks(VECTORS["jwks"])


def _case_params(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


def _verify_token(token: str) -> Any:
    return verify.verify_token(
        token,
        _python_key_set(),
        now=PARAMS["now"],
        audience=PARAMS["audience"],
        issuer=PARAMS["issuer"],
        max_ttl=PARAMS["max_ttl"],
        leeway=PARAMS["leeway"],
    )


@pytest.mark.parametrize("case", _case_params(VECTORS["token_cases"]))
def test_verify_token_matches_shared_vector(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if expect["result"] == "error":
        with pytest.raises(AuthzError) as raised:
            _verify_token(case["token"])
        assert raised.value.reason == Reason(expect["reason"]), raised.value.detail
        return
    verified = _verify_token(case["token"])
    assert verified.sub == expect["sub"]
    assert " ".join(verified.scopes) == expect["scope"]
    assert verified.jti == expect["jti"]


@pytest.mark.parametrize("case", _case_params(VECTORS["receipt_cases"]))
def test_verify_receipt_matches_shared_vector(case: dict[str, Any]) -> None:
    expect = case["expect"]
    token = _verify_token(case["token"])
    if expect["result"] == "error":
        with pytest.raises(AuthzError) as raised:
            verify.verify_receipt(case["receipt"], token, _python_key_set(), now=PARAMS["now"])
        assert raised.value.reason == Reason(expect["reason"]), raised.value.detail
        return
    verified = verify.verify_receipt(case["receipt"], token, _python_key_set(), now=PARAMS["now"])
    assert verified.token_jti == expect["token_jti"]


@pytest.mark.parametrize("case", _case_params(VECTORS["key_cases"]))
def test_key_set_from_jwks_rejects_shared_vector(case: dict[str, Any]) -> None:
    document = keys_module.parse_jwks(json.dumps(case["jwks"]).encode("utf-8"))
    with pytest.raises(keys_module.KeySetError):
        keys_module.key_set_from_jwks(document)


def test_vectors_cover_every_verifier_reason() -> None:
    token_reasons = {case["expect"].get("reason") for case in VECTORS["token_cases"]}
    receipt_reasons = {case["expect"].get("reason") for case in VECTORS["receipt_cases"]}
    for reason in (
        Reason.TOKEN_MISSING,
        Reason.TOKEN_MALFORMED,
        Reason.TOKEN_HEADER_INVALID,
        Reason.TOKEN_ALG_UNSUPPORTED,
        Reason.TOKEN_KID_UNKNOWN,
        Reason.TOKEN_SIGNATURE_INVALID,
        Reason.TOKEN_CLAIMS_INVALID,
        Reason.TOKEN_EXPIRED,
        Reason.TOKEN_NOT_YET_VALID,
        Reason.TOKEN_AUDIENCE_MISMATCH,
        Reason.TOKEN_ISSUER_MISMATCH,
        Reason.TOKEN_TTL_EXCEEDED,
    ):
        assert reason.value in token_reasons, reason
    for reason in (
        Reason.RECEIPT_MISSING,
        Reason.RECEIPT_MALFORMED,
        Reason.RECEIPT_HEADER_INVALID,
        Reason.RECEIPT_ALG_UNSUPPORTED,
        Reason.RECEIPT_KID_UNKNOWN,
        Reason.RECEIPT_SIGNATURE_INVALID,
        Reason.RECEIPT_MISMATCH,
    ):
        assert reason.value in receipt_reasons, reason


def test_generate_reproduces_committed_vectors(tmp_path: Path) -> None:
    if importlib.util.find_spec("nacl") is None:
        pytest.skip("PyNaCl is not installed; the generator needs it")
    output = tmp_path / "tokens.json"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, str(SDK_DIR / "vectors" / "generate.py"), "--output", str(output)],
        check=True,
        env=environment,
        timeout=TOOLCHAIN_TIMEOUT_SECONDS,
    )
    assert output.read_bytes() == VECTORS_PATH.read_bytes()


def _run_toolchain(command: list[str], directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        command,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=TOOLCHAIN_TIMEOUT_SECONDS,
        check=False,
    )


def test_go_sdk_passes_shared_vectors() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("the go toolchain is not on PATH")
    result = _run_toolchain([go, "test", "-count=1", "./..."], SDK_DIR / "go")
    assert result.returncode == 0, result.stdout + result.stderr


def test_node_sdk_passes_shared_vectors() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH")
    result = _run_toolchain([node, "--test", "test/"], SDK_DIR / "node")
    assert result.returncode == 0, result.stdout + result.stderr
