"""Tests of ``mint.softkey.SoftwareAuthenticator``: key file, counter and WebAuthn JSON."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from fido2.webauthn import AuthenticationResponse, RegistrationResponse

from mint.softkey import SoftKeyError, SoftwareAuthenticator
from mint.webauthn import RelyingParty, creation_options, request_options

RP = RelyingParty(rp_id="localhost", origin="http://localhost:8080")


def _registered(tmp_path: Path) -> SoftwareAuthenticator:
    authenticator = SoftwareAuthenticator(tmp_path / "key.json", RP.origin)
    authenticator.register(creation_options(RP, "alice", b"handle", os.urandom(32), []))
    return authenticator


def test_register_writes_key_file_private_to_owner(tmp_path: Path) -> None:
    _registered(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "key.json").st_mode) == 0o600


def test_register_output_parses_as_registration_response(tmp_path: Path) -> None:
    authenticator = SoftwareAuthenticator(tmp_path / "key.json", RP.origin)
    output = authenticator.register(creation_options(RP, "alice", b"h", os.urandom(32), []))
    response = RegistrationResponse.from_dict(output)
    assert response.response.attestation_object.fmt == "packed"


def test_register_rejects_existing_key_file(tmp_path: Path) -> None:
    authenticator = _registered(tmp_path)
    with pytest.raises(SoftKeyError, match="exists"):
        authenticator.register(creation_options(RP, "alice", b"h", os.urandom(32), []))


def test_authenticate_persists_growing_counter(tmp_path: Path) -> None:
    authenticator = _registered(tmp_path)
    counters = []
    for _ in range(3):
        output = authenticator.authenticate(request_options(RP, os.urandom(32), []))
        counters.append(
            AuthenticationResponse.from_dict(output).response.authenticator_data.counter
        )
    assert counters == [1, 2, 3]
    assert json.loads((tmp_path / "key.json").read_text())["sign_count"] == 3


def test_authenticate_keeps_key_file_private(tmp_path: Path) -> None:
    authenticator = _registered(tmp_path)
    authenticator.authenticate(request_options(RP, os.urandom(32), []))
    assert stat.S_IMODE(os.stat(tmp_path / "key.json").st_mode) == 0o600


def test_authenticate_rejects_other_rp_id(tmp_path: Path) -> None:
    authenticator = _registered(tmp_path)
    other = RelyingParty(rp_id="example.com", origin="https://example.com")
    with pytest.raises(SoftKeyError, match="example.com"):
        authenticator.authenticate(request_options(other, os.urandom(32), []))


def test_authenticate_rejects_missing_key_file(tmp_path: Path) -> None:
    authenticator = SoftwareAuthenticator(tmp_path / "absent.json", RP.origin)
    with pytest.raises(SoftKeyError, match="ztmint enroll"):
        authenticator.authenticate(request_options(RP, os.urandom(32), []))


def test_software_authenticator_repr_hides_key(tmp_path: Path) -> None:
    authenticator = _registered(tmp_path)
    assert "BEGIN" not in repr(authenticator)
    assert "private" not in repr(authenticator)
