"""Check the Envoy sidecar configurations in envoy/ against Envoy's own schema.

Two independent checkers load every file: envoy/check/envoy_schema.py (the xds-protos Python
types plus the protoc-gen-validate rules from their descriptors) and envoy/check (Go,
go-control-plane's types and generated ValidateAll). Deliberately broken copies must fail both.
"""

from __future__ import annotations

import copy
import importlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import message

from authz.decision import UPSTREAM_HEADERS

ROOT = Path(__file__).resolve().parents[3]
ENVOY_DIR = ROOT / "envoy"
CHECK_DIR = ENVOY_DIR / "check"

# envoy/check is a Go module with two Python scripts beside it, not a package.
sys.path.insert(0, str(CHECK_DIR))
envoy_schema = importlib.import_module("envoy_schema")
pgv_rules = importlib.import_module("pgv_rules")

BOOTSTRAP_FILES = sorted(ENVOY_DIR.glob("*.yaml"))
SDS_FILES = sorted((ENVOY_DIR / "sds").glob("*.yaml"))
BOOTSTRAP = envoy_schema.MESSAGE_TYPES["bootstrap"]
DISCOVERY_RESPONSE = envoy_schema.MESSAGE_TYPES["discovery-response"]

EXT_AUTHZ = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_AUTHZ_PER_ROUTE = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
HTTP_CONNECTION_MANAGER = (
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
DOWNSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
SDS_SECRET_CONFIG = "envoy.extensions.transport_sockets.tls.v3.SdsSecretConfig"  # noqa: S105
UPSTREAM_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
MAX_EXT_AUTHZ_TIMEOUT_NANOS = 1_000_000_000


def load(path: Path) -> message.Message:
    return envoy_schema.load_config_file(path, BOOTSTRAP)


def walk(root: message.Message) -> Iterator[message.Message]:
    """Yield every message below root, with each Any replaced by its unpacked content."""
    stack = [root]
    while stack:
        current = stack.pop()
        if current.DESCRIPTOR.full_name == "google.protobuf.Any":
            current = pgv_rules.unpack_any(current)
        yield current
        for field, value in current.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.message_type.GetOptions().map_entry:
                stack.extend(v for v in value.values() if isinstance(v, message.Message))
            elif field.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)


def find(root: message.Message, full_name: str) -> list[message.Message]:
    return [item for item in walk(root) if item.DESCRIPTOR.full_name == full_name]


def count_any(root: message.Message) -> int:
    count = 0
    for item in walk(root):
        for field, value in item.ListFields():
            if field.type == field.TYPE_MESSAGE and field.message_type.full_name == (
                "google.protobuf.Any"
            ):
                count += len(value) if field.is_repeated else 1
    return count


def file_id(path: Path) -> str:
    return path.name


@pytest.fixture(scope="session")
def envoy_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the Go checker into a temporary folder, once per session."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not on PATH, so the Go checker in envoy/check cannot be built")
    binary = tmp_path_factory.mktemp("envoy-check") / "envoy-check"
    build = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [go, "-C", str(CHECK_DIR), "build", "-o", str(binary), "."],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if build.returncode != 0:
        pytest.fail(f"go build of envoy/check failed:\n{build.stderr}")
    return binary


def run_envoy_check(binary: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(binary), *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def python_problems(document: dict[str, Any]) -> list[str]:
    """Return what the Python checker reports for a bootstrap document, parse errors included."""
    try:
        violations = envoy_schema.check_config(document, BOOTSTRAP)
    except envoy_schema.ConfigParseError as error:
        return [str(error)]
    return [str(violation) for violation in violations]


def test_envoy_dir_has_expected_configurations() -> None:
    names = {path.name for path in BOOTSTRAP_FILES}
    assert {"sidecar.yaml", "sidecar-http-authz.yaml", "mint-api.yaml"} <= names


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_bootstrap_loads_with_every_any_resolved(path: Path) -> None:
    bootstrap = load(path)

    unpacked = list(walk(bootstrap))

    assert count_any(bootstrap) >= 5
    assert all(item.DESCRIPTOR.full_name != "google.protobuf.Any" for item in unpacked)


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_bootstrap_has_no_schema_violations(path: Path) -> None:
    assert [str(v) for v in envoy_schema.check_file(path, BOOTSTRAP)] == []


@pytest.mark.parametrize("path", SDS_FILES, ids=file_id)
def test_sds_file_loads_as_discovery_response(path: Path) -> None:
    response = envoy_schema.load_config_file(path, DISCOVERY_RESPONSE)

    secrets = [pgv_rules.unpack_any(resource) for resource in response.resources]

    assert [s.DESCRIPTOR.full_name for s in secrets] == [
        "envoy.extensions.transport_sockets.tls.v3.Secret"
    ]
    assert pgv_rules.find_violations(response) == []


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_ext_authz_fails_closed(path: Path) -> None:
    filters = find(load(path), EXT_AUTHZ)

    assert len(filters) == 1
    assert filters[0].failure_mode_allow is False
    assert filters[0].status_on_error.code == 403


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_ext_authz_timeout_is_set(path: Path) -> None:
    ext_authz = find(load(path), EXT_AUTHZ)[0]
    if ext_authz.HasField("grpc_service"):
        timeout = ext_authz.grpc_service.timeout
    else:
        timeout = ext_authz.http_service.server_uri.timeout

    nanos = timeout.seconds * 1_000_000_000 + timeout.nanos

    assert 0 < nanos <= MAX_EXT_AUTHZ_TIMEOUT_NANOS


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_ext_authz_buffers_whole_body_or_rejects(path: Path) -> None:
    body = find(load(path), EXT_AUTHZ)[0].with_request_body

    assert 0 < body.max_request_bytes <= 65536
    assert body.allow_partial_message is False


def test_ext_authz_grpc_mode_sends_peer_certificate() -> None:
    ext_authz = find(load(ENVOY_DIR / "sidecar.yaml"), EXT_AUTHZ)[0]

    assert ext_authz.grpc_service.envoy_grpc.cluster_name == "ztmint_authz"
    assert ext_authz.include_peer_certificate is True
    assert ext_authz.clear_route_cache is False


def test_ext_authz_http_mode_forwards_token_and_receipt() -> None:
    ext_authz = find(load(ENVOY_DIR / "sidecar-http-authz.yaml"), EXT_AUTHZ)[0]

    allowed = {pattern.exact for pattern in ext_authz.allowed_headers.patterns}

    assert ext_authz.http_service.server_uri.cluster == "ztmint_authz_http"
    assert {"authorization", "x-kms-sig"} <= allowed


def test_ext_authz_http_mode_copies_identity_headers_upstream() -> None:
    ext_authz = find(load(ENVOY_DIR / "sidecar-http-authz.yaml"), EXT_AUTHZ)[0]
    response = ext_authz.http_service.authorization_response

    upstream = {pattern.exact for pattern in response.allowed_upstream_headers.patterns}

    assert upstream == set(UPSTREAM_HEADERS)


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_every_listener_requires_client_certificate(path: Path) -> None:
    bootstrap = load(path)
    chains = [chain for lst in bootstrap.static_resources.listeners for chain in lst.filter_chains]

    contexts = find(bootstrap, DOWNSTREAM_TLS)

    assert len(contexts) == len(chains)
    assert all(context.require_client_certificate.value for context in contexts)


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_tls_peers_are_checked_against_mesh_ca(path: Path) -> None:
    bootstrap = load(path)

    contexts = [c.common_tls_context for c in find(bootstrap, DOWNSTREAM_TLS)]
    contexts += [c.common_tls_context for c in find(bootstrap, UPSTREAM_TLS)]

    assert all(
        c.combined_validation_context.validation_context_sds_secret_config.name == "mesh_ca"
        for c in contexts
    )
    assert all(
        c.combined_validation_context.default_validation_context.match_typed_subject_alt_names
        for c in contexts
    )


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_tls_secrets_reload_from_watched_files(path: Path) -> None:
    secret_configs = find(load(path), SDS_SECRET_CONFIG)

    sources = [config.sds_config.path_config_source for config in secret_configs]

    assert secret_configs
    assert all(source.path.startswith("/etc/envoy/sds/") for source in sources)
    assert all(source.watched_directory.path == "/etc/envoy/sds" for source in sources)


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_http_connection_manager_normalizes_paths(path: Path) -> None:
    managers = find(load(path), HTTP_CONNECTION_MANAGER)

    assert managers
    for manager in managers:
        enums = type(manager)
        assert manager.normalize_path.value is True
        assert manager.merge_slashes is True
        assert manager.path_with_escaped_slashes_action == enums.REJECT_REQUEST
        assert manager.common_http_protocol_options.headers_with_underscores_action == (
            manager.common_http_protocol_options.REJECT_REQUEST
        )
        assert manager.forward_client_cert_details == enums.SANITIZE_SET


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_authz_cluster_uses_tls_on_loopback(path: Path) -> None:
    clusters = load(path).static_resources.clusters
    (authz,) = [cluster for cluster in clusters if cluster.name.startswith("ztmint_authz")]

    tls = pgv_rules.unpack_any(authz.transport_socket.typed_config)
    endpoint = authz.load_assignment.endpoints[0].lb_endpoints[0].endpoint

    assert tls.DESCRIPTOR.full_name == UPSTREAM_TLS
    assert endpoint.address.socket_address.address == "127.0.0.1"


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_authz_cluster_protocol_matches_authz_service(path: Path) -> None:
    bootstrap = load(path)
    ext_authz = find(bootstrap, EXT_AUTHZ)[0]
    clusters = bootstrap.static_resources.clusters
    (authz,) = [cluster for cluster in clusters if cluster.name.startswith("ztmint_authz")]
    options = pgv_rules.unpack_any(authz.typed_extension_protocol_options[UPSTREAM_HTTP_OPTIONS])
    tls = pgv_rules.unpack_any(authz.transport_socket.typed_config)

    # gRPC needs HTTP/2; authz.http_service serves HTTP/1.1 only.
    grpc_mode = ext_authz.HasField("grpc_service")
    expected_protocol = "http2_protocol_options" if grpc_mode else "http_protocol_options"
    expected_alpn = ["h2"] if grpc_mode else ["http/1.1"]

    assert options.explicit_http_config.HasField(expected_protocol)
    assert list(tls.common_tls_context.alpn_protocols) == expected_alpn


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_admin_listens_on_loopback_only(path: Path) -> None:
    assert load(path).admin.address.socket_address.address == "127.0.0.1"


def test_mint_api_exempts_only_webauthn_routes() -> None:
    manager = find(load(ENVOY_DIR / "mint-api.yaml"), HTTP_CONNECTION_MANAGER)[0]
    routes = manager.route_config.virtual_hosts[0].routes

    exempt = set()
    for route in routes:
        per_route = route.typed_per_filter_config.get(EXT_AUTHZ_FILTER)
        if per_route is not None and pgv_rules.unpack_any(per_route).disabled:
            exempt.add(route.match.path)

    assert exempt == {
        "/register",
        "/register/complete",
        "/assert",
        "/mint",
        "/.well-known/jwks.json",
    }
    assert routes[-1].match.prefix == "/"
    assert EXT_AUTHZ_FILTER not in routes[-1].typed_per_filter_config


def test_mint_api_exemptions_use_ext_authz_per_route() -> None:
    bootstrap = load(ENVOY_DIR / "mint-api.yaml")

    per_route = find(bootstrap, EXT_AUTHZ_PER_ROUTE)

    assert len(per_route) == 5
    assert all(config.disabled for config in per_route)


def _ext_authz_config(document: dict[str, Any]) -> dict[str, Any]:
    listener = document["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return manager["http_filters"][0]["typed_config"]


def _manager_config(document: dict[str, Any]) -> dict[str, Any]:
    listener = document["static_resources"]["listeners"][0]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def _misspell_field(document: dict[str, Any]) -> None:
    config = _ext_authz_config(document)
    config["failure_mode_alow"] = config.pop("failure_mode_allow")


def _bad_enum_value(document: dict[str, Any]) -> None:
    _manager_config(document)["path_with_escaped_slashes_action"] = "REJECT"


def _negative_timeout(document: dict[str, Any]) -> None:
    _ext_authz_config(document)["grpc_service"]["timeout"] = "-0.25s"


def _missing_cluster_name(document: dict[str, Any]) -> None:
    del _ext_authz_config(document)["grpc_service"]["envoy_grpc"]["cluster_name"]


def _missing_transport_socket_type(document: dict[str, Any]) -> None:
    chain = document["static_resources"]["listeners"][0]["filter_chains"][0]
    chain["transport_socket"]["typed_config"]["@type"] = (
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContex"
    )


def _negative_max_request_bytes(document: dict[str, Any]) -> None:
    _ext_authz_config(document)["with_request_body"]["max_request_bytes"] = 0


BROKEN_COPIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "misspelled_field": _misspell_field,
    "bad_enum_value": _bad_enum_value,
    "negative_timeout": _negative_timeout,
    "missing_required_field": _missing_cluster_name,
    "misspelled_any_type": _missing_transport_socket_type,
    "zero_max_request_bytes": _negative_max_request_bytes,
}


def broken_sidecar(mutation: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = yaml.safe_load((ENVOY_DIR / "sidecar.yaml").read_text(encoding="utf-8"))
    # Deep copy, because YAML anchors share one dict between the places that use them.
    document = copy.deepcopy(document)
    mutation(document)
    return document


def test_unbroken_sidecar_passes_python_check() -> None:
    assert python_problems(broken_sidecar(lambda document: None)) == []


@pytest.mark.parametrize("name", sorted(BROKEN_COPIES))
def test_python_check_rejects_broken_copy(name: str) -> None:
    assert python_problems(broken_sidecar(BROKEN_COPIES[name])) != []


def test_python_check_rejects_missing_required_http_uri_timeout() -> None:
    document = yaml.safe_load((ENVOY_DIR / "sidecar-http-authz.yaml").read_text(encoding="utf-8"))
    del _ext_authz_config(document)["http_service"]["server_uri"]["timeout"]

    problems = python_problems(document)

    assert any(problem.endswith("server_uri.timeout: value is required") for problem in problems)


@pytest.mark.parametrize("name", sorted(BROKEN_COPIES))
def test_go_check_rejects_broken_copy(name: str, envoy_check: Path, tmp_path: Path) -> None:
    broken = tmp_path / f"{name}.yaml"
    broken.write_text(yaml.safe_dump(broken_sidecar(BROKEN_COPIES[name])), encoding="utf-8")

    result = run_envoy_check(envoy_check, str(broken))

    assert result.returncode == 1
    assert "OK" not in result.stdout


def test_go_check_accepts_every_bootstrap(envoy_check: Path) -> None:
    result = run_envoy_check(envoy_check, *map(str, BOOTSTRAP_FILES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK\n") == len(BOOTSTRAP_FILES)


def test_go_check_accepts_every_sds_file(envoy_check: Path) -> None:
    result = run_envoy_check(envoy_check, "-message", "discovery-response", *map(str, SDS_FILES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK\n") == len(SDS_FILES)


def test_go_check_rejects_missing_arguments(envoy_check: Path) -> None:
    assert run_envoy_check(envoy_check).returncode == 2


@pytest.mark.parametrize("path", BOOTSTRAP_FILES, ids=file_id)
def test_envoy_validate_mode_accepts_file(path: Path) -> None:
    envoy = shutil.which("envoy")
    if envoy is None:
        pytest.skip("envoy is not on PATH; the schema checks above stand in for --mode validate")
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [envoy, "--mode", "validate", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_load_config_file_rejects_invalid_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("static_resources: [\n", encoding="utf-8")

    with pytest.raises(envoy_schema.ConfigParseError, match="invalid YAML"):
        envoy_schema.load_config_file(broken, BOOTSTRAP)


def test_load_config_file_rejects_non_mapping(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- admin\n", encoding="utf-8")

    expected = "but a mapping of .* fields is expected"
    with pytest.raises(envoy_schema.ConfigParseError, match=expected):
        envoy_schema.load_config_file(listing, BOOTSTRAP)


def test_unpack_any_rejects_unknown_type() -> None:
    from google.protobuf import any_pb2

    unknown = any_pb2.Any(type_url="type.googleapis.com/ztmint.NoSuchMessage")

    with pytest.raises(pgv_rules.RuleError, match="not in the descriptor pool"):
        pgv_rules.unpack_any(unknown)


def test_find_violations_rejects_unimplemented_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    reduced = dict(pgv_rules.SUPPORTED_RULES)
    reduced["string"] = reduced["string"] - {"min_len"}
    monkeypatch.setattr(pgv_rules, "SUPPORTED_RULES", reduced)

    with pytest.raises(pgv_rules.UnsupportedRuleError, match=r"\['min_len'\]"):
        envoy_schema.check_file(ENVOY_DIR / "sidecar.yaml", BOOTSTRAP)


def test_python_cli_reports_ok_for_every_bootstrap() -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [sys.executable, str(CHECK_DIR / "envoy_schema.py"), *map(str, BOOTSTRAP_FILES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK\n") == len(BOOTSTRAP_FILES)
