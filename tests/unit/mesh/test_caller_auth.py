"""Per-call coordinator tokens: issue, verify, single use, binding and time window."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mesh_unit_support import FakeClock

from actors.caller_auth import (
    CallTokenIssuer,
    CallTokenVerifier,
    call_digest,
    load_or_create_coordinator_key,
    public_key_bytes,
)
from actors.errors import CallerRejected, SealedShareInvalid

AUDIENCE = "ztmint-signer-1"


def _pair(clock: FakeClock) -> tuple[CallTokenIssuer, CallTokenVerifier]:
    key = Ed25519PrivateKey.generate()
    return (
        CallTokenIssuer(key, clock=clock),
        CallTokenVerifier(public_key_bytes(key), AUDIENCE, clock=clock),
    )


def test_verify_accepts_fresh_token() -> None:
    issuer, verifier = _pair(FakeClock())

    verifier.verify(issuer.issue(AUDIENCE, "sign", (b"x",)), "sign", (b"x",))


def test_verify_rejects_reused_jti() -> None:
    issuer, verifier = _pair(FakeClock())
    token = issuer.issue(AUDIENCE, "sign", (b"x",))
    verifier.verify(token, "sign", (b"x",))

    with pytest.raises(CallerRejected, match="jti was used already"):
        verifier.verify(token, "sign", (b"x",))


def test_verify_rejects_other_arguments() -> None:
    issuer, verifier = _pair(FakeClock())
    token = issuer.issue(AUDIENCE, "sign", (b"x",))

    with pytest.raises(CallerRejected, match="bound to other arguments"):
        verifier.verify(token, "sign", (b"y",))


def test_verify_rejects_other_method() -> None:
    issuer, verifier = _pair(FakeClock())
    token = issuer.issue(AUDIENCE, "publish_commitments", (4,))

    with pytest.raises(CallerRejected, match="issued for 'publish_commitments', not 'sign'"):
        verifier.verify(token, "sign", (4,))


def test_verify_rejects_other_audience() -> None:
    issuer, verifier = _pair(FakeClock())
    token = issuer.issue("ztmint-signer-2", "sign", ())

    with pytest.raises(CallerRejected, match="InvalidAudienceError"):
        verifier.verify(token, "sign", ())


def test_verify_rejects_expired_token() -> None:
    clock = FakeClock()
    issuer, verifier = _pair(clock)
    token = issuer.issue(AUDIENCE, "sign", ())
    clock.now += 36

    with pytest.raises(CallerRejected, match="expired"):
        verifier.verify(token, "sign", ())


def test_verify_rejects_future_token() -> None:
    clock = FakeClock()
    issuer, verifier = _pair(clock)
    token = issuer.issue(AUDIENCE, "sign", ())
    clock.now -= 60

    with pytest.raises(CallerRejected, match="issued in the future"):
        verifier.verify(token, "sign", ())


def test_verify_rejects_long_lived_token() -> None:
    key = Ed25519PrivateKey.generate()
    clock = FakeClock()
    verifier = CallTokenVerifier(public_key_bytes(key), AUDIENCE, clock=clock)
    claims = {
        "iss": "ztmint-coordinator", "aud": AUDIENCE, "iat": int(clock.now),
        "exp": int(clock.now) + 300, "jti": "j", "mth": "sign",
        "req": "x",
    }  # fmt: skip
    token = jwt.encode(claims, key, algorithm="EdDSA")

    with pytest.raises(CallerRejected, match="lives 300 s: expected 1 to 30 s"):
        verifier.verify(token, "sign", ())


def test_verify_rejects_missing_token() -> None:
    _, verifier = _pair(FakeClock())

    with pytest.raises(CallerRejected, match="without a coordinator token"):
        verifier.verify(None, "sign", ())


def test_issuer_rejects_lifetime_over_30_seconds() -> None:
    with pytest.raises(ValueError, match="must be 1 to 30 s"):
        CallTokenIssuer(Ed25519PrivateKey.generate(), lifetime=31)


def test_call_digest_distinguishes_argument_types() -> None:
    assert call_digest("m", (b"1",)) != call_digest("m", ("1",))
    assert call_digest("m", (1,)) != call_digest("m", ("1",))
    assert call_digest("m", ({1: 2},)) == call_digest("m", ({1: 2},))


def test_call_digest_rejects_unknown_type() -> None:
    with pytest.raises(TypeError, match="type object"):
        call_digest("m", (object(),))


def test_coordinator_key_survives_reload(tmp_path: Path) -> None:
    first = load_or_create_coordinator_key(tmp_path)

    again = load_or_create_coordinator_key(tmp_path)

    assert public_key_bytes(first) == public_key_bytes(again)
    assert (tmp_path / "coordinator" / "caller-key.sealed.json").stat().st_mode & 0o777 == 0o600


def test_coordinator_key_rejects_altered_file(tmp_path: Path) -> None:
    load_or_create_coordinator_key(tmp_path)
    path = tmp_path / "coordinator" / "caller-key.sealed.json"
    path.write_bytes(path.read_bytes().replace(b'"v":1', b'"v":2'))

    with pytest.raises(SealedShareInvalid, match="failed authentication"):
        load_or_create_coordinator_key(tmp_path)


def test_issuer_repr_hides_key() -> None:
    assert repr(CallTokenIssuer(Ed25519PrivateKey.generate())) == "CallTokenIssuer(<redacted>)"
