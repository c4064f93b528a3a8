"""A local stand-in for the OCI endpoints ztmint calls, which checks request signatures.

The server listens on 127.0.0.1 on a free port and serves three OCI APIs:

- Vault crypto and management (API version 20180608): ``POST /20180608/sign`` signs a
  SHA-256 digest with a P-256 key the mock holds, and ``GET /20180608/keys/{keyId}/keyVersions/
  {keyVersionId}`` returns that key version with its public key in PEM.
- Object Storage: ``PUT``/``HEAD /n/{ns}/b/{bucket}/o/{object}`` and
  ``GET /n/{ns}/b/{bucket}/retentionRules``.
- Logging Ingestion (API version 20200831): ``POST /20200831/logs/{logId}/actions/push``.

Every request must carry a valid OCI request signature, which is the draft-cavage HTTP
Signatures scheme (draft-cavage-http-signatures-08) with ``rsa-sha256``, checked the way the
OCI documentation "Request Signatures" describes it:

- ``Authorization: Signature version="1",keyId="<tenancy>/<user>/<fingerprint>",
  algorithm="rsa-sha256",headers="...",signature="..."``.
- The signed headers include ``date (request-target) host``, and for PUT and POST also
  ``content-length content-type x-content-sha256``. Object Storage PutObject is exempt from
  the body headers, as on OCI, so its body is checked with ``Content-MD5`` instead.
- ``x-content-sha256`` is the base64 SHA-256 of the body and ``content-length`` its size.
- ``date`` is within 5 minutes of the mock's clock.

A request that fails any check gets 401 ``NotAuthenticated`` as OCI returns it, and is recorded
with the reason, so a test can assert both that good requests pass and that bad ones fail.
Faults (500, 429, an answer slower than the client's time-out, malformed JSON) can be queued
per operation. ``added_delay_seconds`` delays every KMS sign response by a fixed time, to
simulate the network round trip to a Vault in another data centre or region.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

MAX_DATE_SKEW_SECONDS = 300
TENANCY = "ocid1.tenancy.oc1..aaaaaaaaztminttest"
USER = "ocid1.user.oc1..aaaaaaaaztminttest"
KMS_KEY_ID = "ocid1.key.oc1.iad.ztmint.aaaaaaaareceipt"
KMS_KEY_VERSION_ID = "ocid1.keyversion.oc1.iad.ztmint.aaaaaaaaversion1"
_GENERIC_HEADERS = ("date", "(request-target)", "host")
_BODY_HEADERS = ("content-length", "content-type", "x-content-sha256")
_SLOW_ANSWER_MAX_SECONDS = 10.0


class Fault(Enum):
    """A failure the mock produces instead of its normal answer."""

    STATUS_500 = "status_500"
    STATUS_429 = "status_429"
    SLOW = "slow"
    MALFORMED_JSON = "malformed_json"


@dataclass(frozen=True)
class ApiKey:
    """The RSA API signing key of the test user, as registered with the mock."""

    private_key: rsa.RSAPrivateKey
    fingerprint: str

    @property
    def key_id(self) -> str:
        """The ``keyId`` that the SDK puts in the Authorization header."""
        return f"{TENANCY}/{USER}/{self.fingerprint}"

    @staticmethod
    def generate() -> ApiKey:
        """Generate a 2048-bit RSA key and its OCI fingerprint (MD5 of the DER public key)."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
        fingerprint = ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
        return ApiKey(private_key=private_key, fingerprint=fingerprint)

    def write_config(self, folder: Path, region: str = "us-ashburn-1") -> Path:
        """Write the key (PEM, mode 0600) and an OCI config file; return the config path."""
        key_file = folder / "oci_api_key.pem"
        key_file.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        config_file = folder / "oci_config"
        config_file.write_text(
            "[DEFAULT]\n"
            f"user={USER}\n"
            f"fingerprint={self.fingerprint}\n"
            f"key_file={key_file}\n"
            f"tenancy={TENANCY}\n"
            f"region={region}\n"
        )
        return config_file


@dataclass(frozen=True)
class RecordedRequest:
    """One request the mock received, with the outcome of its signature check."""

    method: str
    path: str
    operation: str
    signed_headers: tuple[str, ...]
    rejection: str | None

    @property
    def authenticated(self) -> bool:
        """True when the request signature was valid."""
        return self.rejection is None


def parse_authorization(value: str) -> dict[str, str]:
    """Parse ``Signature k="v",...`` into its parameters, or raise ValueError."""
    scheme, _, params = value.partition(" ")
    if scheme != "Signature":
        raise ValueError(f"authorization scheme is {scheme!r}, expected 'Signature'")
    parsed = dict(re.findall(r'(\w+)="([^"]*)"', params))
    missing = {"version", "keyId", "algorithm", "headers", "signature"} - parsed.keys()
    if missing:
        raise ValueError(f"authorization is missing {sorted(missing)}")
    return parsed


def check_request_signature(
    method: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
    api_key: ApiKey,
    now: float,
    body_headers_required: bool,
) -> str | None:
    """Check an OCI request signature and return why it is invalid, or None when valid.

    Args:
        method: the HTTP method.
        target: the path and query, as sent in the request line.
        headers: the request headers with lower-case names.
        body: the request body.
        api_key: the registered API key the request must be signed with.
        now: the mock's current time, seconds since the epoch.
        body_headers_required: whether the body headers must be signed (PUT and POST except
            Object Storage PutObject).
    """
    try:
        params = parse_authorization(headers.get("authorization", ""))
    except ValueError as error:
        return str(error)
    if params["version"] != "1" or params["algorithm"] != "rsa-sha256":
        return f"unsupported signature version {params['version']!r} or algorithm"
    if params["keyId"] != api_key.key_id:
        return f"unknown keyId {params['keyId']!r}"

    signed = params["headers"].split(" ")
    required = _GENERIC_HEADERS + (_BODY_HEADERS if body_headers_required else ())
    unsigned = [name for name in required if name not in signed]
    if unsigned:
        return f"required headers not signed: {unsigned}"

    date_value = headers.get("x-date") or headers.get("date")
    if date_value is None:
        return "date header missing"
    sent_at = email.utils.parsedate_to_datetime(date_value).timestamp()
    if abs(now - sent_at) > MAX_DATE_SKEW_SECONDS:
        return f"date {date_value!r} is more than {MAX_DATE_SKEW_SECONDS} s from the server clock"

    if "x-content-sha256" in signed:
        expected = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        if headers.get("x-content-sha256") != expected:
            return "x-content-sha256 does not match the body"
    if "content-length" in signed and headers.get("content-length") != str(len(body)):
        return "content-length does not match the body"

    lines = []
    for name in signed:
        if name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        elif name in headers:
            lines.append(f"{name}: {headers[name]}")
        else:
            return f"signed header {name!r} is not in the request"
    try:
        signature = base64.b64decode(params["signature"], validate=True)
        api_key.private_key.public_key().verify(
            signature, "\n".join(lines).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
    except (InvalidSignature, ValueError):
        return "signature does not verify with the registered API key"
    return None


@dataclass
class OciMockState:
    """What the mock stores and the faults queued per operation."""

    api_key: ApiKey
    kms_key: ec.EllipticCurvePrivateKey
    clock: Callable[[], float]
    requests: list[RecordedRequest] = field(default_factory=list)
    objects: dict[tuple[str, str, str], bytes] = field(default_factory=dict)
    retention_rules: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    release_slow: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    added_delay_seconds: float = 0.0
    sleep: Callable[[float], None] = time.sleep


class OciMock:
    """The mock server; start it with ``start()`` and stop it with ``stop()``.

    Args:
        api_key: the API key whose signatures are accepted.
        clock: the server clock used for the date check; defaults to the real time.
        added_delay_seconds: extra time before every response to ``POST /20180608/sign``, on
            top of queued faults. Each request has its own server thread, so concurrent sign
            requests are delayed in parallel, as network latency is.
        sleep: waits the added delay; defaults to ``time.sleep``. Tests pass a recorder.

    Raises:
        ValueError: when ``added_delay_seconds`` is negative.
    """

    def __init__(
        self,
        api_key: ApiKey,
        clock: Callable[[], float] | None = None,
        added_delay_seconds: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if added_delay_seconds < 0:
            raise ValueError(
                f"added_delay_seconds is {added_delay_seconds}; expected 0 or more seconds"
            )
        self.state = OciMockState(
            api_key=api_key,
            kms_key=ec.generate_private_key(ec.SECP256R1()),
            clock=clock or time.time,
            added_delay_seconds=added_delay_seconds,
            sleep=sleep,
        )
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def url(self) -> str:
        """The base URL, for example ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def kms_public_key(self) -> ec.EllipticCurvePublicKey:
        """The public half of the P-256 key the mock signs with."""
        return self.state.kms_key.public_key()

    def start(self) -> None:
        """Listen on the port used before, or on a free one the first time."""
        state = self.state

        class Handler(_Handler):
            mock_state = state

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        state.release_slow.clear()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, so that connections are refused, and release slow answers."""
        self.state.release_slow.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def inject(self, operation: str, fault: Fault, count: int = 1) -> None:
        """Answer the next ``count`` calls of ``operation`` with ``fault``."""
        with self.state.lock:
            self.state.faults[operation].extend([fault] * count)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes. With Nagle's algorithm the body waits
    # for the ACK of the headers, which the client's delayed ACK holds back by up to 40 ms
    # on Linux, so every response would be that much slower than the added delay.
    disable_nagle_algorithm = True
    mock_state: OciMockState

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        operation, args = _route(method, path)
        state = self.mock_state
        headers = {name.lower(): value for name, value in self.headers.items()}
        body_headers_required = method in ("PUT", "POST") and operation != "put_object"
        rejection = check_request_signature(
            method, self.path, headers, body, state.api_key, state.clock(), body_headers_required
        )
        signed = ()
        if "authorization" in headers:
            try:
                signed = tuple(parse_authorization(headers["authorization"])["headers"].split())
            except ValueError:
                signed = ()
        with state.lock:
            state.requests.append(RecordedRequest(method, path, operation, signed, rejection))
            queued = state.faults[operation]
            fault = queued.popleft() if queued else None

        if rejection is not None:
            self._send_error(
                401,
                "NotAuthenticated",
                "The required information to complete "
                "authentication was not provided or was incorrect.",
            )
            return
        if operation == "unknown":
            self._send_error(404, "NotAuthorizedOrNotFound", f"no route for {method} {path}")
            return
        if fault is Fault.STATUS_500:
            self._send_error(500, "InternalServerError", "injected internal error")
            return
        if fault is Fault.STATUS_429:
            self._send_error(429, "TooManyRequests", "injected throttling")
            return
        if fault is Fault.SLOW:
            state.release_slow.wait(_SLOW_ANSWER_MAX_SECONDS)
        if fault is Fault.MALFORMED_JSON:
            self._send(200, b'{"keyId": "truncated', "application/json")
            return
        handler = getattr(self, f"_op_{operation}")
        handler(body, headers, *args)

    def _op_sign(self, body: bytes, headers: dict[str, str]) -> None:
        request = json.loads(body)
        if request.get("messageType") != "DIGEST" or request.get("signingAlgorithm") != (
            "ECDSA_SHA_256"
        ):
            self._send_error(400, "InvalidParameter", "expected DIGEST and ECDSA_SHA_256")
            return
        if (request.get("keyId"), request.get("keyVersionId")) != (
            KMS_KEY_ID,
            KMS_KEY_VERSION_ID,
        ):
            self._send_error(404, "NotAuthorizedOrNotFound", "unknown key or key version")
            return
        digest = base64.b64decode(request["message"], validate=True)
        if self.mock_state.added_delay_seconds > 0:
            self.mock_state.sleep(self.mock_state.added_delay_seconds)
        der = self.mock_state.kms_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        self._send_json(
            {
                "keyId": KMS_KEY_ID,
                "keyVersionId": KMS_KEY_VERSION_ID,
                "signature": base64.b64encode(der).decode("ascii"),
                "signingAlgorithm": "ECDSA_SHA_256",
            }
        )

    def _op_get_key_version(
        self, body: bytes, headers: dict[str, str], key_id: str, version_id: str
    ) -> None:
        if (key_id, version_id) != (KMS_KEY_ID, KMS_KEY_VERSION_ID):
            self._send_error(404, "NotAuthorizedOrNotFound", "unknown key or key version")
            return
        pem = self.mock_state.kms_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._send_json(
            {
                "id": version_id,
                "keyId": key_id,
                "publicKey": pem.decode("ascii"),
                "lifecycleState": "ENABLED",
                "origin": "INTERNAL",
            }
        )

    def _op_put_object(
        self, body: bytes, headers: dict[str, str], namespace: str, bucket: str, name: str
    ) -> None:
        md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        if "content-md5" in headers and headers["content-md5"] != md5:
            self._send_error(400, "UnmatchedContentMD5", "Content-MD5 does not match the body")
            return
        key = (namespace, bucket, name)
        with self.mock_state.lock:
            exists = key in self.mock_state.objects
            if exists and headers.get("if-none-match") == "*":
                self._send_error(412, "IfNoneMatchFailed", "the object already exists")
                return
            if exists and self.mock_state.retention_rules.get((namespace, bucket)):
                self._send_error(409, "RetentionRuleViolation", "retention rule forbids overwrite")
                return
            self.mock_state.objects[key] = body
        self._send(200, b"", "application/json", {"opc-content-md5": md5, "etag": md5})

    def _op_head_object(
        self, body: bytes, headers: dict[str, str], namespace: str, bucket: str, name: str
    ) -> None:
        stored = self.mock_state.objects.get((namespace, bucket, name))
        if stored is None:
            self._send(404, b"", "application/json")
            return
        md5 = base64.b64encode(hashlib.md5(stored, usedforsecurity=False).digest()).decode()
        self._send(
            200,
            b"",
            "application/octet-stream",
            {"opc-content-md5": md5, "etag": md5},
            content_length=len(stored),
        )

    def _op_list_retention_rules(
        self, body: bytes, headers: dict[str, str], namespace: str, bucket: str
    ) -> None:
        self._send_json({"items": self.mock_state.retention_rules.get((namespace, bucket), [])})

    def _op_put_logs(self, body: bytes, headers: dict[str, str], log_id: str) -> None:
        details = json.loads(body)
        with self.mock_state.lock:
            for batch in details["logEntryBatches"]:
                for entry in batch["entries"]:
                    self.mock_state.logs[log_id].append(
                        {"source": batch["source"], "type": batch["type"], **entry}
                    )
        self._send(200, b"", "application/json")

    def _send_json(self, value: dict[str, Any]) -> None:
        self._send(200, json.dumps(value).encode("utf-8"), "application/json")

    def _send_error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"code": code, "message": message}).encode("utf-8")
        self._send(status, body, "application/json")

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        extra: dict[str, str] | None = None,
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("opc-request-id", "mock")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        length = len(body) if content_length is None else content_length
        self.send_header("content-length", str(length))
        try:
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first, which is what a slow-answer fault is for.
            self.close_connection = True


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/20180608/sign$"), "sign"),
    ("GET", re.compile(r"^/20180608/keys/([^/]+)/keyVersions/([^/]+)$"), "get_key_version"),
    ("PUT", re.compile(r"^/n/([^/]+)/b/([^/]+)/o/(.+)$"), "put_object"),
    ("HEAD", re.compile(r"^/n/([^/]+)/b/([^/]+)/o/(.+)$"), "head_object"),
    ("GET", re.compile(r"^/n/([^/]+)/b/([^/]+)/retentionRules$"), "list_retention_rules"),
    ("POST", re.compile(r"^/20200831/logs/([^/]+)/actions/push$"), "put_logs"),
]


def _route(method: str, path: str) -> tuple[str, tuple[str, ...]]:
    for route_method, pattern, operation in _ROUTES:
        match = pattern.match(path)
        if route_method == method and match:
            return operation, tuple(unquote(group) for group in match.groups())
    return "unknown", ()
