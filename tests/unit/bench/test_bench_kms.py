"""The KMS variants of ``bench.mint --kms``: the settings each yields and the mock behind them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bench.kms import KMS_VARIANTS, kms_settings_for
from mint.kms_select import KmsSettings, open_receipt_key_ring


def test_kms_variants_names() -> None:
    assert sorted(KMS_VARIANTS) == ["local", "oci-2ms", "oci-60ms"]


@pytest.mark.parametrize(("name", "delay"), [("oci-2ms", 0.002), ("oci-60ms", 0.060)])
def test_kms_variant_delay(name: str, delay: float) -> None:
    assert KMS_VARIANTS[name].added_delay_seconds == delay


def test_kms_settings_for_local_is_default(tmp_path: Path) -> None:
    with kms_settings_for(KMS_VARIANTS["local"], tmp_path) as settings:
        assert settings == KmsSettings()


def test_kms_settings_for_oci_signs_through_mock(tmp_path: Path) -> None:
    with kms_settings_for(KMS_VARIANTS["oci-60ms"], tmp_path) as settings:
        ring = open_receipt_key_ring(settings, tmp_path, time.time)
        started = time.monotonic()
        signature = ring.sign(b"signing input")
        elapsed = time.monotonic() - started

    assert settings.backend == "oci"
    assert len(signature) == 64
    # Only the lower bound, because a loaded machine adds time but never removes it.
    assert elapsed >= 0.060


def test_kms_settings_for_oci_stops_mock(tmp_path: Path) -> None:
    with kms_settings_for(KMS_VARIANTS["oci-2ms"], tmp_path) as settings:
        assert settings.oci is not None
        endpoint = settings.oci.crypto_endpoint

    with pytest.raises(httpx.ConnectError):
        httpx.get(endpoint, timeout=2)
