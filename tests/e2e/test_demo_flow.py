"""The demo flow end to end: `ztmint demo` in its own process, every part real.

The demo starts Ray with the signer mesh, OPA, the authz gRPC service and the mint API, then
enrolls, mints and sends Envoy-shaped Check requests. This test runs it as an engineer would
and checks each verdict line, so a regression in any part shows up as the line that changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

EXPECTED_LINES = [
    "ok  GET /orders/42 with token and receipt",
    "ok  no receipt",
    "ok  a receipt of another token",
    "ok  an expired token",
    "ok  scope orders:read on POST /orders",
    "ok  scope orders:read on GET /inventory/7",
    "ok  a token with one byte changed",
]


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    state = tmp_path_factory.mktemp("demo")
    completed = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-m", "mint.cli", "demo", "--state", str(state)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return completed.returncode, completed.stdout + completed.stderr


def test_demo_exits_zero(demo_output: tuple[int, str]) -> None:
    returncode, output = demo_output
    assert returncode == 0, output


@pytest.mark.parametrize("line", EXPECTED_LINES)
def test_demo_check_verdict(demo_output: tuple[int, str], line: str) -> None:
    _, output = demo_output
    assert line in output, output


def test_demo_audit_log_intact_then_broken(demo_output: tuple[int, str]) -> None:
    _, output = demo_output
    assert "   OK: " in output, output
    assert "BROKEN at record 1:" in output, output


def test_demo_prints_no_token(demo_output: tuple[int, str]) -> None:
    _, output = demo_output
    # A compact JWS starts with the base64url of '{"alg":'; none may reach the terminal.
    assert "eyJhbGciOi" not in output
