"""Build the deployment checkers once: helm and deploy-check, both into .bin (GOBIN).

helm is built with `go install` at the pinned version only when .bin/helm is missing. deploy-check
is rebuilt when any of its sources is newer than the binary.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = ROOT / ".bin"
CHART = ROOT / "deploy" / "helm" / "ztmint"
TERRAFORM = ROOT / "deploy" / "terraform" / "oci"
CHECK_SOURCE = ROOT / "deploy" / "check"
HELM_MODULE = "helm.sh/helm/v4/cmd/helm@v4.3.2"
# The production values name a ClusterIssuer that the cluster operator creates.
PRODUCTION_CLUSTER_ISSUER = "ztmint-root"


def _go_env() -> dict[str, str]:
    return {**os.environ, "GOBIN": str(BIN), "GOFLAGS": "-mod=mod"}


@pytest.fixture(scope="session")
def helm() -> Path:
    """Path of the helm binary, built with `go install` if missing."""
    binary = BIN / "helm"
    if not binary.exists():
        BIN.mkdir(exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["go", "install", HELM_MODULE],  # noqa: S607 - go from PATH, like the Makefile
            check=True,
            env=_go_env(),
        )
    return binary


@pytest.fixture(scope="session")
def deploy_check() -> Path:
    """Path of deploy-check, rebuilt when its Go sources changed."""
    binary = BIN / "deploy-check"
    sources = [*CHECK_SOURCE.glob("*.go"), CHECK_SOURCE / "go.mod", CHECK_SOURCE / "go.sum"]
    newest = max(path.stat().st_mtime for path in sources)
    if not binary.exists() or binary.stat().st_mtime < newest:
        BIN.mkdir(exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed arguments, no shell
            ["go", "build", "-o", str(binary), "."],  # noqa: S607 - go from PATH
            cwd=CHECK_SOURCE,
            check=True,
            env=_go_env(),
        )
    return binary
