"""Fixtures for the KMS backends: a real SoftHSM2 token and the signature-checking OCI mock."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ocimock import ApiKey, OciMock

REPO = Path(__file__).resolve().parents[3]
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "ztmint"  # noqa: S105 - a token label, not a secret
KEY_LABEL = "ztmint-receipt"
USER_PIN = "test-user-pin-1234"  # noqa: S105 - throwaway PIN of a test token


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Initialise a token with scripts/softhsm-init.sh; yield the PKCS#11 module path.

    SoftHSM2 reads SOFTHSM2_CONF once, when the module is initialised in this process, so the
    variable is set for the whole session.
    """
    if shutil.which("softhsm2-util") is None or not Path(SOFTHSM_MODULE).exists():
        pytest.skip("softhsm2 is not installed: apt-get install -y softhsm2")
    folder = tmp_path_factory.mktemp("softhsm")
    config = folder / "softhsm2.conf"
    environment = {
        **os.environ,
        "SOFTHSM2_CONF": str(config),
        "ZTMINT_PKCS11_PIN": USER_PIN,
        "ZTMINT_PKCS11_SO_PIN": "test-so-pin-5678",
        "ZTMINT_PKCS11_TOKEN_LABEL": TOKEN_LABEL,
        "ZTMINT_PKCS11_KEY_LABEL": KEY_LABEL,
        "PYTHON": str(REPO / ".venv" / "bin" / "python"),
    }
    subprocess.run(  # noqa: S603 - runs the repository's own script
        [str(REPO / "scripts" / "softhsm-init.sh"), str(folder)],
        env=environment,
        check=True,
        capture_output=True,
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(config)
    yield SOFTHSM_MODULE
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture(scope="session")
def api_key() -> ApiKey:
    return ApiKey.generate()


@pytest.fixture
def oci_config(api_key: ApiKey, tmp_path: Path) -> Path:
    return api_key.write_config(tmp_path)


@pytest.fixture
def oci_mock(api_key: ApiKey) -> Iterator[OciMock]:
    mock = OciMock(api_key)
    mock.start()
    yield mock
    mock.stop()
