"""The OCI mock's ``added_delay_seconds``, which simulates the round trip to a remote Vault.

The requests go through the real OCI SDK client (``mint.kms_oci.OciKms``) over loopback. The
mock's ``sleep`` is a recorder except in the one test that checks the real delay.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mint.kms_oci import OciAuth, OciKms
from tests.support.ocimock import KMS_KEY_ID, KMS_KEY_VERSION_ID, ApiKey, OciMock

DELAY_SECONDS = 0.06


@pytest.fixture(scope="module")
def api_key() -> ApiKey:
    return ApiKey.generate()


@pytest.fixture
def oci_config(api_key: ApiKey, tmp_path: Path) -> Path:
    return api_key.write_config(tmp_path)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def delayed_mock(api_key: ApiKey, sleeps: list[float]) -> Iterator[OciMock]:
    mock = OciMock(api_key, added_delay_seconds=DELAY_SECONDS, sleep=sleeps.append)
    mock.start()
    yield mock
    mock.stop()


def _connect(mock: OciMock, oci_config: Path) -> OciKms:
    auth = OciAuth.from_config_file(oci_config, "DEFAULT")
    return OciKms.connect(
        auth, mock.url, KMS_KEY_ID, KMS_KEY_VERSION_ID, management_endpoint=mock.url
    )


def test_ocimock_delays_each_sign(
    delayed_mock: OciMock, oci_config: Path, sleeps: list[float]
) -> None:
    kms = _connect(delayed_mock, oci_config)

    kms.sign(b"first")
    kms.sign(b"second")

    assert sleeps == [DELAY_SECONDS, DELAY_SECONDS]


def test_ocimock_delay_skips_key_version_read(
    delayed_mock: OciMock, oci_config: Path, sleeps: list[float]
) -> None:
    _connect(delayed_mock, oci_config)

    operations = [request.operation for request in delayed_mock.state.requests]
    assert operations == ["get_key_version"]
    assert sleeps == []


def test_ocimock_delayed_sign_still_verifies(delayed_mock: OciMock, oci_config: Path) -> None:
    kms = _connect(delayed_mock, oci_config)

    # OciKms.sign verifies the returned signature under the key version's public key.
    signature = kms.sign(b"signing input")

    assert len(signature) == 64
    assert all(request.authenticated for request in delayed_mock.state.requests)


def test_ocimock_without_delay_never_sleeps(api_key: ApiKey, oci_config: Path) -> None:
    sleeps: list[float] = []
    mock = OciMock(api_key, sleep=sleeps.append)
    mock.start()
    try:
        _connect(mock, oci_config).sign(b"signing input")
    finally:
        mock.stop()

    assert sleeps == []


def test_ocimock_delay_lengthens_round_trip(api_key: ApiKey, oci_config: Path) -> None:
    mock = OciMock(api_key, added_delay_seconds=DELAY_SECONDS)
    mock.start()
    try:
        kms = _connect(mock, oci_config)
        started = time.monotonic()
        kms.sign(b"signing input")
        elapsed = time.monotonic() - started
    finally:
        mock.stop()

    # Only the lower bound is checked, because a loaded machine adds time but never removes it.
    assert elapsed >= DELAY_SECONDS


def test_ocimock_rejects_negative_delay(api_key: ApiKey) -> None:
    with pytest.raises(ValueError, match="added_delay_seconds is -0.1; expected 0 or more"):
        OciMock(api_key, added_delay_seconds=-0.1)
