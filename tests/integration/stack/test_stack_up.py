"""`ztmint up` as an operator runs it: in its own process, stopped by a signal or by a failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 40.0

pytestmark = pytest.mark.integration


def _start_stack(state: Path) -> tuple[subprocess.Popen[str], list[str]]:
    command = [
        sys.executable, "-m", "mint.cli", "up", "--state", str(state),
        "--mint-port", "0", "--authz-port", "0", "--authz-http-port", "0",
        "--opa-port", "0", "--dashboard-port", "0",
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - fixed command
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group, so that Ctrl-C can be sent to the group as a terminal does.
        start_new_session=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl-C to stop."):
            return process, lines
    process.kill()
    raise AssertionError("ztmint up did not start:\n" + "".join(lines))


def _children(process: subprocess.Popen[str]) -> list[psutil.Process]:
    return psutil.Process(process.pid).children(recursive=True)


def _rest_of_output(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.read()


def test_up_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process, lines = _start_stack(tmp_path / "stack")
    children = _children(process)
    assert any(child.name() == "opa" for child in children), "".join(lines)

    # A terminal sends SIGINT to every process of the foreground group, children included.
    os.killpg(process.pid, signal.SIGINT)
    status = process.wait(timeout=STOP_TIMEOUT_SECONDS)
    output = "".join(lines) + _rest_of_output(process)

    assert status == 0, output
    assert "stopping ztmint..." in output
    assert "did not stop" not in output
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running: {[child.cmdline()[:3] for child in alive]}"


def test_up_stops_when_a_part_dies(tmp_path: Path) -> None:
    process, lines = _start_stack(tmp_path / "stack")
    opa = next(child for child in _children(process) if child.name() == "opa")

    opa.kill()
    status = process.wait(timeout=STOP_TIMEOUT_SECONDS)
    output = "".join(lines) + _rest_of_output(process)

    assert status == 1, output
    assert "stopping the stack because opa exited" in output
