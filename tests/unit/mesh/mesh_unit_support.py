"""Helpers shared by the signer mesh unit tests: in-process signers wired to a coordinator."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.coordinator import CoordinatorCore, CoordinatorSettings
from actors.sealing import FileSealingKeyProvider, ShareStore
from actors.signer import SignerCore
from actors.transport import LocalSignerTransport
from authz.formats import TokenClaims, token_signing_input
from authz.jwk import okp_ed25519_jwk, thumbprint


def share_store(state_dir: Path) -> ShareStore:
    """Return the development share store of ``state_dir``."""
    return ShareStore(state_dir, FileSealingKeyProvider(state_dir))


def token_message(group_public_key: bytes, ttl: int = 900, iat: int = 1_800_000_000) -> bytes:
    """Build a token signing input for ``group_public_key`` with authz.formats."""
    claims = TokenClaims(
        iss="https://mint.example",
        sub="alice@example.com",
        aud="billing",
        scopes=("invoices:read",),
        iat=iat,
        ttl=ttl,
        jti="jti-0001",
    )
    return token_signing_input(claims, thumbprint(okp_ed25519_jwk(group_public_key)))


class SwitchableTransport(LocalSignerTransport):
    """Local transport whose signers can be replaced and whose results can be rewritten."""

    def __init__(self, signers: Mapping[int, SignerCore]) -> None:
        super().__init__(signers)
        self.signers = self._signers
        self.rewrites: dict[tuple[str, int], Any] = {}
        self.log: list[tuple[str, dict[int, tuple[Any, ...]], dict[int, object]]] = []

    def call(
        self, method: str, arguments: Mapping[int, tuple[Any, ...]], timeout: float | None
    ) -> dict[int, object]:
        results = super().call(method, arguments, timeout)
        for identifier in list(results):
            rewrite = self.rewrites.get((method, identifier))
            if rewrite is not None:
                results[identifier] = rewrite(results[identifier])
        self.log.append((method, dict(arguments), dict(results)))
        return results


@dataclass
class LocalMesh:
    """n in-process signers, their transport and a coordinator, after key generation."""

    state_dir: Path
    signers: dict[int, SignerCore]
    transport: SwitchableTransport
    coordinator: CoordinatorCore

    def restart_signer(self, identifier: int) -> SignerCore:
        """Replace signer ``identifier`` with a new process reading the same sealed share."""
        restarted = SignerCore(identifier, share_store(self.state_dir))
        self.signers[identifier] = restarted
        self.transport.signers[identifier] = restarted
        return restarted


def build_mesh(state_dir: Path, n: int = 3, t: int = 2, run_dkg: bool = True) -> LocalMesh:
    """Create n signers in ``state_dir`` and a coordinator, and run key generation."""
    signers = {i: SignerCore(i, share_store(state_dir)) for i in range(1, n + 1)}
    transport = SwitchableTransport(signers)
    coordinator = CoordinatorCore(
        transport, list(signers), CoordinatorSettings(batch_size=4, low_watermark=2)
    )
    if run_dkg:
        coordinator.run_dkg(t)
        coordinator.refill()
    return LocalMesh(state_dir, signers, transport, coordinator)
