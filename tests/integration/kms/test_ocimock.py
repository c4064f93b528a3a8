"""The OCI mock itself: it must reject requests whose signature, body or date is wrong."""

from __future__ import annotations

import email.utils
from pathlib import Path

import oci
import pytest
from oci._vendor import requests

from tests.support.ocimock import ApiKey, OciMock

SIGN_PATH = "/20180608/sign"
BODY = b'{"message":"AAAA","keyId":"k","keyVersionId":"v","messageType":"DIGEST"}'


def _signed_request(api_key: ApiKey, oci_config: Path, url: str) -> requests.PreparedRequest:
    config = oci.config.from_file(str(oci_config))
    signer = oci.signer.Signer.from_config(config)
    request = requests.Request("POST", url + SIGN_PATH, data=BODY).prepare()
    return signer(request)


def _send(request: requests.PreparedRequest) -> int:
    with requests.Session() as session:
        return session.send(request, timeout=2).status_code


def test_mock_accepts_valid_signature(api_key: ApiKey, oci_config: Path, oci_mock: OciMock) -> None:
    request = _signed_request(api_key, oci_config, oci_mock.url)

    status = _send(request)

    assert status != 401
    assert oci_mock.state.requests[0].authenticated


def test_mock_rejects_tampered_body(api_key: ApiKey, oci_config: Path, oci_mock: OciMock) -> None:
    request = _signed_request(api_key, oci_config, oci_mock.url)
    request.body = BODY.replace(b"AAAA", b"BBBB")

    assert _send(request) == 401
    assert oci_mock.state.requests[0].rejection == "x-content-sha256 does not match the body"


def test_mock_rejects_tampered_signature(
    api_key: ApiKey, oci_config: Path, oci_mock: OciMock
) -> None:
    request = _signed_request(api_key, oci_config, oci_mock.url)
    authorization = request.headers["authorization"]
    start = authorization.index('signature="') + len('signature="')
    flipped = "A" if authorization[start] != "A" else "B"
    request.headers["authorization"] = authorization[:start] + flipped + authorization[start + 1 :]

    assert _send(request) == 401
    assert "does not verify" in (oci_mock.state.requests[0].rejection or "")


def test_mock_rejects_other_api_key(oci_mock: OciMock, tmp_path: Path) -> None:
    stranger = ApiKey.generate()
    request = _signed_request(stranger, stranger.write_config(tmp_path), oci_mock.url)

    assert _send(request) == 401
    assert "unknown keyId" in (oci_mock.state.requests[0].rejection or "")


def test_mock_rejects_missing_body_headers(
    api_key: ApiKey, oci_config: Path, oci_mock: OciMock
) -> None:
    config = oci.config.from_file(str(oci_config))
    signer = oci.signer.Signer.from_config(config).without_content_headers
    request = signer(requests.Request("POST", oci_mock.url + SIGN_PATH, data=BODY).prepare())

    assert _send(request) == 401
    assert "not signed" in (oci_mock.state.requests[0].rejection or "")


@pytest.mark.parametrize("skew", [-400.0, 400.0])
def test_mock_rejects_skewed_date(
    api_key: ApiKey, oci_config: Path, oci_mock: OciMock, skew: float
) -> None:
    request = _signed_request(api_key, oci_config, oci_mock.url)
    sent_at = email.utils.parsedate_to_datetime(request.headers["date"]).timestamp()
    oci_mock.state.clock = lambda: sent_at + skew

    assert _send(request) == 401
    assert "from the server clock" in (oci_mock.state.requests[0].rejection or "")


def test_mock_rejects_unsigned_request(oci_mock: OciMock) -> None:
    request = requests.Request("POST", oci_mock.url + SIGN_PATH, data=BODY).prepare()

    assert _send(request) == 401
