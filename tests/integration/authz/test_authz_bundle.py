"""The signed policy bundle and OPA's decision log, with the real OPA binary.

opa/build-bundle.sh builds and signs the bundle; OPA verifies it at start with the public
key. The decision log test runs OPA with ``decision_logs.console=true`` and matches the
decision id that the authz service logs with the one OPA logs.
"""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authz.cache import DecisionCache, RevisionWatcher
from authz.decision import DecisionCore, HttpRequest
from authz.opa import OpaClient
from tests.integration.authz.conftest import (
    OPA_BINARY,
    REPO,
    OpaServer,
    OpaStartError,
    start_opa,
)
from tests.unit.authz.authz_testkit import AUDIENCE, ISSUER, NOW, Issuer

pytestmark = pytest.mark.integration

BUILD_SCRIPT = REPO / "opa" / "build-bundle.sh"
KEY_ID = "ztmint-bundle"
_REVISION_OUTPUT = re.compile(r"revision=(\S+)")
_AUTHZ_DECISION_ID = re.compile(r"decision allowed .*decision_id=(\S+)")


@dataclass
class SignedBundle:
    path: Path
    verification_key: Path
    revision: str


def _build(out_dir: Path, key_dir: Path, *revision: str) -> SignedBundle:
    if not OPA_BINARY.exists():
        pytest.skip(f"OPA binary not found at {OPA_BINARY}; build it first")
    built = subprocess.run(  # noqa: S603 - this repository's script, fixed arguments
        [str(BUILD_SCRIPT), str(out_dir), str(key_dir), *revision],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    match = _REVISION_OUTPUT.search(built.stdout)
    assert match is not None, built.stdout
    return SignedBundle(
        out_dir / "bundle.tar.gz", key_dir / "bundle-verification-key.pem", match.group(1)
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> SignedBundle:
    folder = tmp_path_factory.mktemp("bundle")
    return _build(folder / "out", folder / "keys")


def _verifying_args(bundle_path: Path, verification_key: Path) -> list[str]:
    return [
        "--bundle",
        str(bundle_path),
        "--verification-key",
        str(verification_key),
        "--verification-key-id",
        KEY_ID,
        "--signing-alg",
        "ES256",
        "--set",
        "decision_logs.console=true",
    ]


@pytest.fixture(scope="module")
def bundle_opa(bundle: SignedBundle) -> Iterator[OpaServer]:
    server = start_opa(None, _verifying_args(bundle.path, bundle.verification_key))
    yield server
    server.kill()


def _tampered_copy(bundle_path: Path, target: Path) -> Path:
    """Copy the bundle with one byte of the policy changed, keeping its signature."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(bundle_path, "r:gz") as source:
        for member in source.getmembers():
            extracted = source.extractfile(member)
            data = extracted.read() if extracted is not None else b""
            if member.name.endswith("authz.rego"):
                # One byte of a string literal: still valid Rego, but not the signed text.
                assert b'"scope_denied"' in data
                data = data.replace(b'"scope_denied"', b'"scope_deniee"', 1)
            members.append((member, data))
    with tarfile.open(target, "w:gz") as sink:
        for member, data in members:
            member.size = len(data)
            sink.addfile(member, io.BytesIO(data))
    return target


def test_build_bundle_revision_is_content_digest(bundle: SignedBundle) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{16}", bundle.revision)


def test_build_bundle_leaves_out_tests(bundle: SignedBundle) -> None:
    with tarfile.open(bundle.path, "r:gz") as archive:
        names = {member.name.lstrip("/") for member in archive.getmembers()}

    assert names == {".manifest", ".signatures.json", "authz.rego", "data.json"}


def test_build_bundle_uses_given_revision(tmp_path: Path) -> None:
    built = _build(tmp_path / "out", tmp_path / "keys", "release-7")

    assert built.revision == "release-7"


def test_signed_bundle_serves_decisions(bundle_opa: OpaServer) -> None:
    client = OpaClient(bundle_opa.url, timeout=2.0)
    policy_input = {
        "method": "GET",
        "path": "/orders/7",
        "scopes": ["orders:read"],
        "sub": "alice@example.com",
        "aud": AUDIENCE,
    }
    try:
        decision = client.decide(policy_input)
    finally:
        client.close()

    assert decision.allow is True


def test_opa_client_reads_bundle_revision(bundle_opa: OpaServer, bundle: SignedBundle) -> None:
    client = OpaClient(bundle_opa.url, timeout=2.0)
    try:
        revision = client.bundle_revision()
    finally:
        client.close()

    assert json.loads(revision) == {str(bundle.path): bundle.revision}


def test_opa_rejects_tampered_bundle_at_start(bundle: SignedBundle, tmp_path: Path) -> None:
    tampered = _tampered_copy(bundle.path, tmp_path / "tampered.tar.gz")

    with pytest.raises(OpaStartError) as error:
        start_opa(None, _verifying_args(tampered, bundle.verification_key))

    log = "".join(error.value.log_lines)
    assert "authz.rego" in log
    assert "digest mismatch" in log


def test_opa_rejects_bundle_from_other_key(bundle: SignedBundle, tmp_path: Path) -> None:
    other = _build(tmp_path / "out", tmp_path / "keys")

    with pytest.raises(OpaStartError) as error:
        start_opa(None, _verifying_args(other.path, bundle.verification_key))

    assert "verify" in "".join(error.value.log_lines)


def _decision_log_ids(opa: OpaServer) -> set[str]:
    ids = set()
    for line in list(opa.log_lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "Decision Log" and entry.get("path") == "ztmint/authz/decision":
            ids.add(entry["decision_id"])
    return ids


def test_authz_log_carries_opa_decision_id(
    bundle: SignedBundle, caplog: pytest.LogCaptureFixture
) -> None:
    opa = start_opa(None, _verifying_args(bundle.path, bundle.verification_key))
    issuer = Issuer()
    keys = issuer.key_set()
    policy = OpaClient(opa.url, timeout=2.0)
    core = DecisionCore(lambda: keys, policy, AUDIENCE, ISSUER, clock=lambda: NOW)
    token = issuer.token()
    headers = {"authorization": f"Bearer {token}", "x-kms-sig": issuer.receipt(token)}

    try:
        with caplog.at_level(logging.DEBUG, logger="ztmint.authz"):
            result = core.check(HttpRequest("GET", "/orders/7", headers))
    finally:
        policy.close()
        # Stopping OPA and reading its stderr to the end makes sure the entry is collected.
        opa.kill()
    matches = [_AUTHZ_DECISION_ID.search(record.getMessage()) for record in caplog.records]
    logged_ids = [match.group(1) for match in matches if match is not None]

    assert result.allowed
    assert len(logged_ids) == 1
    assert logged_ids[0] in _decision_log_ids(opa)


def test_decision_cache_keys_on_real_bundle_revision(bundle: SignedBundle, tmp_path: Path) -> None:
    opa = start_opa(None, _verifying_args(bundle.path, bundle.verification_key))
    issuer = Issuer()
    keys = issuer.key_set()
    policy = OpaClient(opa.url, timeout=2.0)
    decision_cache = DecisionCache(16)
    core = DecisionCore(
        lambda: keys,
        policy,
        AUDIENCE,
        ISSUER,
        clock=lambda: NOW,
        decision_cache=decision_cache,
        policy_revision=RevisionWatcher(policy.bundle_revision, lambda: NOW, interval=60),
    )
    token = issuer.token()
    headers = {"authorization": f"Bearer {token}", "x-kms-sig": issuer.receipt(token)}
    try:
        for _ in range(3):
            core.check(HttpRequest("GET", "/orders/7", headers))
    finally:
        policy.close()
        opa.kill()
    opa_decisions = _decision_log_ids(opa)

    assert decision_cache.stats.hits == 2
    assert len(opa_decisions) == 1
