"""KMS backend selection from ``ZTMINT_*`` variables, and a full mint through each backend.

The selection tests parse environments only. The backend tests build the mint with
``service_from_settings`` over a real SoftHSM2 token and over the signature-checking OCI mock
(``tests.support.ocimock``), mint a token, and verify its receipt with the mint's JWKS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mint_testkit import ISSUER, ORIGIN, FakeClock, InProcessTokenSigner

from authz.jose import b64url_decode
from authz.keys import key_set_from_jwks
from authz.verify import verify_receipt, verify_token
from mint.app import service_from_settings
from mint.kms import KmsError
from mint.kms_select import (
    KmsSettings,
    RetiredKeyName,
    kms_settings_from_env,
    open_receipt_key_ring,
)
from mint.rotation import MIN_GRACE_SECONDS, ReceiptKeyRing
from mint.service import MintService
from mint.settings import Settings, SettingsError, settings_from_env
from mint.softkey import SoftwareAuthenticator
from tests.integration.kms import conftest as kms_fixtures
from tests.integration.kms.conftest import KEY_LABEL, TOKEN_LABEL, USER_PIN
from tests.support.ocimock import KMS_KEY_ID, KMS_KEY_VERSION_ID, OciMock

# The SoftHSM2 token and OCI mock fixtures of the KMS integration tests, shared by name.
softhsm_token = kms_fixtures.softhsm_token
api_key = kms_fixtures.api_key
oci_config = kms_fixtures.oci_config
oci_mock = kms_fixtures.oci_mock

AUDIENCE = "orders"
PKCS11_ENV = {
    "ZTMINT_KMS": "pkcs11",
    "ZTMINT_PKCS11_TOKEN_LABEL": TOKEN_LABEL,
    "ZTMINT_PKCS11_KEY_LABEL": KEY_LABEL,
    "ZTMINT_PKCS11_PIN": USER_PIN,
}


def _oci_env(mock_url: str, config: Path) -> dict[str, str]:
    return {
        "ZTMINT_KMS": "oci",
        "ZTMINT_OCI_KEY_ID": KMS_KEY_ID,
        "ZTMINT_OCI_KEY_VERSION_ID": KMS_KEY_VERSION_ID,
        "ZTMINT_OCI_CRYPTO_ENDPOINT": mock_url,
        "ZTMINT_OCI_MANAGEMENT_ENDPOINT": mock_url,
        "ZTMINT_OCI_CONFIG_FILE": str(config),
    }


def _settings_error(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        kms_settings_from_env(env, SettingsError)
    return str(caught.value)


# Selection


def test_kms_settings_default_local() -> None:
    settings = kms_settings_from_env({}, SettingsError)

    assert settings.backend == "local"
    assert settings.grace_seconds == MIN_GRACE_SECONDS


def test_settings_from_env_carries_kms_choice() -> None:
    settings = settings_from_env(PKCS11_ENV)

    assert settings.kms.backend == "pkcs11"
    assert settings.kms.pkcs11 is not None
    assert settings.kms.pkcs11.key_label == KEY_LABEL


def test_kms_settings_hide_pin_from_repr() -> None:
    settings = kms_settings_from_env(PKCS11_ENV, SettingsError)

    assert USER_PIN not in repr(settings)


def test_kms_settings_parse_retired_labels() -> None:
    env = {**PKCS11_ENV, "ZTMINT_PKCS11_RETIRED_KEY_LABELS": "old=1000, older=900"}

    settings = kms_settings_from_env(env, SettingsError)

    assert settings.pkcs11 is not None
    assert settings.pkcs11.retired == (RetiredKeyName("old", 1000), RetiredKeyName("older", 900))


def test_kms_settings_parse_oci_retired_versions(tmp_path: Path) -> None:
    env = {**_oci_env("http://127.0.0.1:1", tmp_path), "ZTMINT_OCI_RETIRED_KEY_VERSION_IDS": "v0=5"}

    settings = kms_settings_from_env(env, SettingsError)

    assert settings.oci is not None
    assert settings.oci.retired == (RetiredKeyName("v0", 5),)
    assert settings.oci.auth.method == "config"


def test_kms_settings_reject_unknown_backend() -> None:
    message = _settings_error({"ZTMINT_KMS": "vault"})

    assert message == "ZTMINT_KMS is 'vault'; expected one of local, pkcs11, oci"


def test_kms_settings_reject_short_grace() -> None:
    message = _settings_error({"ZTMINT_RECEIPT_KEY_GRACE_SECONDS": "600"})

    assert "ZTMINT_RECEIPT_KEY_GRACE_SECONDS is 600; expected at least 3600" in message


def test_kms_settings_reject_non_integer_grace() -> None:
    message = _settings_error({"ZTMINT_RECEIPT_KEY_GRACE_SECONDS": "1h"})

    assert (
        message == "ZTMINT_RECEIPT_KEY_GRACE_SECONDS is '1h'; expected an integer number of seconds"
    )


@pytest.mark.parametrize("missing", ["ZTMINT_PKCS11_TOKEN_LABEL", "ZTMINT_PKCS11_KEY_LABEL"])
def test_kms_settings_reject_pkcs11_without_label(missing: str) -> None:
    env = {key: value for key, value in PKCS11_ENV.items() if key != missing}

    assert _settings_error(env) == f"ZTMINT_KMS=pkcs11 needs {missing}; set it"


def test_kms_settings_reject_pkcs11_without_pin() -> None:
    env = {key: value for key, value in PKCS11_ENV.items() if key != "ZTMINT_PKCS11_PIN"}

    assert "needs exactly one of ZTMINT_PKCS11_PIN_FILE" in _settings_error(env)


def test_kms_settings_reject_pkcs11_with_two_pins() -> None:
    env = {**PKCS11_ENV, "ZTMINT_PKCS11_PIN_FILE": "/run/secrets/pin"}

    assert "needs exactly one of ZTMINT_PKCS11_PIN_FILE" in _settings_error(env)


def test_kms_settings_reject_invalid_retired_entry() -> None:
    env = {**PKCS11_ENV, "ZTMINT_PKCS11_RETIRED_KEY_LABELS": "old=yesterday"}

    message = _settings_error(env)

    assert "ZTMINT_PKCS11_RETIRED_KEY_LABELS entry 'old=yesterday' is invalid" in message


@pytest.mark.parametrize(
    "missing", ["ZTMINT_OCI_KEY_ID", "ZTMINT_OCI_KEY_VERSION_ID", "ZTMINT_OCI_CRYPTO_ENDPOINT"]
)
def test_kms_settings_reject_oci_without_key(missing: str, tmp_path: Path) -> None:
    env = {k: v for k, v in _oci_env("http://127.0.0.1:1", tmp_path).items() if k != missing}

    assert _settings_error(env) == f"ZTMINT_KMS=oci needs {missing}; set it"


def test_kms_settings_reject_oci_without_management_endpoint(tmp_path: Path) -> None:
    env = _oci_env("http://127.0.0.1:1", tmp_path)
    del env["ZTMINT_OCI_MANAGEMENT_ENDPOINT"]

    assert "needs ZTMINT_OCI_MANAGEMENT_ENDPOINT" in _settings_error(env)


def test_kms_settings_reject_unknown_oci_auth(tmp_path: Path) -> None:
    env = {**_oci_env("http://127.0.0.1:1", tmp_path), "ZTMINT_OCI_AUTH": "password"}

    assert _settings_error(env) == (
        "ZTMINT_OCI_AUTH is 'password'; expected one of config, instance, workload"
    )


def test_kms_settings_ignore_other_backend_variables() -> None:
    settings = kms_settings_from_env({"ZTMINT_OCI_KEY_ID": "unused"}, SettingsError)

    assert settings.backend == "local"
    assert settings.oci is None


def test_open_local_ring_creates_key(tmp_path: Path) -> None:
    ring = open_receipt_key_ring(KmsSettings(), tmp_path, FakeClock())

    assert isinstance(ring, ReceiptKeyRing)
    assert (tmp_path / "kms-p256.pem").exists()


# Full mints through each backend


def _service(env: dict[str, str], state_dir: Path, clock: FakeClock) -> MintService:
    settings = settings_from_env(
        {
            **env,
            "ZTMINT_ORIGIN": ORIGIN,
            "ZTMINT_ISSUER": ISSUER,
            "ZTMINT_STATE_DIR": str(state_dir),
        }
    )
    assert isinstance(settings, Settings)
    return service_from_settings(settings, InProcessTokenSigner(), clock, os.urandom)


def _mint_and_verify(service: MintService, tmp_path: Path, clock: FakeClock) -> str:
    """Enroll, mint, verify token and receipt with the service's JWKS; return the receipt kid."""
    started = service.begin_registration("alice", service.invite("alice"))
    authenticator = SoftwareAuthenticator(tmp_path / "alice.json", ORIGIN)
    service.complete_registration(started.challenge_id, authenticator.register(started.options))
    challenge = service.begin_assertion("alice", ["orders:read"], AUDIENCE, 900)
    assertion = authenticator.authenticate(challenge.options)
    result = service.mint(challenge.challenge_id, ["orders:read"], AUDIENCE, 900, assertion)

    keys = key_set_from_jwks(service.jwks())
    now = int(clock())
    token = verify_token(result.token, keys, now, AUDIENCE, ISSUER)
    verify_receipt(result.receipt, token, keys, now)
    header = json.loads(b64url_decode(result.receipt.split(".")[0]))
    return str(header["kid"])


@pytest.fixture
def pkcs11_service(softhsm_token: str, tmp_path: Path) -> Iterator[MintService]:
    env = {**PKCS11_ENV, "ZTMINT_PKCS11_MODULE": softhsm_token}
    service = _service(env, tmp_path / "state", FakeClock())
    yield service
    ring = service._receipt_signer  # noqa: SLF001 - log out so later tests can log in
    assert isinstance(ring, ReceiptKeyRing)
    ring.close()


@pytest.mark.integration
def test_pkcs11_backend_mints_verifiable_receipt(
    pkcs11_service: MintService, tmp_path: Path
) -> None:
    kid = _mint_and_verify(pkcs11_service, tmp_path, FakeClock())

    assert kid in {key["kid"] for key in pkcs11_service.jwks()["keys"]}


@pytest.mark.integration
def test_pkcs11_backend_rejects_wrong_pin(softhsm_token: str, tmp_path: Path) -> None:
    env = {**PKCS11_ENV, "ZTMINT_PKCS11_MODULE": softhsm_token, "ZTMINT_PKCS11_PIN": "wrong"}

    with pytest.raises(KmsError) as caught:
        _service(env, tmp_path / "state", FakeClock())

    assert f"login to PKCS#11 token {TOKEN_LABEL!r} failed" in str(caught.value)


@pytest.mark.integration
def test_pkcs11_backend_rejects_unknown_retired_label(softhsm_token: str, tmp_path: Path) -> None:
    env = {
        **PKCS11_ENV,
        "ZTMINT_PKCS11_MODULE": softhsm_token,
        "ZTMINT_PKCS11_RETIRED_KEY_LABELS": "gone=1000",
    }

    with pytest.raises(KmsError) as caught:
        _service(env, tmp_path / "state", FakeClock())

    assert "retired receipt key 'gone' has no single EC public key object" in str(caught.value)


@pytest.mark.integration
def test_pkcs11_backend_publishes_retired_key(softhsm_token: str, tmp_path: Path) -> None:
    # The token contains one key pair; listing it as retired too checks the public key read.
    env = {
        **PKCS11_ENV,
        "ZTMINT_PKCS11_MODULE": softhsm_token,
        "ZTMINT_PKCS11_PIN": "",
        "ZTMINT_PKCS11_PIN_FILE": str(tmp_path / "pin"),
        "ZTMINT_PKCS11_RETIRED_KEY_LABELS": f"{KEY_LABEL}=1000",
    }
    (tmp_path / "pin").write_text(USER_PIN + "\n")
    service = _service(env, tmp_path / "state", FakeClock())
    try:
        kids = [key["kid"] for key in service.jwks()["keys"] if key["kty"] == "EC"]
    finally:
        ring = service._receipt_signer  # noqa: SLF001
        assert isinstance(ring, ReceiptKeyRing)
        ring.close()

    # The active key and the same key as retired share a kid, so the ring lists it once.
    assert kids == [service._receipt_signer.kid]  # noqa: SLF001


@pytest.mark.integration
def test_oci_backend_mints_verifiable_receipt(
    oci_mock: OciMock, oci_config: Path, tmp_path: Path
) -> None:
    service = _service(_oci_env(oci_mock.url, oci_config), tmp_path / "state", FakeClock())

    kid = _mint_and_verify(service, tmp_path, FakeClock())

    assert kid == service.jwks()["keys"][1]["kid"]
    assert all(request.authenticated for request in oci_mock.state.requests)
    assert "sign" in {request.operation for request in oci_mock.state.requests}


@pytest.mark.integration
def test_oci_backend_rejects_unknown_retired_version(
    oci_mock: OciMock, oci_config: Path, tmp_path: Path
) -> None:
    env = {**_oci_env(oci_mock.url, oci_config), "ZTMINT_OCI_RETIRED_KEY_VERSION_IDS": "v0=1"}

    with pytest.raises(KmsError) as caught:
        _service(env, tmp_path / "state", FakeClock())

    assert "OCI KMS get_key_version for v0 failed with HTTP 404" in str(caught.value)


@pytest.mark.integration
def test_oci_backend_rejects_unreachable_vault(oci_config: Path, tmp_path: Path) -> None:
    env = _oci_env("http://127.0.0.1:1", oci_config)

    with pytest.raises(KmsError) as caught:
        _service(env, tmp_path / "state", FakeClock())

    assert "OCI KMS get_key_version" in str(caught.value)
