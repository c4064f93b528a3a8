"""The mint's OpenAPI document, and a schemathesis run against the live mint.

The schemathesis run uses the default checks against uvicorn on a loopback socket. One
setting differs from the defaults: for ``POST /mint`` and ``POST /register/complete`` a 400
counts as an accepted response to schema-valid data. Those requests carry a challenge id that
only the mint can issue and a WebAuthn response that only an authenticator can sign, so the
generated values are well formed but never valid, and the mint rightly answers
``challenge_unknown`` or ``request_invalid``. Every other expectation is schemathesis's own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import LiveMint

from mint.errors import STATUS_BY_REASON, MintReason

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 20
SCHEMATHESIS_TIMEOUT_SECONDS = 120
SCHEMATHESIS_CONFIG = """\
[[operations]]
include-path-regex = "^/(mint|register/complete)$"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "400", "401", "403", "404", "409", "429",
]
"""
# Routes that are not API operations: FastAPI's own document and the /ui redirect.
UNDOCUMENTED_PATHS = {"/openapi.json", "/ui"}


@pytest.fixture
def openapi(live_mint: LiveMint) -> dict[str, Any]:
    response = httpx.get(f"{live_mint.url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_openapi_documents_every_route(openapi: dict[str, Any]) -> None:
    documented = set(openapi["paths"])
    expected = {
        "/register",
        "/register/complete",
        "/assert",
        "/mint",
        "/.well-known/jwks.json",
        "/healthz",
        "/ui/",
    }
    assert expected <= documented
    assert not documented & UNDOCUMENTED_PATHS


def test_openapi_operations_have_response_schemas(openapi: dict[str, Any]) -> None:
    for path, method, operation in _operations(openapi):
        content = operation["responses"]["200"].get("content", {})
        schemas = [media.get("schema") for media in content.values()]
        assert schemas and all(schemas), f"{method.upper()} {path} has no 200 response schema"


def test_openapi_api_operations_document_error_body(openapi: dict[str, Any]) -> None:
    error_ref = "#/components/schemas/ErrorResponse"
    for path, method, operation in _operations(openapi):
        if path.startswith("/ui/") and path != "/ui/":
            continue
        errors = {code: body for code, body in operation["responses"].items() if code != "200"}
        assert errors, f"{method.upper()} {path} documents no error response"
        for code, body in errors.items():
            schema = body["content"]["application/json"]["schema"]
            assert schema == {"$ref": error_ref}, f"{method.upper()} {path} {code}"


def test_openapi_has_no_validation_error_entries(openapi: dict[str, Any]) -> None:
    for path, method, operation in _operations(openapi):
        assert "422" not in operation["responses"], f"{method.upper()} {path}"
    assert "HTTPValidationError" not in openapi["components"]["schemas"]


def test_openapi_error_schema_lists_every_reason(openapi: dict[str, Any]) -> None:
    reason_schema = openapi["components"]["schemas"]["MintReason"]
    assert set(reason_schema["enum"]) == {reason.value for reason in MintReason}


def test_openapi_documents_status_of_every_reason(openapi: dict[str, Any]) -> None:
    documented = set(openapi["paths"]["/mint"]["post"]["responses"])
    assert {str(status) for status in STATUS_BY_REASON.values()} <= documented


def test_unknown_path_rejected_with_reason(live_mint: LiveMint) -> None:
    response = httpx.get(f"{live_mint.url}/no-such-route", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == MintReason.ROUTE_NOT_FOUND


def test_unsupported_method_rejected_with_reason(live_mint: LiveMint) -> None:
    response = httpx.put(f"{live_mint.url}/mint", json={}, timeout=10)
    assert response.status_code == 405
    assert response.json()["error"] == MintReason.METHOD_NOT_ALLOWED
    assert response.headers["allow"] == "POST"


def test_unparsable_body_rejected_as_request_invalid(live_mint: LiveMint) -> None:
    response = httpx.post(
        f"{live_mint.url}/assert",
        content=b"\xff\xfe{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"] == MintReason.REQUEST_INVALID


def test_schemathesis_finds_no_failures(live_mint: LiveMint, tmp_path: Path) -> None:
    executable = shutil.which("st", path=str(Path(sys.executable).parent))
    assert executable is not None, "schemathesis is not installed; pip install schemathesis"
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    completed = subprocess.run(  # noqa: S603 (fixed arguments)
        [
            executable,
            "--no-color",
            "--config-file",
            str(config),
            "run",
            f"{live_mint.url}/openapi.json",
            "--max-examples",
            str(MAX_EXAMPLES),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-2000:]
