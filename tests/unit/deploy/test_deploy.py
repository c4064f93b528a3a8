"""The Helm chart and the Terraform configuration: helm, deploy-check and secure defaults."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.conftest import CHART, PRODUCTION_CLUSTER_ISSUER, ROOT, TERRAFORM

PRODUCTION_VALUES = ["-f", str(CHART / "values-production.yaml")]
# The values an operator adds with --set at install time (docs/DEPLOY.md), as placeholders.
INSTALL_VALUES = ["-f", str(Path(__file__).with_name("install-values.yaml"))]
VALUES = {
    "default": [],
    "production": PRODUCTION_VALUES + INSTALL_VALUES,
}
# The Secret that values-production.yaml names for ZTMINT_DATABASE_URL; the operator creates it.
PRODUCTION_DATABASE_SECRET = "ztmint-database"
AUTHZ_TLS_FLAGS = [
    "--tls-cert=/etc/ztmint/authz-tls/tls.crt",
    "--tls-key=/etc/ztmint/authz-tls/tls.key",
    "--tls-client-ca=/etc/ztmint/authz-tls/ca.crt",
]


def render(helm: Path, values: str) -> str:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(helm), "template", "ztmint", str(CHART), "--namespace", "ztmint", *VALUES[values]],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def run_check(deploy_check: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(deploy_check), *args], capture_output=True, text=True
    )


def check_manifest(
    deploy_check: Path, tmp_path: Path, text: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(text)
    return run_check(
        deploy_check,
        "k8s",
        "-external-cluster-issuer",
        PRODUCTION_CLUSTER_ISSUER,
        "-external-secret",
        PRODUCTION_DATABASE_SECRET,
        str(path),
    )


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Deployment":
            specs.append((name, doc["spec"]["template"]["spec"]))
        if doc["kind"] == "RayCluster":
            specs.append((name + " head", doc["spec"]["headGroupSpec"]["template"]["spec"]))
            for group in doc["spec"]["workerGroupSpecs"]:
                specs.append((f"{name} {group['groupName']}", group["template"]["spec"]))
    return specs


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest, helm: Path) -> tuple[str, str]:
    return request.param, render(helm, request.param)


@pytest.mark.parametrize("values", sorted(VALUES))
def test_helm_lint_passes(helm: Path, values: str) -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(helm), "lint", "--strict", str(CHART), *VALUES[values]], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_manifests_pass_deploy_check(
    deploy_check: Path, tmp_path: Path, rendered: tuple[str, str]
) -> None:
    result = check_manifest(deploy_check, tmp_path, rendered[1])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("chart_file", "source"),
    [
        ("files/envoy/sidecar.yaml", "envoy/sidecar.yaml"),
        ("files/envoy/mint-api.yaml", "envoy/mint-api.yaml"),
        ("files/envoy/sds/workload-certificate.yaml", "envoy/sds/workload-certificate.yaml"),
        ("files/envoy/sds/mesh-ca.yaml", "envoy/sds/mesh-ca.yaml"),
        ("files/opa/authz.rego", "opa/authz/authz.rego"),
        ("files/opa/data.json", "opa/authz/data.json"),
        ("files/opa/mint/mint.rego", "opa/mint/mint.rego"),
        ("files/opa/mint/data.json", "opa/mint/data.json"),
    ],
)
def test_chart_files_match_repository(chart_file: str, source: str) -> None:
    assert (CHART / chart_file).read_bytes() == (ROOT / source).read_bytes(), (
        f"{chart_file} differs from {source}; copy it again into the chart"
    )


def containers_named(docs: list[dict[str, Any]], container_name: str) -> list[dict[str, Any]]:
    return [
        container
        for _, spec in pod_specs(docs)
        for container in spec["containers"]
        if container["name"] == container_name
    ]


def mint_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(spec for name, spec in pod_specs(docs) if name == "Deployment/ztmint-ztmint-mint")


def test_authz_sidecars_serve_mtls(rendered: tuple[str, str]) -> None:
    docs = documents(rendered[1])
    sidecars = containers_named(docs, "authz")
    assert sidecars
    for container in sidecars:
        for flag in AUTHZ_TLS_FLAGS:
            assert flag in container["command"], flag
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert mounts.get("/etc/ztmint/authz-tls") == "authz-tls"


def test_authz_tls_volume_is_authz_certificate(rendered: tuple[str, str]) -> None:
    for name, spec in pod_specs(documents(rendered[1])):
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        if "authz-tls" in volumes:
            assert volumes["authz-tls"]["secret"]["secretName"] == "ztmint-ztmint-authz-tls", name


def test_mint_opa_loads_both_policies(rendered: tuple[str, str]) -> None:
    spec = mint_pod(documents(rendered[1]))
    opa = next(container for container in spec["containers"] if container["name"] == "opa")
    assert "authz:/policy/authz" in opa["args"]
    assert "mint:/policy/mint" in opa["args"]
    mint = next(container for container in spec["containers"] if container["name"] == "mint")
    env = {item["name"]: item.get("value") for item in mint["env"]}
    assert env["ZTMINT_OPA_URL"] == "http://127.0.0.1:8181"


def test_production_database_url_from_secret_reference(helm: Path) -> None:
    spec = mint_pod(documents(render(helm, "production")))
    mint = next(container for container in spec["containers"] if container["name"] == "mint")
    entry = next(item for item in mint["env"] if item["name"] == "ZTMINT_DATABASE_URL")
    assert "value" not in entry
    assert entry["valueFrom"]["secretKeyRef"] == {"name": PRODUCTION_DATABASE_SECRET, "key": "url"}


def test_container_env_holds_no_literal_secret(rendered: tuple[str, str]) -> None:
    secret_names = ("DATABASE_URL", "PASSWORD", "PIN", "SECRET", "TOKEN")
    for name, spec in pod_specs(documents(rendered[1])):
        for container in spec["containers"]:
            for item in container.get("env", []):
                where = f"{name} {container['name']} {item['name']}"
                if any(part in item["name"] for part in secret_names):
                    assert "value" not in item, where
    assert "postgresql://" not in rendered[1]


def mint_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Return the mint container's environment, with each Secret reference replaced."""
    mint = next(c for c in mint_pod(docs)["containers"] if c["name"] == "mint")
    env = {}
    for item in mint["env"]:
        if "valueFrom" in item:
            env[item["name"]] = "postgresql://ztmint:placeholder@db.example:5432/ztmint"
        else:
            env[item["name"]] = item["value"]
    return env


def test_rendered_mint_settings_are_complete(rendered: tuple[str, str]) -> None:
    from mint.server import server_settings_from_env
    from mint.settings import settings_from_env

    env = mint_environment(documents(rendered[1]))
    settings = settings_from_env(env)
    server = server_settings_from_env(env)
    assert server.host == "127.0.0.1"
    assert server.ray_address == "ray://ztmint-ztmint-ray-head-svc:10001"
    assert settings.port == 8700
    assert settings.guard.opa_url == "http://127.0.0.1:8181"
    assert settings.user_verification == "required"
    assert settings.allow_self_attestation is False


def test_production_mint_settings_use_oci(helm: Path) -> None:
    from mint.settings import settings_from_env

    settings = settings_from_env(mint_environment(documents(render(helm, "production"))))
    assert settings.kms.backend == "oci"
    assert settings.kms.oci is not None
    assert settings.kms.oci.auth.method == "workload"
    assert settings.shipping is not None
    assert settings.shipping.bucket == "ztmint-audit"
    assert settings.database_url is not None


def test_production_values_require_install_settings(helm: Path) -> None:
    result = subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [str(helm), "template", "ztmint", str(CHART), *PRODUCTION_VALUES],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "needs oci.kmsKeyId" in result.stderr


def test_service_account_token_only_in_mint(rendered: tuple[str, str]) -> None:
    token_path = "/var/run/secrets/kubernetes.io/serviceaccount"
    expected = {"production": ["mint"], "default": []}[rendered[0]]
    mounted = [
        container["name"]
        for _, spec in pod_specs(documents(rendered[1]))
        for container in spec["containers"]
        if any(m["mountPath"] == token_path for m in container.get("volumeMounts", []))
    ]
    assert mounted == expected


def test_prometheus_policy_opens_only_metrics_ports(helm: Path) -> None:
    policy = next(
        doc
        for doc in documents(render(helm, "production"))
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"].endswith("prometheus-ingress")
    )
    (rule,) = policy["spec"]["ingress"]
    assert sorted(port["port"] for port in rule["ports"]) == [8090, 9464]
    (source,) = rule["from"]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_default_values_render_no_prometheus_policy(helm: Path) -> None:
    names = [doc["metadata"]["name"] for doc in documents(render(helm, "default"))]
    assert "ztmint-ztmint-prometheus-ingress" not in names


def test_envoy_configs_fail_closed(rendered: tuple[str, str]) -> None:
    for doc in documents(rendered[1]):
        if doc["kind"] != "ConfigMap" or "envoy.yaml" not in doc["data"]:
            continue
        text = doc["data"]["envoy.yaml"]
        assert "failure_mode_allow: true" not in text, doc["metadata"]["name"]
        assert "failure_mode_allow: false" in text, doc["metadata"]["name"]


def test_envoy_listeners_require_client_certificates(rendered: tuple[str, str]) -> None:
    for doc in documents(rendered[1]):
        if doc["kind"] != "ConfigMap" or "envoy.yaml" not in doc["data"]:
            continue
        config = yaml.safe_load(doc["data"]["envoy.yaml"])
        for listener in config["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                tls = chain["transport_socket"]["typed_config"]
                assert tls["@type"].endswith("DownstreamTlsContext"), listener["name"]
                assert tls["require_client_certificate"] is True, listener["name"]


def test_services_expose_only_envoy_mtls(rendered: tuple[str, str]) -> None:
    for doc in documents(rendered[1]):
        if doc["kind"] == "Service":
            ports = [(port["port"], port["targetPort"]) for port in doc["spec"]["ports"]]
            assert ports == [(15443, "mtls")], doc["metadata"]["name"]


def test_service_accounts_mount_no_token(rendered: tuple[str, str]) -> None:
    docs = documents(rendered[1])
    for doc in docs:
        if doc["kind"] == "ServiceAccount":
            assert doc["automountServiceAccountToken"] is False, doc["metadata"]["name"]
    for name, spec in pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False, name


def test_release_grants_no_kubernetes_api_roles(rendered: tuple[str, str]) -> None:
    kinds = {doc["kind"] for doc in documents(rendered[1])}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def test_networkpolicy_default_deny_present(rendered: tuple[str, str]) -> None:
    deny = [
        doc
        for doc in documents(rendered[1])
        if doc["kind"] == "NetworkPolicy"
        and sorted(doc["spec"]["policyTypes"]) == ["Egress", "Ingress"]
        and "ingress" not in doc["spec"]
        and "egress" not in doc["spec"]
    ]
    assert len(deny) == 1
    assert deny[0]["spec"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/instance": "ztmint"}
    }


def test_containers_run_restricted(rendered: tuple[str, str]) -> None:
    for name, spec in pod_specs(documents(rendered[1])):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            where = f"{name} {container['name']}"
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in context["capabilities"], where


def test_ray_workers_pin_confidential_fault_domains(rendered: tuple[str, str]) -> None:
    cluster = next(doc for doc in documents(rendered[1]) if doc["kind"] == "RayCluster")
    groups = cluster["spec"]["workerGroupSpecs"]
    fault_domains = [group["labels"]["ztmint.io/fault-domain"] for group in groups]
    assert fault_domains == ["FAULT-DOMAIN-1", "FAULT-DOMAIN-2", "FAULT-DOMAIN-3"]
    for group, fault_domain in zip(groups, fault_domains, strict=True):
        assert group["labels"]["ztmint.io/node-group"] == "confidential", group["groupName"]
        assert "labels" not in group["rayStartParams"], group["groupName"]
        selector = group["template"]["spec"]["nodeSelector"]
        assert selector == {
            "ztmint.io/node-group": "confidential",
            "oci.oraclecloud.com/fault-domain": fault_domain,
        }


def test_ray_processes_use_tls(rendered: tuple[str, str]) -> None:
    docs = documents(rendered[1])
    ray_containers = [
        container
        for name, spec in pod_specs(docs)
        for container in spec["containers"]
        if container["name"] in {"ray-head", "ray-worker", "mint"}
    ]
    assert ray_containers
    for container in ray_containers:
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["RAY_USE_TLS"] == "1", container["name"]
        assert env["RAY_TLS_CA_CERT"] == "/etc/ray/tls/ca.crt", container["name"]


def test_every_certificate_rotates_its_key(rendered: tuple[str, str]) -> None:
    certificates = [doc for doc in documents(rendered[1]) if doc["kind"] == "Certificate"]
    ids = {uri for doc in certificates for uri in doc["spec"].get("uris", [])}
    for identity in ("mint", "authz", "ray-head", "ray-worker"):
        assert f"spiffe://ztmint.internal/{identity}" in ids, identity
    for doc in certificates:
        assert doc["spec"]["privateKey"]["rotationPolicy"] == "Always", doc["metadata"]["name"]


def test_rendered_manifests_hold_no_secret(rendered: tuple[str, str]) -> None:
    text = rendered[1]
    assert "kind: Secret" not in text
    assert "PRIVATE KEY" not in text
    assert "ocid1." not in text


BROKEN_MANIFESTS = {
    "unknown_field": (
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountToken: false\n",
        "unknown field",
    ),
    "secret": (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {k: v}\n",
        "secrets must not be in manifests",
    ),
    "selector_mismatch": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
        "spec:\n  selector: {app: nothing}\n  ports: [{port: 1}]\n",
        "matches no pod",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MANIFESTS))
def test_deploy_check_rejects_broken_manifest(
    deploy_check: Path, tmp_path: Path, helm: Path, case: str
) -> None:
    extra, message = BROKEN_MANIFESTS[case]
    result = check_manifest(deploy_check, tmp_path, render(helm, "default") + "---\n" + extra)
    assert result.returncode == 1
    assert message in result.stdout


def test_deploy_check_rejects_unknown_database_secret(
    deploy_check: Path, tmp_path: Path, helm: Path
) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(render(helm, "production"))
    result = run_check(
        deploy_check, "k8s", "-external-cluster-issuer", PRODUCTION_CLUSTER_ISSUER, str(path)
    )
    assert result.returncode == 1
    assert f'Secret "{PRODUCTION_DATABASE_SECRET}" is not known' in result.stdout


def test_deploy_check_rejects_ray_start_labels(
    deploy_check: Path, tmp_path: Path, helm: Path
) -> None:
    text = render(helm, "default").replace(
        "    rayStartParams:\n", '    rayStartParams:\n      labels: "a=b"\n', 1
    )
    result = check_manifest(deploy_check, tmp_path, text)
    assert result.returncode == 1
    assert "rejected by KubeRay" in result.stdout


def test_terraform_passes_deploy_check(deploy_check: Path) -> None:
    result = run_check(deploy_check, "terraform", str(TERRAFORM))
    assert result.returncode == 0, result.stdout + result.stderr


BROKEN_TERRAFORM = {
    "undeclared_variable": (
        'output "x" {\n  description = "x"\n  value = var.nope\n}\n',
        "var.nope",
    ),
    "undeclared_resource": (
        'output "x" {\n  description = "x"\n  value = oci_core_vcn.other.id\n}\n',
        "oci_core_vcn.other",
    ),
    "missing_description": ('variable "y" {\n  type = string\n}\n', "has no description"),
    "literal_ocid": (
        'locals {\n  c = "ocid1.compartment.oc1..aaaaexample"\n}\n',
        "literal OCID",
    ),
    "literal_password": (
        'locals {\n  admin_password = "hunter2"\n}\n',
        "literal credential",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TERRAFORM))
def test_deploy_check_rejects_broken_terraform(
    deploy_check: Path, tmp_path: Path, case: str
) -> None:
    copy = tmp_path / "oci"
    shutil.copytree(TERRAFORM, copy)
    extra, message = BROKEN_TERRAFORM[case]
    (copy / "broken.tf").write_text(extra)
    result = run_check(deploy_check, "terraform", str(copy))
    assert result.returncode == 1
    assert message in result.stdout


def test_confidential_nodes_encrypt_memory() -> None:
    text = (TERRAFORM / "oke.tf").read_text()
    block = text[text.index("platform_config {") : text.index("}", text.index("platform_config {"))]
    assert 'type                         = "AMD_VM"' in block
    assert "is_memory_encryption_enabled = true" in block


def test_receipt_key_is_hsm_p256() -> None:
    text = (TERRAFORM / "kms.tf").read_text()
    block = text[
        text.index('resource "oci_kms_key" "receipt"') : text.index(
            'resource "oci_kms_key" "storage"'
        )
    ]
    assert 'protection_mode     = "HSM"' in block
    assert 'curve_id  = "NIST_P256"' in block
