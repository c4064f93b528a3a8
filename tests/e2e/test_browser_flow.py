"""The browser flow end to end: the mint's page in headless Chromium with a virtual authenticator.

The mint runs under uvicorn on a loopback socket and is reached as ``http://localhost:PORT``,
because WebAuthn rejects IP addresses as rp ids. Chromium is driven over the DevTools protocol
(CDP) with its WebAuthn domain providing a virtual CTAP2 authenticator. The test enrolls through
the page, then runs ``mint.browser.receive_token`` (the code behind ``ztmint token --browser``)
with a launcher that navigates Chromium and presses the page's mint button, and verifies the
token and receipt that reached the CLI's callback with the project's verifier. A screenshot
of the finished page is saved to ``tests/e2e/artifacts/browser-flow.png``.

The signer is the in-process test fixture of the mint unit tests, not the threshold mesh.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect

from authz.keys import key_set_from_jwks
from authz.verify import verify_receipt, verify_token
from mint.app import create_app, service_from_settings
from mint.browser import receive_token
from mint.settings import Settings
from tests.unit.mint.mint_testkit import InProcessTokenSigner, invite

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# The attestation root of Chromium's virtual authenticator, see tests/vectors/browser/README.md.
CHROMIUM_ATTESTATION_ROOT = (
    Path(__file__).resolve().parents[1] / "vectors/browser/chromium-virtual-authenticator-batch.pem"
)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
CDP_TIMEOUT_SECONDS = 60.0
# Callback URLs and whether the page's own check lets it send a token there.
PAGE_CALLBACK_CASES = [
    ("http://127.0.0.1:5000/cb", True),
    ("http://localhost:5000/cb", True),
    ("http://evil.example:5000/cb", False),
    ("https://127.0.0.1:5000/cb", False),
    ("http://127.0.0.1/cb", False),
    ("http://user@127.0.0.1:5000/cb", False),
    ("http://127.0.0.1:5000/cb?next=1", False),
    ("http://127.0.0.1:5000/cb#fragment", False),
]
USER = "alice"
SCOPES = ("orders:read", "orders:write")
AUDIENCE = "orders"
TTL_SECONDS = 900

# Resolves once the page's status element reports done or error, and returns its text.
# A MutationObserver wakes on the change, so the test waits for the page, not for a timer.
WAIT_FOR_RESULT_JS = """
new Promise((resolve) => {
  const status = document.getElementById("status");
  const settled = () => {
    if (status.dataset.state === "done" || status.dataset.state === "error") {
      resolve({ state: status.dataset.state, text: status.textContent });
      return true;
    }
    return false;
  };
  if (!settled()) {
    new MutationObserver(settled).observe(status, {
      attributes: true, childList: true, characterData: true, subtree: true,
    });
  }
})
"""


class CdpError(Exception):
    """A DevTools protocol command failed or an expected event did not arrive."""


class CdpSession:
    """A minimal synchronous CDP client attached to one page target (flat session mode)."""

    def __init__(self, websocket: ClientConnection) -> None:
        self._ws = websocket
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self.session_id: str | None = None

    def attach_new_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser_level=True)
        attached = self.call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            browser_level=True,
        )
        self.session_id = attached["sessionId"]

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, browser_level: bool = False
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if not browser_level:
            message["sessionId"] = self.session_id
        self._ws.send(json.dumps(message))
        while True:
            received = self._receive()
            if received.get("id") != message_id:
                self._events.append(received)
                continue
            if "error" in received:
                raise CdpError(f"{method} failed: {received['error']}")
            return received.get("result", {})

    def wait_event(self, method: str) -> dict[str, Any]:
        for index, event in enumerate(self._events):
            if event.get("method") == method:
                return self._events.pop(index)
        while True:
            received = self._receive()
            if received.get("method") == method:
                return received
            self._events.append(received)

    def navigate(self, url: str) -> None:
        self._events.clear()
        result = self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigation to {url} failed: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": await_promise,
                "returnByValue": True,
                "userGesture": True,
            },
        )
        if "exceptionDetails" in result:
            raise CdpError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _receive(self) -> dict[str, Any]:
        try:
            return json.loads(self._ws.recv(timeout=CDP_TIMEOUT_SECONDS))
        except TimeoutError:
            raise CdpError(f"no DevTools message within {CDP_TIMEOUT_SECONDS:.0f} s") from None


@dataclass
class LocalhostMint:
    """A running mint reached at ``http://localhost:PORT``."""

    url: str
    settings: Settings


@pytest.fixture
def localhost_mint(tmp_path: Path) -> Iterator[LocalhostMint]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    settings = Settings(
        rp_id="localhost",
        origin=origin,
        issuer=origin,
        state_dir=tmp_path / "state",
        allow_self_attestation=False,
        attestation_roots=CHROMIUM_ATTESTATION_ROOT,
        port=port,
    )
    service = service_from_settings(settings, InProcessTokenSigner(), random_bytes=os.urandom)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service, settings), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield LocalhostMint(origin, settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[CdpSession]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("chromium is not installed; install it with: apt-get install -y chromium")
    process = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [executable, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with connect(_devtools_url(process), max_size=None) as websocket:
            session = CdpSession(websocket)
            session.attach_new_page()
            session.call("Page.enable")
            session.call("WebAuthn.enable", {"enableUI": False})
            session.call(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "usb",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            yield session
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _devtools_url(process: subprocess.Popen[str]) -> str:
    # Chromium prints "DevTools listening on ws://..." on stderr once the port is open.
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        if line.startswith("DevTools listening on "):
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return line.removeprefix("DevTools listening on ").strip()
        seen.append(line)
    raise CdpError("chromium exited before opening DevTools:\n" + "".join(seen[-20:]))


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _save_screenshot(session: CdpSession) -> Path:
    size = session.call("Page.getLayoutMetrics")["cssContentSize"]
    page = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = session.call(
        "Page.captureScreenshot", {"format": "png", "clip": page, "captureBeyondViewport": True}
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "browser-flow.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def test_browser_flow_enrolls_and_delivers_verifiable_token(
    localhost_mint: LocalhostMint, chromium: CdpSession
) -> None:
    # Enroll through the page.
    invitation = invite(localhost_mint.settings.database_path, USER)
    chromium.navigate(f"{localhost_mint.url}/ui/?user={USER}")
    chromium.evaluate(f"document.getElementById('enroll-invitation').value = '{invitation}'")
    chromium.evaluate("document.getElementById('enroll-button').click()")
    enrolled = chromium.evaluate(WAIT_FOR_RESULT_JS, await_promise=True)
    assert enrolled["state"] == "done", enrolled["text"]
    credential_id = chromium.evaluate("document.getElementById('result-credential-id').textContent")
    assert credential_id

    # Mint through the page, with the CLI's callback listener receiving the token.
    def launch_in_chromium(url: str) -> None:
        chromium.navigate(url)
        chromium.evaluate("document.getElementById('mint-button').click()")

    delivery = receive_token(
        localhost_mint.url,
        USER,
        SCOPES,
        AUDIENCE,
        TTL_SECONDS,
        launch=launch_in_chromium,
        timeout_seconds=CDP_TIMEOUT_SECONDS,
    )
    minted = chromium.evaluate(WAIT_FOR_RESULT_JS, await_promise=True)
    print(f"browser flow screenshot: {_save_screenshot(chromium)}")
    assert minted["state"] == "done", minted["text"]

    # The token and receipt the CLI received verify against the mint's published keys.
    jwks = httpx.get(f"{localhost_mint.url}/.well-known/jwks.json", timeout=10).json()
    keys = key_set_from_jwks(jwks)
    now = int(time.time())
    token = verify_token(delivery.token, keys, now, AUDIENCE, localhost_mint.settings.issuer)
    receipt = verify_receipt(delivery.receipt, token, keys, now)
    assert token.jti == delivery.jti
    assert token.sub == USER
    assert token.scopes == SCOPES
    assert receipt.token_jti == delivery.jti

    # The page shows the jti but never the token or receipt.
    assert delivery.jti in chromium.evaluate("document.body.innerText")
    page_html = chromium.evaluate("document.documentElement.outerHTML")
    assert delivery.token not in page_html
    assert delivery.receipt not in page_html


def test_page_script_checks_callback(localhost_mint: LocalhostMint, chromium: CdpSession) -> None:
    chromium.navigate(f"{localhost_mint.url}/ui/")
    for callback, allowed in PAGE_CALLBACK_CASES:
        expression = f"checkCallbackUrl({json.dumps(callback)}, {json.dumps('A' * 43)}) !== null"
        assert chromium.evaluate(expression) is allowed, callback


def test_page_policy_blocks_other_destinations(
    localhost_mint: LocalhostMint, chromium: CdpSession
) -> None:
    # 127.0.0.2 is loopback, so nothing leaves the machine even if the policy failed. The
    # one-second fallback only runs when no violation is reported, that is when the test fails.
    chromium.navigate(f"{localhost_mint.url}/ui/")
    blocked = chromium.evaluate(
        """
        new Promise((resolve) => {
          document.addEventListener(
            "securitypolicyviolation", (event) => resolve(event.effectiveDirective), { once: true },
          );
          fetch("http://127.0.0.2:9/cb", { method: "POST" })
            .catch(() => setTimeout(() => resolve("no violation reported"), 1000));
        })
        """,
        await_promise=True,
    )
    assert blocked == "connect-src"
