"""``ztmint demo``: the whole path once, on one machine, with every part real.

It starts the local stack (Ray signers, OPA, the authz gRPC service, the mint API), enrolls a
software authenticator, mints a token, sends Envoy-shaped gRPC Check requests for one allowed
call and for each kind of refusal, verifies the audit log, then shows that an edited copy of
the log is caught. Tokens and receipts are never printed: only verdicts and reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc
from fido2.webauthn import AuthenticationResponse

from actors.assertion_check import (
    CHALLENGE_SALT_SIZE,
    AssertionEvidence,
    derive_challenge,
    request_digest,
)
from authz.formats import TokenClaims, assemble_compact
from authz.jose import b64url_encode
from authz.jwk import okp_ed25519_jwk, thumbprint
from mint import audit
from mint.client import enroll, mint_token
from mint.invitations import create_invitation
from mint.kms import LocalKms, issue_receipt
from mint.settings import Settings
from mint.softkey import SoftwareAuthenticator
from mint.stack import Stack, StackConfig
from mint.store import SqliteStore

DEMO_USER = "bob@example.com"
DEMO_AUDIENCE = "orders"
CHECK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class CheckOutcome:
    """The authz service's decision on one Check request."""

    allowed: bool
    http_status: int
    reason: str


def check(
    stub: external_auth_pb2_grpc.AuthorizationStub, method: str, path: str, headers: dict[str, str]
) -> CheckOutcome:
    """Send one Check request shaped as Envoy's ext_authz filter sends it."""
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        id=str(uuid.uuid4()), method=method, path=path, host="orders.internal",
        scheme="https", protocol="HTTP/2", headers=headers,
    )  # fmt: skip
    request = external_auth_pb2.CheckRequest(
        attributes=attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http)
        )
    )
    response = stub.Check(request, timeout=CHECK_TIMEOUT_SECONDS)
    if response.status.code == grpc.StatusCode.OK.value[0]:
        return CheckOutcome(allowed=True, http_status=200, reason="")
    denied = response.denied_response
    try:
        reason = json.loads(denied.body).get("error", "")
    except ValueError:
        reason = ""
    return CheckOutcome(allowed=False, http_status=denied.status.code, reason=reason)


def _bearer(token: str, receipt: str | None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {token}"}
    if receipt is not None:
        headers["x-kms-sig"] = receipt
    return headers


def _flip_one_byte(token: str) -> str:
    """Change one character of the claims segment, keeping it valid base64url."""
    header, claims, signature = token.split(".")
    middle = len(claims) // 2
    replacement = "A" if claims[middle] != "A" else "B"
    return f"{header}.{claims[:middle]}{replacement}{claims[middle + 1 :]}.{signature}"


def _expired_token(
    stack: Stack, coordinator: object, authenticator: SoftwareAuthenticator
) -> tuple[str, str]:
    """Build a token whose ``exp`` has passed, signed by the real signer mesh and local KMS.

    The mint never issues back-dated tokens, so the demo, as the Ray driver it is, asks the
    coordinator directly. The signers still require an assertion of the engineer's key over
    exactly these claims, so the demo has the authenticator approve them first, and it
    co-signs with the same local KMS key the mint uses.
    """
    from mint.ray_signer import RayTokenSigner

    signer = RayTokenSigner(coordinator)
    kid = thumbprint(okp_ed25519_jwk(signer.group_public_key()))
    issued_at = int(time.time()) - 2 * 3600
    claims = TokenClaims(
        iss=stack.endpoints.mint_url, sub=DEMO_USER, aud=DEMO_AUDIENCE,
        scopes=("orders:read",), iat=issued_at, ttl=15 * 60, jti=str(uuid.uuid4()),
    )  # fmt: skip
    salt = os.urandom(CHALLENGE_SALT_SIZE)
    digest = request_digest(claims.sub, claims.scopes, claims.aud, claims.ttl)
    store = SqliteStore(_mint_settings(stack).database_path)
    credential = store.credentials_for_user(DEMO_USER)[0]
    options = {
        "challenge": b64url_encode(derive_challenge(salt, digest)),
        "rpId": "localhost",
        "allowCredentials": [{"type": "public-key", "id": b64url_encode(credential.credential_id)}],
    }
    response = AuthenticationResponse.from_dict(authenticator.authenticate(options))
    assertion = AssertionEvidence(
        credential_public_key=credential.public_key_cose,
        authenticator_data=bytes(response.response.authenticator_data),
        client_data_json=bytes(response.response.client_data),
        signature=bytes(response.response.signature),
        challenge_salt=salt,
    )
    signed = signer.sign_token(claims, kid, assertion)
    token = assemble_compact(signed.signing_input, signed.signature)
    kms = LocalKms(_mint_settings(stack).kms_key_path)
    receipt = issue_receipt(kms, token, stack.endpoints.mint_url, issued_at, claims.jti)
    return token, receipt


def _mint_settings(stack: Stack) -> Settings:
    return Settings(state_dir=stack.config.state_dir / "mint")


def _edited_copy(log_path: Path, destination: Path, index: int) -> None:
    lines = log_path.read_text().splitlines(keepends=True)
    record = json.loads(lines[index])
    record["fields"] = {**record.get("fields", {}), "sub": "mallory@example.com"}
    lines[index] = json.dumps(record, separators=(",", ":")) + "\n"
    destination.write_text("".join(lines))


def run(args: argparse.Namespace) -> int:
    """Run the demo and return 0 when every step gave the expected result."""
    state_dir = Path(args.state).resolve()
    if state_dir.exists():
        shutil.rmtree(state_dir)
    config = StackConfig(
        state_dir=state_dir, mint_port=0, authz_grpc_port=0, authz_http_port=0, opa_port=0,
        dashboard_port=0, include_dashboard=False, audience=DEMO_AUDIENCE,
    )  # fmt: skip
    stack = Stack(config, progress=lambda message: print(f"  [stack] {message}", flush=True))
    failures: list[str] = []

    def expect(title: str, outcome: CheckOutcome, allowed: bool, reason: str = "") -> None:
        verdict = "allowed" if outcome.allowed else f"denied {outcome.http_status} {outcome.reason}"
        good = outcome.allowed == allowed and (allowed or outcome.reason == reason)
        print(f"  {'ok ' if good else 'BAD'} {title:<46} -> {verdict}", flush=True)
        if not good:
            failures.append(title)

    print("1. starting the local stack", flush=True)
    endpoints = stack.start()
    try:
        from actors.mesh import get_coordinator

        coordinator = get_coordinator()
        print("2. enrolling a software authenticator (development stand-in for a YubiKey)")
        authenticator = SoftwareAuthenticator(state_dir / "softkey.json", origin=endpoints.mint_url)
        # The same call as `ztmint users invite`, on the demo mint's database.
        store = SqliteStore(_mint_settings(stack).database_path)
        code = create_invitation(store, DEMO_USER, 3600, int(time.time()), os.urandom)
        print(f"   operator: ztmint users invite --user {DEMO_USER} (valid for 1 h)")
        enroll(endpoints.mint_url, DEMO_USER, authenticator, code)
        print(f"   enrolled {DEMO_USER}")

        print("3. minting a 15-minute token for scope orders:read, audience orders")
        minted = mint_token(
            endpoints.mint_url, DEMO_USER, authenticator, ["orders:read"], DEMO_AUDIENCE, 900
        )
        token, receipt = minted["token"], minted["receipt"]
        print(f"   minted jti {minted['jti']} (audit index {minted['audit_index']})")
        other = mint_token(
            endpoints.mint_url, DEMO_USER, authenticator, ["orders:read"], DEMO_AUDIENCE, 600
        )

        print(f"4. Envoy-shaped gRPC Check requests to the authz service at {endpoints.authz_grpc}")
        with grpc.insecure_channel(endpoints.authz_grpc) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            expect("GET /orders/42 with token and receipt",
                   check(stub, "GET", "/orders/42", _bearer(token, receipt)), True)  # fmt: skip
            expect("no receipt",
                   check(stub, "GET", "/orders/42", _bearer(token, None)),
                   False, "receipt_missing")  # fmt: skip
            expect("a receipt of another token",
                   check(stub, "GET", "/orders/42", _bearer(token, other["receipt"])),
                   False, "receipt_mismatch")  # fmt: skip
            expired_token, expired_receipt = _expired_token(stack, coordinator, authenticator)
            expect("an expired token",
                   check(stub, "GET", "/orders/42", _bearer(expired_token, expired_receipt)),
                   False, "token_expired")  # fmt: skip
            expect("scope orders:read on POST /orders",
                   check(stub, "POST", "/orders", _bearer(token, receipt)),
                   False, "scope_denied")  # fmt: skip
            expect("scope orders:read on GET /inventory/7",
                   check(stub, "GET", "/inventory/7", _bearer(token, receipt)),
                   False, "scope_denied")  # fmt: skip
            expect("a token with one byte changed",
                   check(stub, "GET", "/orders/42", _bearer(_flip_one_byte(token), receipt)),
                   False, "token_signature_invalid")  # fmt: skip

        log_path = _mint_settings(stack).audit_path
        print(f"5. ztmint audit verify {log_path}")
        intact = audit.verify(log_path)
        print(f"   {'OK' if intact.ok else 'BROKEN'}: {intact.count} records")
        if not intact.ok:
            failures.append("audit log intact")
        edited = state_dir / "audit-edited.jsonl"
        _edited_copy(log_path, edited, 1)
        print(f"6. ztmint audit verify on a copy with record 1 edited ({edited.name})")
        broken = audit.verify(edited)
        if broken.ok:
            failures.append("edited audit log detected")
            print("   BAD: the edit was not detected")
        else:
            print(f"   BROKEN at record {broken.broken_index}: {broken.problem}")
    finally:
        print("7. stopping the stack", flush=True)
        stack.stop()

    if failures:
        print(f"demo FAILED: {', '.join(failures)}")
        return 1
    print("demo finished: every step gave the expected result")
    return 0
